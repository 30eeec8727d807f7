"""UNet goldens: diffusers' UNet2DConditionModel in the SD 2.x layout (linear transformer
projections, v-style config, unCLIP `projection` class embedding) on a tiny config, converted to the
LDM key names the C++ module loads (spec §2.4.1), with inputs and outputs for several shapes."""
import torch
from diffusers import UNet2DConditionModel

from common import randomize_, write_fixture

LEVELS = 4
RES_BLOCKS = 2
TINY = dict(model_channels=8, channel_mult=(1, 2, 4, 4), head_channels=8, context_dim=16, groups=4)


def ldm_resnet(sub: str) -> str:
    head, _, tail = sub.partition(".")
    names = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
             "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
    return f"{names[head]}.{tail}"


def to_ldm(name: str) -> str:
    """diffusers UNet2DConditionModel key -> LDM openaimodel key."""
    parts = name.split(".")
    fixed = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
             "time_embedding.linear_2": "time_embed.2", "class_embedding.linear_1": "label_emb.0.0",
             "class_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2"}
    for prefix, target in fixed.items():
        if name.startswith(prefix + "."):
            return target + name[len(prefix):]
    if parts[0] == "down_blocks":
        x, kind, i, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        if kind == "resnets":
            return f"input_blocks.{1 + (RES_BLOCKS + 1) * x + i}.0.{ldm_resnet(rest)}"
        if kind == "attentions":
            return f"input_blocks.{1 + (RES_BLOCKS + 1) * x + i}.1.{rest}"
        if kind == "downsamplers":
            return f"input_blocks.{(RES_BLOCKS + 1) * (x + 1)}.0.op.{'.'.join(parts[5:])}"
    if parts[0] == "mid_block":
        kind, i, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{2 * i}.{ldm_resnet(rest)}"
        return f"middle_block.1.{rest}"
    if parts[0] == "up_blocks":
        x, kind, i, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        block = (RES_BLOCKS + 1) * x
        if kind == "resnets":
            return f"output_blocks.{block + i}.0.{ldm_resnet(rest)}"
        if kind == "attentions":
            return f"output_blocks.{block + i}.1.{rest}"
        if kind == "upsamplers":
            has_attention = x > 0  # the first up level (deepest) has no transformer
            return f"output_blocks.{block + RES_BLOCKS}.{2 if has_attention else 1}.conv.{'.'.join(parts[5:])}"
    raise KeyError(name)


def build(adm: int) -> UNet2DConditionModel:
    mc = TINY["model_channels"]
    widths = tuple(mc * m for m in TINY["channel_mult"])
    kwargs = dict(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=RES_BLOCKS,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=widths, cross_attention_dim=TINY["context_dim"],
        attention_head_dim=tuple(w // TINY["head_channels"] for w in widths),  # diffusers' name for the head count
        use_linear_projection=True, norm_num_groups=TINY["groups"], norm_eps=1e-5,
        flip_sin_to_cos=True, freq_shift=0, upcast_attention=False)
    if adm:
        kwargs.update(class_embed_type="projection", projection_class_embeddings_input_dim=adm)
    return UNet2DConditionModel(**kwargs).eval()


def generate() -> None:
    for case, adm, seed, inputs in [
        ("unet_tiny_adm", 12, 2024, [("a", 2, 16, 16, [999.0, 1.0]), ("b", 1, 16, 8, [500.0]), ("c", 1, 24, 16, [37.0])]),
        ("unet_tiny_plain", 0, 2025, [("a", 2, 8, 16, [250.0, 750.0])]),
    ]:
        torch.manual_seed(seed)
        model = build(adm)
        randomize_(model, scale=0.15)
        tensors = {f"unet.{to_ldm(k)}": v for k, v in model.state_dict().items()}
        for tag, batch, h, w, timesteps in inputs:
            x = torch.randn(batch, 4, h, w)
            t = torch.tensor(timesteps, dtype=torch.float32)
            context = torch.randn(batch, 5, TINY["context_dim"])
            y = torch.randn(batch, adm) if adm else None
            with torch.no_grad():
                out = model(x, t, encoder_hidden_states=context, class_labels=y).sample
            tensors.update({f"{tag}.x": x, f"{tag}.t": t, f"{tag}.context": context, f"{tag}.expected": out})
            if adm:
                tensors[f"{tag}.y"] = y
        config = dict(TINY, adm_in_channels=adm, num_res_blocks=RES_BLOCKS, cases=[i[0] for i in inputs],
                      attention_levels=[True, True, True, False])
        write_fixture("unet", case, tensors, seed=seed, config=config,
                      note="diffusers.UNet2DConditionModel (class_embed_type='projection' when adm_in_channels > 0)")
