"""End-to-end golden of the image-variation pipeline on the tiny demo model: ComfyUI's graph
(CLIPTextEncode, CLIPVisionEncode, unCLIPConditioning, KSampler euler/normal, VAEDecode, SaveImage)
composed here step by step from the reference classes (diffusers' UNet2DConditionModel,
AutoencoderKL and DDPMScheduler; transformers' CLIPTextModel and CLIPVisionModelWithProjection;
open_clip's tokenizer; k-diffusion's schedule), because ComfyUI itself is not on PyPI. The
composition follows spec §10.1; every formula is cited there.

The weights are not stored: the tiny model is written by the project's own CLI (`unclip
make-tiny-model --diffusers --seed 7`), whose single-file twin (same seed) the C++ test builds at
run time bit-identically. Set UNCLIP_CLI to the built CLI, or build one under build/.
"""
import glob
import math
import os
import subprocess
import tempfile

import numpy as np
import open_clip
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.models.embeddings import get_timestep_embedding
from transformers import CLIPTextModel, CLIPVisionModelWithProjection

from common import REPO, write_fixture

MODEL_SEED = 7
CASES = [
    # name, prompt, negative, steps, cfg, seed, width, height, strength, noise_augmentation
    ("variation_euler", "a photo of a (cat:1.0)", "", 4, 5.0, 3, 64, 48, 1.0, 0.1),
    ("variation_strength", "", "blurry", 3, 3.0, 11, 48, 64, 0.7, 0.0),
]
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]


def find_cli() -> str:
    cli = os.environ.get("UNCLIP_CLI")
    if cli:
        return cli
    found = sorted(glob.glob(str(REPO / "build" / "*" / "examples" / "unclip")), key=os.path.getmtime)
    if not found:
        raise SystemExit("build the CLI first (cmake --build --preset release --target unclip_cli) or set UNCLIP_CLI")
    return found[-1]


def comfy_sigmas(steps: int) -> torch.Tensor:
    # ModelSamplingDiscrete (scaled_linear betas) + the "normal" scheduler: timesteps linspace(999, 0),
    # log-sigma interpolated between integer timesteps, a final 0.
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    sigmas = (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()
    log_sigmas = sigmas.log()
    out = []
    for t in torch.linspace(999, 0, steps):
        low, high = int(t.floor()), int(t.ceil())
        w = t - low
        out.append(((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp())
    return torch.stack(out + [torch.tensor(0.0)]), log_sigmas


def generate() -> None:
    cli = find_cli()
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "tiny")
        subprocess.run([cli, "make-tiny-model", "--diffusers", "--seed", str(MODEL_SEED), folder], check=True)
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet").eval()
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae").eval()
        text = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").eval()
        vision = CLIPVisionModelWithProjection.from_pretrained(folder, subfolder="image_encoder").eval()
        noising = DDPMScheduler.from_pretrained(folder, subfolder="image_noising_scheduler")

    # A 224 x 224 picture: ComfyUI's clip_preprocess then neither resizes nor crops.
    yy, xx = np.mgrid[0:224, 0:224]
    picture = np.stack([128 + 100 * np.sin(xx / 19.0), 128 + 90 * np.cos(yy / 23.0), 128 + 80 * np.sin((xx + yy) / 31.0)], -1)
    picture = torch.from_numpy(picture.astype(np.uint8))
    pixels = ((picture.permute(2, 0, 1).float() / 255.0 - CLIP_MEAN) / CLIP_STD)[None]

    tensors = {"picture": picture.float()}
    with torch.no_grad():
        image_embeds = vision(pixel_values=pixels).image_embeds  # [1, 1024]
        for name, prompt, negative, steps, cfg, seed, width, height, strength, noise_aug in CASES:
            # Plain prompts only: weight 1.0 everywhere, so no weighting pass (spec §7.2).
            def encode(p):
                ids = open_clip.tokenize([p.replace("(", "").replace(":1.0)", "")])
                return text(input_ids=ids).last_hidden_state  # final LN of the last kept block
            c_pos, c_neg = encode(prompt), encode(negative)

            # unCLIPConditioning: level round(999 x); noise from a CPU generator seeded seed - 10.
            level = round(999 * noise_aug)
            eps = torch.randn(image_embeds.shape, generator=torch.Generator().manual_seed(seed - 10))
            noised = noising.add_noise(image_embeds, eps, torch.tensor([level]))
            level_embedding = get_timestep_embedding(torch.tensor([level]), image_embeds.shape[1],
                                                     flip_sin_to_cos=True, downscale_freq_shift=0)
            y_pos = torch.cat([noised, level_embedding], 1) * strength
            y_neg = torch.zeros_like(y_pos)

            # KSampler: noise = randn([1, 4, h, w]) from manual_seed(seed); euler on the normal schedule.
            sigmas, log_sigmas = comfy_sigmas(steps)
            noise = torch.randn((1, 4, height // 8, width // 8), generator=torch.Generator().manual_seed(seed))
            x = noise * (1 + sigmas[0] ** 2) ** 0.5  # sigma_0 is sigma_max: max_denoise scaling

            def denoise(x, sigma):
                t = torch.argmin((sigma.log() - log_sigmas).abs())
                c_in = 1 / (sigma ** 2 + 1) ** 0.5
                batch = torch.cat([x, x]) * c_in
                v = unet(batch, t.float().expand(2), encoder_hidden_states=torch.cat([c_pos, c_neg]),
                         class_labels=torch.cat([y_pos, y_neg])).sample
                d = x / (sigma ** 2 + 1) - v * sigma / (sigma ** 2 + 1) ** 0.5  # v-prediction
                d_pos, d_neg = d[:1], d[1:]
                return d_neg + cfg * (d_pos - d_neg)

            for i in range(steps):
                denoised = denoise(x, sigmas[i])
                x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])

            decoded = vae.decode(x / 0.18215).sample[0]
            image = torch.clamp((decoded + 1) / 2, 0, 1) * 255  # SaveImage truncates after clipping
            tensors[f"{name}.image"] = torch.floor(image.clamp(0, 255)).permute(1, 2, 0)
        config = {"model_seed": MODEL_SEED,
                  "cases": [dict(zip(["name", "prompt", "negative", "steps", "cfg", "seed", "width", "height", "strength",
                                      "noise_augmentation"], c)) for c in CASES]}
    write_fixture("pipeline", "tiny_variations", tensors, seed=MODEL_SEED, config=config,
                  note="ComfyUI unCLIP graph composed from diffusers/transformers/open_clip classes (tests/golden/pipeline.py)")
