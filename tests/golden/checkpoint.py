"""Checkpoint goldens: one tiny random unCLIP-l model in the three layouts users bring.

  tiny_unclip_l/               diffusers save_pretrained of each component + model_index.json
  tiny_unclip_l.safetensors    the LDM single-file layout, converted here with the spec's §2.4
                               rules and checked by converting it back with diffusers' own
                               single-file code (and, for the image tower, open_clip's model)
  tiny_unclip_l.ckpt           torch.save of {"state_dict": that state dict, "global_step": ...}

The C++ tests load all three and require bit-identical weights. Weights are stored in fp16 to keep
the set small; the ADM width is the real 1536 so that the variant is detected as unclip-l.
"""
import json
import shutil
from collections import OrderedDict

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from diffusers.loaders import single_file_utils as sfu
from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
from safetensors.torch import save_file
from transformers import CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, \
    CLIPVisionModelWithProjection

from common import DATA, generator_commit, library_versions, randomize_

SEED = 20240505
DTYPE = torch.float16
NAME = "tiny_unclip_l"
ADM = 1536  # sd21-unclip-l: 768-wide image embedding + 768-wide noise-level embedding
TEXT_LAYERS = 2  # diffusers keeps these; the LDM file stores one more (SD 2.x reads the penultimate)


def build_models():
    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(1, 1), use_linear_projection=True, norm_num_groups=4,
        class_embed_type="projection", projection_class_embeddings_input_dim=ADM)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        latent_channels=4, norm_num_groups=4)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=128, num_attention_heads=2,
                                        num_hidden_layers=TEXT_LAYERS, vocab_size=64, max_position_embeddings=77,
                                        hidden_act="gelu"))
    image = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=128, num_attention_heads=2, num_hidden_layers=2, image_size=32, patch_size=8,
        projection_dim=ADM // 2, hidden_act="quick_gelu"))
    normalizer = StableUnCLIPImageNormalizer(embedding_dim=ADM // 2)
    for m in (unet, vae, text, image, normalizer):
        randomize_(m, 0.1)
        m.to(DTYPE).eval()
    return unet, vae, text, image, normalizer


# Spec §2.4.1: diffusers UNet block prefixes -> LDM, for this 2-level, 1-block-per-level UNet.
def unet_prefix_map(levels=2, blocks=1, attention=(True, False)):
    pairs = [("conv_in", "input_blocks.0.0"), ("time_embedding.linear_1", "time_embed.0"),
             ("time_embedding.linear_2", "time_embed.2"), ("class_embedding.linear_1", "label_emb.0.0"),
             ("class_embedding.linear_2", "label_emb.0.2"), ("conv_norm_out", "out.0"), ("conv_out", "out.2"),
             ("mid_block.resnets.0", "middle_block.0"), ("mid_block.attentions.0", "middle_block.1"),
             ("mid_block.resnets.1", "middle_block.2")]
    for x in range(levels):
        for i in range(blocks):
            n = 1 + (blocks + 1) * x + i
            pairs.append((f"down_blocks.{x}.resnets.{i}", f"input_blocks.{n}.0"))
            if attention[x]:
                pairs.append((f"down_blocks.{x}.attentions.{i}", f"input_blocks.{n}.1"))
        if x < levels - 1:
            pairs.append((f"down_blocks.{x}.downsamplers.0.conv", f"input_blocks.{(blocks + 1) * (x + 1)}.0.op"))
    for u in range(levels):
        level = levels - 1 - u
        for i in range(blocks + 1):
            n = (blocks + 1) * u + i
            pairs.append((f"up_blocks.{u}.resnets.{i}", f"output_blocks.{n}.0"))
            if attention[level]:
                pairs.append((f"up_blocks.{u}.attentions.{i}", f"output_blocks.{n}.1"))
        if level > 0:
            sub = 2 if attention[level] else 1
            pairs.append((f"up_blocks.{u}.upsamplers.0.conv", f"output_blocks.{(blocks + 1) * u + blocks}.{sub}.conv"))
    return pairs


RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
          ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]


def unet_to_ldm(sd):
    prefixes = unet_prefix_map()
    out = {}
    for key, value in sd.items():
        for dif, ldm in sorted(prefixes, key=lambda p: -len(p[0])):
            if key.startswith(dif + "."):
                rest = key[len(dif) + 1:]
                if ".resnets." in dif or dif.startswith("mid_block.resnets"):
                    head, _, tail = rest.partition(".")
                    rest = dict(RESNET)[head] + "." + tail
                out[f"{ldm}.{rest}"] = value
                break
        else:
            raise KeyError(f"UNet key {key} has no LDM name")
    return out


# Spec §2.4.2.
def vae_to_ldm(sd):
    out = {}
    levels = 2
    for key, value in sd.items():
        k = key
        for i in range(levels):
            k = k.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
            k = k.replace(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.")
            k = k.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{levels - 1 - i}.block.")
            k = k.replace(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{levels - 1 - i}.upsample.")
        k = k.replace("mid_block.resnets.0.", "mid.block_1.").replace("mid_block.resnets.1.", "mid.block_2.")
        k = k.replace("mid_block.attentions.0.", "mid.attn_1.")
        for dif, ldm in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
            k = k.replace(f"attn_1.{dif}.", f"attn_1.{ldm}.")
        k = k.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        if "attn_1." in k and k.endswith("weight") and value.dim() == 2:
            value = value[:, :, None, None]  # Linear -> 1x1 conv
        out[k] = value
    return out


# Spec §2.4.3 / §2.4.4: transformers CLIP encoder layers -> OpenCLIP residual blocks.
def clip_layers_to_ldm(sd, src, layers):
    out = {}
    for i in range(layers):
        s, d = f"{src}.{i}.", f"transformer.resblocks.{i}."
        out[d + "ln_1.weight"], out[d + "ln_1.bias"] = sd[s + "layer_norm1.weight"], sd[s + "layer_norm1.bias"]
        out[d + "ln_2.weight"], out[d + "ln_2.bias"] = sd[s + "layer_norm2.weight"], sd[s + "layer_norm2.bias"]
        for part in ("weight", "bias"):
            out[d + f"attn.in_proj_{part}"] = torch.cat([sd[s + f"self_attn.{p}_proj.{part}"] for p in "qkv"])
            out[d + f"attn.out_proj.{part}"] = sd[s + f"self_attn.out_proj.{part}"]
            out[d + f"mlp.c_fc.{part}"] = sd[s + f"mlp.fc1.{part}"]
            out[d + f"mlp.c_proj.{part}"] = sd[s + f"mlp.fc2.{part}"]
    return out


def with_text_model_prefix(sd):
    """transformers 5 saves CLIPTextModel without the "text_model." prefix that 4.x files have."""
    return {k if k.startswith("text_model.") else "text_model." + k: v for k, v in sd.items()}


def text_to_ldm(sd, extra_block, projection):
    sd = with_text_model_prefix(sd)
    out = {"token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
           "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
           "ln_final.weight": sd["text_model.final_layer_norm.weight"],
           "ln_final.bias": sd["text_model.final_layer_norm.bias"]}
    out.update(clip_layers_to_ldm(sd, "text_model.encoder.layers", TEXT_LAYERS))
    # The block diffusers drops (LDM keeps all of OpenCLIP's; SD 2.x never reads the last one).
    out.update({f"transformer.resblocks.{TEXT_LAYERS}.{k}": v for k, v in extra_block.items()})
    out["text_projection"] = projection
    out["logit_scale"] = torch.tensor(4.6052, dtype=DTYPE)
    return out


def vision_to_ldm(sd, layers):
    out = {"conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
           "class_embedding": sd["vision_model.embeddings.class_embedding"],
           "positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
           "ln_pre.weight": sd["vision_model.pre_layrnorm.weight"], "ln_pre.bias": sd["vision_model.pre_layrnorm.bias"],
           "ln_post.weight": sd["vision_model.post_layernorm.weight"],
           "ln_post.bias": sd["vision_model.post_layernorm.bias"],
           "proj": sd["visual_projection.weight"].t().contiguous()}
    out.update(clip_layers_to_ldm(sd, "vision_model.encoder.layers", layers))
    return out


def check_equal(name, produced, expected):
    """Every tensor of `expected` must come back bit-identical from the reference conversion."""
    missing = [k for k in expected if k not in produced]
    assert not missing, f"{name}: reference conversion lacks {missing[:5]}"
    for k, v in expected.items():
        assert produced[k].shape == v.shape and torch.equal(produced[k].to(v.dtype), v), f"{name}: {k} differs"


def verify_with_references(ldm, unet, vae, text, image):
    """Converts the LDM dict back with diffusers' single-file code (UNet, VAE, OpenCLIP text) and
    runs the image tower through open_clip, so the rules above are checked against the references."""
    unet_back = sfu.convert_ldm_unet_checkpoint(ldm, dict(unet.config))
    check_equal("unet", unet_back, unet.state_dict())
    vae_back = sfu.convert_ldm_vae_checkpoint(ldm, dict(vae.config))
    check_equal("vae", vae_back, vae.state_dict())
    text_back = with_text_model_prefix(sfu.convert_open_clip_checkpoint(text, ldm))
    expected = {k: v for k, v in with_text_model_prefix(text.state_dict()).items() if not k.endswith("position_ids")}
    check_equal("text", text_back, expected)

    from open_clip.transformer import QuickGELU, VisionTransformer
    tower = VisionTransformer(image_size=32, patch_size=8, width=32, layers=2, heads=2, mlp_ratio=4.0,
                              output_dim=ADM // 2, act_layer=QuickGELU)
    prefix = "embedder.model.visual."
    tower.load_state_dict({k[len(prefix):]: v.float() for k, v in ldm.items() if k.startswith(prefix)}, strict=True)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = tower.eval()(pixels)
        reference = image.float()(pixel_values=pixels).image_embeds
        image.to(DTYPE)
    assert torch.allclose(ours, reference, atol=1e-5), "vision: open_clip and transformers disagree"


def save_diffusers(folder, unet, vae, text, image, normalizer):
    shutil.rmtree(folder, ignore_errors=True)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text.save_pretrained(folder / "text_encoder")
    image.save_pretrained(folder / "image_encoder")
    normalizer.save_pretrained(folder / "image_normalizer")
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                  set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction").save_pretrained(
        folder / "scheduler")
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").save_pretrained(
        folder / "image_noising_scheduler")
    CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32}).save_pretrained(folder / "feature_extractor")
    index = {"_class_name": "StableUnCLIPImg2ImgPipeline", "_diffusers_version": library_versions()["diffusers"],
             "feature_extractor": ["transformers", "CLIPImageProcessor"],
             "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
             "image_normalizer": ["stable_unclip", "StableUnCLIPImageNormalizer"],
             "image_noising_scheduler": ["diffusers", "DDPMScheduler"], "scheduler": ["diffusers", "DDIMScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": [None, None],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def generate() -> None:
    unet, vae, text, image, normalizer = build_models()
    torch.manual_seed(SEED + 1)
    w = text.config.hidden_size
    extra_block = {"ln_1.weight": 1 + 0.1 * torch.randn(w), "ln_1.bias": 0.1 * torch.randn(w),
                   "attn.in_proj_weight": 0.1 * torch.randn(3 * w, w), "attn.in_proj_bias": 0.1 * torch.randn(3 * w),
                   "attn.out_proj.weight": 0.1 * torch.randn(w, w), "attn.out_proj.bias": 0.1 * torch.randn(w),
                   "ln_2.weight": 1 + 0.1 * torch.randn(w), "ln_2.bias": 0.1 * torch.randn(w),
                   "mlp.c_fc.weight": 0.1 * torch.randn(4 * w, w), "mlp.c_fc.bias": 0.1 * torch.randn(4 * w),
                   "mlp.c_proj.weight": 0.1 * torch.randn(w, 4 * w), "mlp.c_proj.bias": 0.1 * torch.randn(w)}
    extra_block = {k: v.to(DTYPE) for k, v in extra_block.items()}
    projection = (0.1 * torch.randn(w, w)).to(DTYPE)

    ldm = OrderedDict()
    for prefix, part in (("model.diffusion_model.", unet_to_ldm(unet.state_dict())),
                         ("first_stage_model.", vae_to_ldm(vae.state_dict())),
                         ("cond_stage_model.model.", text_to_ldm(text.state_dict(), extra_block, projection)),
                         ("embedder.model.visual.", vision_to_ldm(image.state_dict(), 2))):
        ldm.update({prefix + k: v.contiguous() for k, v in part.items()})
    # Keys real files carry that no component reads: schedule buffers (F32) and an int32 counter.
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ldm["betas"] = betas.float()
    ldm["noise_augmentor.betas"] = torch.linspace(1e-4, 0.999, 1000).float()
    ldm["model_ema.num_updates"] = torch.tensor(1234, dtype=torch.int32)
    verify_with_references(ldm, unet, vae, text, image)

    out = DATA / "checkpoint"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"seed": str(SEED), "reference": "diffusers save_pretrained -> spec §2.4 rules, checked by diffusers "
            "single_file_utils and open_clip", "generator_commit": generator_commit(),
            "libraries": json.dumps(library_versions(), sort_keys=True)}
    save_file(dict(ldm), str(out / f"{NAME}.safetensors"), metadata=meta)
    torch.save({"state_dict": ldm, "global_step": np.int64(110000), "epoch": 3}, str(out / f"{NAME}.ckpt"))
    save_diffusers(out / NAME, unet, vae, text, image, normalizer)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote tests/data/checkpoint/{NAME}{{.safetensors,.ckpt,/}} ({total} bytes in tests/data/checkpoint)")


# --- Full-size check of the C++ random-weights tool against the reference classes -------------
#
#   for v in unclip-h unclip-l sd2; do
#     unclip_make_random_checkpoint --sparse --variant $v /tmp/full/$v.safetensors
#     unclip_make_random_checkpoint --sparse --layout diffusers --variant $v /tmp/full/$v
#   done
#   python tests/golden/checkpoint.py verify /tmp/full
#
# Compares tensor names and shapes (headers only, on the meta device: no gigabytes) of the
# diffusers layout with UNet2DConditionModel / AutoencoderKL / CLIPTextModel /
# CLIPVisionModelWithProjection built from the written configs, and of the LDM single-file
# layout after diffusers' own single-file conversion.

def _header_shapes(path):
    import struct
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
    header.pop("__metadata__", None)
    return {k: tuple(v["shape"]) for k, v in header.items()}


def _compare(label, ours, model):
    ref = with_text_model_prefix({k: tuple(v.shape) for k, v in model.state_dict().items()
                                  if not k.endswith("position_ids")}) if isinstance(model, CLIPTextModel) else \
        {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    if isinstance(model, CLIPTextModel):
        ours = with_text_model_prefix(ours)
    missing, extra = sorted(set(ref) - set(ours)), sorted(set(ours) - set(ref))
    wrong = sorted(k for k in set(ref) & set(ours) if ref[k] != ours[k])
    status = "ok" if not (missing or extra or wrong) else "MISMATCH"
    print(f"{label}: {status} ({len(ref)} tensors; missing {missing[:3]}, extra {extra[:3]}, wrong {wrong[:3]})")
    return status == "ok"


def verify_full_size(folder):
    from pathlib import Path
    folder, ok = Path(folder), True

    def config(path):
        return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}

    for variant in ("unclip-h", "unclip-l", "sd2"):
        d = folder / variant
        with torch.device("meta"):
            unet = UNet2DConditionModel(**config(d / "unet" / "config.json"))
            vae = AutoencoderKL(**config(d / "vae" / "config.json"))
            text = CLIPTextModel(CLIPTextConfig(**config(d / "text_encoder" / "config.json")))
            ok &= _compare(f"{variant} diffusers unet", _header_shapes(d / "unet" / "diffusion_pytorch_model.safetensors"), unet)
            ok &= _compare(f"{variant} diffusers vae", _header_shapes(d / "vae" / "diffusion_pytorch_model.safetensors"), vae)
            ok &= _compare(f"{variant} diffusers text", _header_shapes(d / "text_encoder" / "model.safetensors"), text)
            if variant != "sd2":
                image = CLIPVisionModelWithProjection(CLIPVisionConfig(**config(d / "image_encoder" / "config.json")))
                ok &= _compare(f"{variant} diffusers vision", _header_shapes(d / "image_encoder" / "model.safetensors"), image)
            ldm = {k: torch.empty(s, device="meta") for k, s in _header_shapes(folder / f"{variant}.safetensors").items()}
            shapes = lambda sd: {k: tuple(v.shape) for k, v in sd.items()}  # noqa: E731
            ok &= _compare(f"{variant} single-file unet", shapes(sfu.convert_ldm_unet_checkpoint(ldm, unet.config)), unet)
            ok &= _compare(f"{variant} single-file vae", shapes(sfu.convert_ldm_vae_checkpoint(ldm, vae.config)), vae)
            ok &= _compare(f"{variant} single-file text", shapes(sfu.convert_open_clip_checkpoint(text, ldm)), text)
    if not ok:
        raise SystemExit("full-size layouts disagree with the reference classes")


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 3 or sys.argv[1] != "verify":
        raise SystemExit("usage: checkpoint.py verify <folder with the tool's sparse outputs>")
    verify_full_size(sys.argv[2])
