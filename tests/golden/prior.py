"""Goldens of text -> image embedding (issue #11): diffusers' PriorTransformer and the prior's
schedulers, and StableUnCLIPPipeline's prior stage end to end, followed by the ComfyUI image graph
of tests/golden/pipeline.py on a tiny unclip-l model.

  prior/prior_forward.safetensors      two random PriorTransformers (Karlo's options and the
                                       norm_in / embedding_proj_norm / narrow-text variants) on
                                       random inputs with padded text masks
  prior/scheduler_loop.safetensors     the prior sampling loop (randn latents, step with the same
                                       generator) for UnCLIPScheduler and DDPMScheduler configs,
                                       around a fixed closed-form "model"
  prior/tiny_text_to_image.safetensors the tiny unclip-l model with a prior, written by the
                                       project's CLI (`unclip make-tiny-model --diffusers --variant
                                       unclip-l --prior --seed 5`; the C++ test rebuilds it
                                       bit-identically): prompt -> prior embedding -> image

The prior stage calls StableUnCLIPPipeline._encode_prior_prompt itself and replays its steps 4-7
and post_process_latents line for line; the image stage is ComfyUI's (unCLIPConditioning without
the Karlo image_normalizer, KSampler euler/normal), which is what this library's generate() follows.
"""
import json
import os
import subprocess
import tempfile
from types import SimpleNamespace

import open_clip
import torch
from diffusers import AutoencoderKL, DDPMScheduler, PriorTransformer, UNet2DConditionModel, UnCLIPScheduler
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.pipelines.stable_diffusion.pipeline_stable_unclip import StableUnCLIPPipeline
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from common import randomize_, write_fixture
from pipeline import comfy_sigmas, find_cli

FORWARD_CASES = {
    # name: PriorTransformer kwargs
    "karlo": dict(num_attention_heads=2, attention_head_dim=8, num_layers=2, embedding_dim=24, num_embeddings=7),
    "options": dict(num_attention_heads=3, attention_head_dim=4, num_layers=1, embedding_dim=20, num_embeddings=6,
                    norm_in_type="layer", embedding_proj_norm_type="layer", embedding_proj_dim=10, time_embed_dim=16),
}
KARLO_SCHEDULER = {"beta_schedule": "squaredcos_cap_v2", "clip_sample": True, "clip_sample_range": 5.0,
                   "num_train_timesteps": 1000, "prediction_type": "sample", "variance_type": "fixed_small_log"}
SCHEDULER_CASES = [
    # name, class, config, steps, seed
    ("unclip", "UnCLIPScheduler", KARLO_SCHEDULER, 6, 21),
    ("ddpm_karlo", "DDPMScheduler", KARLO_SCHEDULER, 7, 22),
    ("ddpm_trailing_eps", "DDPMScheduler", dict(KARLO_SCHEDULER, prediction_type="epsilon", variance_type="fixed_small",
                                                timestep_spacing="trailing", clip_sample_range=1.0), 5, 23),
    ("ddpm_linspace_v", "DDPMScheduler", dict(KARLO_SCHEDULER, prediction_type="v_prediction", variance_type="fixed_large",
                                              timestep_spacing="linspace", clip_sample=False), 4, 24),
    ("unclip_eps", "UnCLIPScheduler", dict(KARLO_SCHEDULER, prediction_type="epsilon", clip_sample_range=1.0), 3, 25),
]
MODEL_SEED = 5
E2E = dict(prompt="a photo of a red cat", prior_steps=5, prior_guidance=4.0, prior_seed=9, negative="", steps=3, cfg=4.0,
           seed=13, width=64, height=64, noise_augmentation=0.0)


def fake_model(x: torch.Tensor, t: int) -> torch.Tensor:
    """A fixed closed-form stand-in for the prior network (the C++ test computes the same)."""
    return torch.tanh(x * 0.75 + t / 1000.0) * 1.5


def forward_fixture() -> None:
    tensors, config = {}, {}
    for case, kwargs in FORWARD_CASES.items():
        torch.manual_seed(1000 + len(tensors))
        model = PriorTransformer(**kwargs).eval()
        randomize_(model)
        with torch.no_grad():
            model.clip_std.copy_(1.0 + 0.1 * torch.randn_like(model.clip_std))
            model.clip_mean.copy_(0.1 * torch.randn_like(model.clip_mean))
        e, n = kwargs["embedding_dim"], kwargs["num_embeddings"]
        proj_dim = kwargs.get("embedding_proj_dim", e)
        x = torch.randn(3, e)
        proj = torch.randn(3, proj_dim)
        hidden = torch.randn(3, n, e)
        lengths = torch.tensor([n, 3, 1])
        mask = torch.arange(n)[None, :] < lengths[:, None]
        with torch.no_grad():
            out = model(x, timestep=torch.tensor(437), proj_embedding=proj, encoder_hidden_states=hidden,
                        attention_mask=mask).predicted_image_embedding
            post = model.post_process_latents(out)
        for k, v in model.state_dict().items():
            tensors[f"{case}.prior.{k}"] = v
        tensors.update({f"{case}.x": x, f"{case}.proj_embedding": proj, f"{case}.hidden": hidden,
                        f"{case}.lengths": lengths.float(), f"{case}.expected": out, f"{case}.post_processed": post})
        config[case] = dict(kwargs, timestep=437)
    write_fixture("prior", "prior_forward", tensors, seed=1000, config=config,
                  note="diffusers PriorTransformer forward with text masks; post_process_latents")


def scheduler_fixture() -> None:
    tensors, config = {}, []
    for name, cls, cfg, steps, seed in SCHEDULER_CASES:
        scheduler = (UnCLIPScheduler if cls == "UnCLIPScheduler" else DDPMScheduler)(**cfg)
        generator = torch.Generator().manual_seed(seed)
        # StableUnCLIPPipeline steps 4-7 without guidance, the network replaced by fake_model.
        scheduler.set_timesteps(steps)
        latents = torch.randn((2, 40), generator=generator) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            out = fake_model(latents, int(t))
            latents = scheduler.step(out, timestep=t, sample=latents, generator=generator, return_dict=False)[0]
        tensors[f"{name}.timesteps"] = scheduler.timesteps.float()
        tensors[f"{name}.latents"] = latents
        config.append({"name": name, "scheduler_config": json.dumps(dict(cfg, _class_name=cls)), "steps": steps,
                       "seed": seed})
    write_fixture("prior", "scheduler_loop", tensors, seed=0, config=config,
                  note="UnCLIPScheduler / DDPMScheduler loop as StableUnCLIPPipeline drives the prior scheduler")


def e2e_fixture() -> None:
    cli = find_cli()
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "tiny")
        subprocess.run([cli, "make-tiny-model", "--diffusers", "--variant", "unclip-l", "--prior", "--seed", str(MODEL_SEED),
                        folder], check=True)
        prior = PriorTransformer.from_pretrained(folder, subfolder="prior").eval()
        prior_text = CLIPTextModelWithProjection.from_pretrained(folder, subfolder="prior_text_encoder").eval()
        prior_tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="prior_tokenizer")
        prior_scheduler = DDPMScheduler.from_pretrained(folder, subfolder="prior_scheduler")
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet").eval()
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae").eval()
        text = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").eval()
        noising = DDPMScheduler.from_pretrained(folder, subfolder="image_noising_scheduler")

    p = E2E
    tensors = {}
    with torch.no_grad():
        # --- StableUnCLIPPipeline.__call__ steps 3-7 and post_process_latents (prior stage) ---
        owner = SimpleNamespace(prior_tokenizer=prior_tokenizer, prior_text_encoder=prior_text)
        guided = p["prior_guidance"] > 1.0
        embeds, hidden, mask = StableUnCLIPPipeline._encode_prior_prompt(
            owner, prompt=p["prompt"], device=torch.device("cpu"), num_images_per_prompt=1,
            do_classifier_free_guidance=guided)
        generator = torch.Generator().manual_seed(p["prior_seed"])
        prior_scheduler.set_timesteps(p["prior_steps"])
        latents = torch.randn((1, prior.config.embedding_dim), generator=generator) * prior_scheduler.init_noise_sigma
        for t in prior_scheduler.timesteps:
            model_input = torch.cat([latents] * 2) if guided else latents
            predicted = prior(model_input, timestep=t, proj_embedding=embeds, encoder_hidden_states=hidden,
                              attention_mask=mask).predicted_image_embedding
            if guided:
                uncond, cond = predicted.chunk(2)
                predicted = uncond + p["prior_guidance"] * (cond - uncond)
            latents = prior_scheduler.step(predicted, timestep=t, sample=latents, generator=generator,
                                           return_dict=False)[0]
        image_embeds = prior.post_process_latents(latents)  # [1, 768]
        tensors["prior.text_embeds"] = embeds
        tensors["prior.embedding"] = image_embeds

        # --- ComfyUI graph (tests/golden/pipeline.py) with that embedding as the unCLIP input ---
        def encode(prompt):
            return text(input_ids=open_clip.tokenize([prompt])).last_hidden_state
        c_pos, c_neg = encode(p["prompt"]), encode(p["negative"])
        level = round(999 * p["noise_augmentation"])
        eps = torch.randn(image_embeds.shape, generator=torch.Generator().manual_seed(p["seed"] - 10))
        noised = noising.add_noise(image_embeds, eps, torch.tensor([level]))
        level_embedding = get_timestep_embedding(torch.tensor([level]), image_embeds.shape[1], flip_sin_to_cos=True,
                                                 downscale_freq_shift=0)
        y_pos = torch.cat([noised, level_embedding], 1)
        y_neg = torch.zeros_like(y_pos)
        sigmas, log_sigmas = comfy_sigmas(p["steps"])
        noise = torch.randn((1, 4, p["height"] // 8, p["width"] // 8), generator=torch.Generator().manual_seed(p["seed"]))
        x = noise * (1 + sigmas[0] ** 2) ** 0.5
        for i in range(p["steps"]):
            sigma = sigmas[i]
            t = torch.argmin((sigma.log() - log_sigmas).abs())
            c_in = 1 / (sigma ** 2 + 1) ** 0.5
            v = unet(torch.cat([x, x]) * c_in, t.float().expand(2), encoder_hidden_states=torch.cat([c_pos, c_neg]),
                     class_labels=torch.cat([y_pos, y_neg])).sample
            d = x / (sigma ** 2 + 1) - v * sigma / (sigma ** 2 + 1) ** 0.5
            denoised = d[1:] + p["cfg"] * (d[:1] - d[1:])
            x = x + (x - denoised) / sigma * (sigmas[i + 1] - sigma)
        decoded = vae.decode(x / 0.18215).sample[0]
        image = torch.clamp((decoded + 1) / 2, 0, 1) * 255
        tensors["image"] = torch.floor(image.clamp(0, 255)).permute(1, 2, 0)
    write_fixture("prior", "tiny_text_to_image", tensors, seed=MODEL_SEED, config=dict(p, model_seed=MODEL_SEED),
                  note="StableUnCLIPPipeline prior stage (diffusers/transformers) + ComfyUI unCLIP graph, tiny unclip-l")


def generate() -> None:
    forward_fixture()
    scheduler_fixture()
    e2e_fixture()
