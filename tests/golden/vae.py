"""VAE goldens: diffusers' AutoencoderKL on a tiny config with the SD layout (4 levels, 2 res blocks
per encoder level, mid-block attention), converted to the LDM key names (spec §2.4.2)."""
import torch
from diffusers import AutoencoderKL

from common import randomize_, write_fixture

TINY = dict(ch=8, ch_mult=(1, 2, 2, 4), num_res_blocks=2, z_channels=4, embed_dim=4, groups=4)


def to_ldm(name: str, levels: int) -> str:
    parts = name.split(".")
    resnet = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
    attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
    if parts[0] in ("quant_conv", "post_quant_conv"):
        return name
    side = parts[0]
    if parts[1] in ("conv_in", "conv_out"):
        return name
    if parts[1] == "conv_norm_out":
        return f"{side}.norm_out.{parts[2]}"
    if parts[1] == "mid_block":
        if parts[2] == "resnets":
            return f"{side}.mid.block_{int(parts[3]) + 1}.{resnet[parts[4]]}.{parts[5]}"
        sub = attention[parts[4]]
        return f"{side}.mid.attn_1.{sub}.{parts[-1]}"
    if parts[1] == "down_blocks":
        i = int(parts[2])
        if parts[3] == "resnets":
            return f"encoder.down.{i}.block.{parts[4]}.{resnet[parts[5]]}.{parts[6]}"
        return f"encoder.down.{i}.downsample.conv.{parts[-1]}"
    if parts[1] == "up_blocks":
        i = levels - 1 - int(parts[2])
        if parts[3] == "resnets":
            return f"decoder.up.{i}.block.{parts[4]}.{resnet[parts[5]]}.{parts[6]}"
        return f"decoder.up.{i}.upsample.conv.{parts[-1]}"
    raise KeyError(name)


def generate() -> None:
    seed = 77
    torch.manual_seed(seed)
    levels = len(TINY["ch_mult"])
    widths = tuple(TINY["ch"] * m for m in TINY["ch_mult"])
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
                        up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=widths,
                        layers_per_block=TINY["num_res_blocks"], latent_channels=TINY["z_channels"],
                        norm_num_groups=TINY["groups"], sample_size=32).eval()
    randomize_(vae, scale=0.15)
    tensors = {}
    for k, v in vae.state_dict().items():
        ldm = to_ldm(k, levels)
        if ".mid.attn_1." in ldm and v.dim() == 2:
            v = v[:, :, None, None]  # LDM stores the attention projections as 1x1 convolutions
        tensors[f"vae.{ldm}"] = v
    image = torch.rand(2, 3, 48, 32) * 2 - 1
    latent = torch.randn(1, 4, 5, 7)
    # A smooth latent for the tiled-vs-whole comparison: low-frequency waves.
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 40), indexing="ij")
    smooth = torch.stack([torch.sin(3 * xx + c) * torch.cos(2 * yy - c) for c in range(4)])[None]
    with torch.no_grad():
        moments = vae.quant_conv(vae.encoder(image))
        decoded = vae.decoder(vae.post_quant_conv(latent))
    tensors.update({"image": image, "moments": moments, "latent": latent, "decoded": decoded, "smooth_latent": smooth})
    write_fixture("vae", "vae_tiny", tensors, seed=seed, config=dict(TINY),
                  note="diffusers.AutoencoderKL encoder+quant_conv and post_quant_conv+decoder")
