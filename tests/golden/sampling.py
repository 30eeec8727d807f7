"""Goldens of the sampling area (issue 12): torch's CPU randn, ComfyUI's schedules, the samplers
on an analytic denoiser, unCLIP noise augmentation and the ADM vector, and whole KSampler runs.

References, by fixture:
  rng.safetensors        torch.manual_seed + torch.randn itself, once per CPU kernel (a child
                         process per ATEN_CPU_CAPABILITY), bit-exact.
  schedules.safetensors  karras/exponential: k_diffusion.sampling (the same code as ComfyUI's copy).
                         The model table, normal, sgm_uniform, simple, ddim_uniform, the sigma ->
                         timestep map and KSampler's penultimate-discard/denoise bookkeeping:
                         a re-derivation of comfy/model_sampling.py and comfy/samplers.py in torch
                         below (ComfyUI is not on PyPI).
  samplers.safetensors   euler, euler_ancestral, heun, dpm_2, dpmpp_2m, dpmpp_2m_sde, dpmpp_sde:
                         k_diffusion.sampling with the noise fed from recorded tensors (ComfyUI's
                         copies differ only in landing exactly on the prediction at sigma = 0).
                         uni_pc / uni_pc_bh2: diffusers UniPCMultistepScheduler (solver_order 3,
                         bh1/bh2, sigmas overridden) on a list that ends above 0, where ComfyUI and
                         diffusers agree; on lists ending in 0 (ComfyUI replaces it by 0.001 and runs
                         its float32 SigmaConvert) a re-derivation of comfy/extra_samplers/uni_pc.py
                         below, itself checked against diffusers on the first kind of list.
                         The denoiser is exact for Gaussian data x0 ~ N(mu, s^2):
                         D(x, sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu).
  noise_aug.safetensors  diffusers StableUnCLIPImageNormalizer + DDPMScheduler(squaredcos_cap_v2) +
                         get_timestep_embedding through StableUnCLIPImg2ImgPipeline.noise_image_embeddings;
                         ComfyUI's unclip_adm (re-derived below) for the ComfyUI semantics.
  ksampler.safetensors   whole KSampler runs with a fake v-prediction network: seed -> initial noise,
                         schedule, noise scaling, CFG wrapper and sampler as ComfyUI composes them.
  unet_e2e.safetensors   the same composition around a real network: diffusers' UNet2DConditionModel
                         with the weights of tests/data/unet/unet_tiny_adm.safetensors (read from there,
                         so regenerate the unet area first if its seed or config ever changes), with
                         the ADM vector from the unclip_adm re-derivation (an ADM of 12 = 2 x dim 6).
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch

from common import DATA, import_k_diffusion_sampling, write_fixture

AREA = "sampling"
F32 = torch.float32

# --------------------------------------------------------------------------------------------
# rng


RNG_CASES = [  # (seed, consecutive torch.randn sizes after one manual_seed)
    (0, [2]), (0, [16]), (0, [1, 1, 3]), (1, [15]), (1, [17]), (2, [31, 33]), (42, [1024]),
    (2**64 - 10, [1024]), (52, [1, 1024]), (123456789, [17, 1, 16, 5]), (2**32 + 5, [100]),
    (2**64 - 1, [7, 250]), (3, [1000]), (0, [4 * 96 * 96]), (7, [2 * 4 * 64 * 64 + 3]),
]
# RandnKernel name -> ATEN_CPU_CAPABILITY that makes torch use it
RNG_KERNELS = {"avx2": "avx2", "generic": "default"}

_CHILD = r"""
import sys, torch
cases = eval(sys.argv[2])
out = {}
for i, (seed, sizes) in enumerate(cases):
    torch.manual_seed(seed)
    out[str(i)] = torch.cat([torch.randn(n) for n in sizes])
out["capability"] = torch.tensor([ord(c) for c in torch.backends.cpu.get_cpu_capability()])
torch.save(out, sys.argv[1])
"""


def rng_fixture():
    tensors = {}
    capabilities = {}
    for kernel, capability in RNG_KERNELS.items():
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "out.pt")
            env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
            subprocess.run([sys.executable, "-c", _CHILD, path, repr(RNG_CASES)], env=env, check=True)
            out = torch.load(path)
        got = "".join(chr(int(c)) for c in out.pop("capability"))
        if got.lower() != capability:
            raise RuntimeError(f"torch ran with CPU capability {got}, wanted {capability}")
        capabilities[kernel] = got
        for i, value in out.items():
            tensors[f"{kernel}.{i}"] = value
    config = {"cases": [{"seed": str(seed), "sizes": sizes} for seed, sizes in RNG_CASES],
              "capabilities": capabilities}
    write_fixture(AREA, "rng", tensors, seed=0, config=config,
                  note="torch.manual_seed + torch.randn on the CPU, per ATEN_CPU_CAPABILITY")


# --------------------------------------------------------------------------------------------
# ComfyUI re-derivations: model schedule, schedulers, KSampler bookkeeping, denoiser wrapper


class ModelSamplingDiscrete:
    """comfy/model_sampling.py ModelSamplingDiscrete for the SD 2.x linear schedule."""

    def __init__(self, beta_start=0.00085, beta_end=0.012, timesteps=1000):
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, timesteps, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.sigmas = sigmas.float()
        self.log_sigmas = sigmas.log().float()

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def timestep(self, sigma):
        dists = sigma.log() - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape)

    def sigma(self, timestep):
        t = torch.clamp(timestep.float(), min=0, max=len(self.sigmas) - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()


def normal_scheduler(ms, steps, sgm=False):
    start, end = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
    timesteps = torch.linspace(start, end, steps + 1)[:-1] if sgm else torch.linspace(start, end, steps)
    return torch.FloatTensor([float(ms.sigma(t)) for t in timesteps] + [0.0])


def simple_scheduler(ms, steps):
    ss = len(ms.sigmas) / steps
    return torch.FloatTensor([float(ms.sigmas[-(1 + int(x * ss))]) for x in range(steps)] + [0.0])


def ddim_scheduler(ms, steps):
    sigs, x = [0.0], 1
    ss = max(len(ms.sigmas) // steps, 1)
    while x < len(ms.sigmas):
        sigs.append(float(ms.sigmas[x]))
        x += ss
    return torch.FloatTensor(sigs[::-1])


def calculate_sigmas(ms, scheduler, steps):
    kd = import_k_diffusion_sampling()
    if scheduler == "normal":
        return normal_scheduler(ms, steps)
    if scheduler == "sgm_uniform":
        return normal_scheduler(ms, steps, sgm=True)
    if scheduler == "simple":
        return simple_scheduler(ms, steps)
    if scheduler == "ddim_uniform":
        return ddim_scheduler(ms, steps)
    if scheduler == "karras":
        return kd.get_sigmas_karras(n=steps, sigma_min=float(ms.sigma_min), sigma_max=float(ms.sigma_max))
    if scheduler == "exponential":
        return kd.get_sigmas_exponential(n=steps, sigma_min=float(ms.sigma_min), sigma_max=float(ms.sigma_max))
    raise ValueError(scheduler)


DISCARD_PENULTIMATE = {"dpm_2", "uni_pc", "uni_pc_bh2"}


def ksampler_sigmas(ms, scheduler, sampler, steps, denoise=1.0):
    """comfy/samplers.py KSampler.calculate_sigmas + set_steps."""
    def full(n):
        discard = sampler in DISCARD_PENULTIMATE
        sigmas = calculate_sigmas(ms, scheduler, n + 1 if discard else n)
        return torch.cat([sigmas[:-2], sigmas[-1:]]) if discard else sigmas
    if denoise > 0.9999:
        return full(steps)
    return full(int(steps / denoise))[-(steps + 1):]


# --------------------------------------------------------------------------------------------
# schedules


SCHEDULERS = ["normal", "karras", "exponential", "simple", "sgm_uniform", "ddim_uniform"]
SCHEDULE_STEPS = [1, 2, 3, 5, 10, 20, 25, 30, 50, 100, 1000]
KSAMPLER_CASES = [  # scheduler, sampler, steps, denoise
    ("normal", "euler", 10, 1.0), ("normal", "uni_pc_bh2", 10, 1.0), ("karras", "dpm_2", 12, 1.0),
    ("normal", "euler", 10, 0.5), ("karras", "uni_pc", 20, 0.75), ("simple", "euler", 3, 0.3),
    ("ddim_uniform", "heun", 30, 0.6), ("exponential", "dpmpp_2m", 7, 0.99995), ("sgm_uniform", "uni_pc", 1, 1.0),
]


def schedules_fixture():
    ms = ModelSamplingDiscrete()
    tensors = {"model.sigmas": ms.sigmas, "model.log_sigmas": ms.log_sigmas}
    t = torch.linspace(-5, 1010, 777)  # fractional, and outside [0, 999] (clamped)
    tensors["model.sigma_at.t"], tensors["model.sigma_at.sigma"] = t, ms.sigma(t)
    probe = torch.exp(torch.linspace(math.log(0.02), math.log(20.0), 501))
    tensors["model.timestep.sigma"], tensors["model.timestep.t"] = probe, ms.timestep(probe).float()
    for scheduler in SCHEDULERS:
        for steps in SCHEDULE_STEPS:
            tensors[f"sigmas.{scheduler}.{steps}"] = calculate_sigmas(ms, scheduler, steps)
    for i, (scheduler, sampler, steps, denoise) in enumerate(KSAMPLER_CASES):
        tensors[f"ksampler.{i}"] = ksampler_sigmas(ms, scheduler, sampler, steps, denoise)
    config = {"schedulers": SCHEDULERS, "steps": SCHEDULE_STEPS,
              "ksampler": [{"scheduler": s, "sampler": a, "steps": n, "denoise": d} for s, a, n, d in KSAMPLER_CASES]}
    write_fixture(AREA, "schedules", tensors, seed=0, config=config,
                  note="karras/exponential: k_diffusion.sampling; the rest re-derived from ComfyUI a125cd84 "
                       "comfy/model_sampling.py, comfy/samplers.py (see tests/golden/sampling.py)")


# --------------------------------------------------------------------------------------------
# samplers


class GaussianData:
    """x0 ~ N(mu, s^2) element-wise: the exact denoiser and the exact probability-flow ODE."""

    def __init__(self, shape, generator):
        self.mu = (torch.rand(shape, generator=generator) * 2 - 1).to(F32)
        self.s = (torch.rand(shape, generator=generator) * 0.9 + 0.3).to(F32)
        self.s2 = self.s * self.s

    def denoise(self, x, sigma):
        return self.mu + self.s2 / (self.s2 + sigma * sigma) * (x - self.mu)



class RecordedNoise:
    def __init__(self, tensors):
        self.tensors, self.calls = tensors, 0

    def __call__(self, sigma, sigma_next):
        out = self.tensors[self.calls]
        self.calls += 1
        return out


# SigmaConvert (comfy/extra_samplers/uni_pc.py) on float32 tensors, as ComfyUI evaluates it.
def _log_mean_coeff(s):
    return 0.5 * torch.log(1 / ((s * s) + 1))


def _alpha(s):
    return torch.exp(_log_mean_coeff(s))


def _sigma_vp(s):
    return torch.sqrt(1.0 - torch.exp(2.0 * _log_mean_coeff(s)))


def _lambda(s):
    lmc = _log_mean_coeff(s)
    return lmc - 0.5 * torch.log(1.0 - torch.exp(2.0 * lmc))


def unipc_rederived(denoise, x, sigmas, variant, callback=None):
    """ComfyUI's sample_unipc, written out from its definition: time variable sigma, data prediction,
    multistep order min(3, N - 1) with warm-up and lower order at the end, the corrector's model
    value reused as history, no corrector on the last step, a final sigma of 0 replaced by 0.001."""
    ts = sigmas.clone().to(F32)
    if float(ts[-1]) == 0:
        ts[-1] = 0.001
    steps, order = len(ts) - 1, min(3, len(ts) - 2)
    x = x / torch.sqrt(1.0 + ts[0] ** 2.0)

    def model(x_vp, t):
        x_k = x_vp * ((t ** 2 + 1.0) ** 0.5)
        eps = (x_k - denoise(x_k, t)) / t
        return (x_vp - _sigma_vp(t) * eps) / _alpha(t)

    def update(x, hist, t, p, use_corrector):
        s0, m0 = hist[-1]
        h = float(_lambda(t) - _lambda(s0))
        rks, d1s = [], []
        for i in range(1, p):
            si, mi = hist[-(i + 1)]
            rk = float(_lambda(si) - _lambda(s0)) / h
            rks.append(rk)
            d1s.append((mi - m0) / rk)
        rks.append(1.0)
        hh = -h
        h_phi_1 = math.expm1(hh)
        b_h = hh if variant == "bh1" else math.expm1(hh)
        h_phi_k, fact, R, b = h_phi_1 / hh - 1, 1, [], []
        for i in range(1, p + 1):
            R.append([r ** (i - 1) for r in rks])
            b.append(h_phi_k * fact / b_h)
            fact *= i + 1
            h_phi_k = h_phi_k / hh - 1 / fact
        R, b = np.array(R), np.array(b)
        alpha_t = float(_alpha(t))
        x_base = float(_sigma_vp(t) / _sigma_vp(s0)) * x - alpha_t * h_phi_1 * m0
        x_pred = x_base
        if p >= 2:
            rhos_p = [0.5] if p == 2 else np.linalg.solve(R[:-1, :-1], b[:-1])
            x_pred = x_base - alpha_t * b_h * sum(float(r) * d for r, d in zip(rhos_p, d1s))
        if not use_corrector:
            return x_pred, None
        rhos_c = [0.5] if p == 1 else np.linalg.solve(R, b)
        m_t = model(x_pred, t)
        corr = sum(float(r) * d for r, d in zip(rhos_c[:-1], d1s)) if d1s else 0
        return x_base - alpha_t * b_h * (corr + float(rhos_c[-1]) * (m_t - m0)), m_t

    hist = [(ts[0], model(x, ts[0]))]
    if callback:
        callback(0, ts[0], x / _alpha(ts[0]), hist[-1][1])
    for k in range(1, steps + 1) if order > 0 else []:
        p = k if k < order else min(order, steps + 1 - k)
        x, m = update(x, hist, ts[k], p, k < steps)
        if k == steps:
            break
        hist = (hist + [(ts[k], m)])[-order:]
        if callback:
            callback(k, ts[k], x / _alpha(ts[k]), m)
    return x / _alpha(ts[-1])


def unipc_diffusers(denoise, x, sigmas, variant):
    """diffusers' UniPCMultistepScheduler on the same sigma list (it must not end in 0): order 3,
    data prediction, the model's x0 given directly (prediction_type "sample")."""
    from diffusers import UniPCMultistepScheduler
    steps = len(sigmas) - 1
    assert float(sigmas[-1]) > 0 and steps < 15  # diffusers lowers the final order only below 15 steps
    sched = UniPCMultistepScheduler(solver_order=3, solver_type=variant, predict_x0=True, prediction_type="sample",
                                    lower_order_final=True, final_sigmas_type="zero")
    sched.set_timesteps(steps)
    sched.sigmas = sigmas.clone().to(F32)
    sched.timesteps = torch.arange(steps, 0, -1, dtype=torch.int64) * 10
    sample = x / torch.sqrt(1.0 + sigmas[0] ** 2)
    for i, t in enumerate(sched.timesteps):
        sigma = sigmas[i]
        x0 = denoise(sample * torch.sqrt(1.0 + sigma ** 2), sigma)
        sample = sched.step(x0, t, sample).prev_sample
    return sample * torch.sqrt(1.0 + sigmas[-1] ** 2)


K_SAMPLERS = {"euler": "sample_euler", "euler_ancestral": "sample_euler_ancestral", "heun": "sample_heun",
              "dpm_2": "sample_dpm_2", "dpmpp_2m": "sample_dpmpp_2m", "dpmpp_2m_sde": "sample_dpmpp_2m_sde",
              "dpmpp_sde": "sample_dpmpp_sde"}
STOCHASTIC = {"euler_ancestral", "dpmpp_2m_sde", "dpmpp_sde"}
SAMPLER_SHAPE = [2, 4, 8, 8]


def sampler_cases(ms):
    cases = []
    for sampler in list(K_SAMPLERS) + ["uni_pc", "uni_pc_bh2"]:
        for scheduler, steps in (("karras", 10), ("normal", 7)):
            cases.append((sampler, scheduler, steps, ksampler_sigmas(ms, scheduler, sampler, steps)))
    for sampler in ("uni_pc", "uni_pc_bh2"):  # the order edge cases: 1, 2, 3 and 4 steps
        for steps in (1, 2, 3, 4):
            cases.append((sampler, "normal", steps, ksampler_sigmas(ms, "normal", sampler, steps)))
    return cases


def samplers_fixture():
    kd = import_k_diffusion_sampling()
    ms = ModelSamplingDiscrete()
    gen = torch.Generator().manual_seed(1234)
    data = GaussianData(SAMPLER_SHAPE, gen)
    tensors = {"data.mu": data.mu, "data.s": data.s}
    config = {"shape": SAMPLER_SHAPE, "cases": [], "diffusers_unipc": []}

    def model(x, sigma, **kwargs):
        return data.denoise(x, sigma.reshape(-1)[0])

    for index, (sampler, scheduler, steps, sigmas) in enumerate(sampler_cases(ms)):
        x_init = torch.randn(SAMPLER_SHAPE, generator=gen) * torch.sqrt(1.0 + sigmas[0] ** 2)
        xs, ds = [], []
        noise = None
        if sampler in K_SAMPLERS:
            kwargs = {}
            if sampler in STOCHASTIC:
                noise = RecordedNoise(torch.randn([2 * len(sigmas)] + SAMPLER_SHAPE, generator=gen))
                kwargs["noise_sampler"] = noise
            final = getattr(kd, K_SAMPLERS[sampler])(
                model, x_init.clone(), sigmas, callback=lambda d: (xs.append(d["x"]), ds.append(d["denoised"])),
                disable=True, **kwargs)
        else:
            variant = "bh2" if sampler == "uni_pc_bh2" else "bh1"
            final = unipc_rederived(data.denoise, x_init.clone(), sigmas, variant,
                                    callback=lambda k, t, x, m: (xs.append(x), ds.append(m)))
        name = f"case{index}"
        tensors[f"{name}.sigmas"], tensors[f"{name}.x_init"], tensors[f"{name}.final"] = sigmas, x_init, final
        steps_done = len(xs)  # [steps, numel]: the reader takes up to 4 dimensions
        tensors[f"{name}.x"] = torch.stack(xs).reshape(steps_done, -1)
        tensors[f"{name}.denoised"] = torch.stack(ds).reshape(steps_done, -1)
        entry = {"name": name, "sampler": sampler, "scheduler": scheduler, "steps": steps, "noise_calls": 0}
        if noise is not None:
            tensors[f"{name}.noise"] = noise.tensors[:noise.calls].reshape(noise.calls, -1)
            entry["noise_calls"] = noise.calls
        config["cases"].append(entry)

    # The probability-flow ODE has a closed form for Gaussian data: a deterministic sampler with many
    # steps must approach it. The list stops at sigma_min (no final jump to 0, which every sampler
    # takes as one first-order step).
    sigmas = ksampler_sigmas(ms, "karras", "dpmpp_2m", 60)[:-1]
    x_init = torch.randn(SAMPLER_SHAPE, generator=gen) * sigmas[0]
    tensors["exact.sigmas"], tensors["exact.x_init"] = sigmas, x_init
    s2 = data.s2.double()
    tensors["exact.solution"] = (data.mu + torch.sqrt((s2 + float(sigmas[-1]) ** 2) / (s2 + float(sigmas[0]) ** 2))
                                 * (x_init.double() - data.mu)).float()

    # UniPC against diffusers where the two agree (a list ending above 0), and the re-derivation
    # against diffusers on it, which is what vouches for the re-derivation on lists ending in 0.
    for variant in ("bh1", "bh2"):
        sigmas = calculate_sigmas(ms, "karras", 12)[:9]  # 8 steps, 14.6 -> 0.2
        x_init = torch.randn(SAMPLER_SHAPE, generator=gen) * torch.sqrt(1.0 + sigmas[0] ** 2)
        reference = unipc_diffusers(data.denoise, x_init.clone(), sigmas, variant)
        mine = unipc_rederived(data.denoise, x_init.clone(), sigmas, variant)
        rel = float((mine - reference).norm() / reference.norm())
        print(f"  uni_pc {variant}: re-derivation vs diffusers, rel. L2 {rel:.2e}")
        assert rel < 2e-6, rel
        name = f"diffusers_{variant}"
        tensors[f"{name}.sigmas"], tensors[f"{name}.x_init"], tensors[f"{name}.final"] = sigmas, x_init, reference
        config["diffusers_unipc"].append({"name": name, "sampler": "uni_pc_bh2" if variant == "bh2" else "uni_pc"})

    write_fixture(AREA, "samplers", tensors, seed=1234, config=config,
                  note="k_diffusion.sampling samplers, diffusers UniPCMultistepScheduler, and a re-derivation of "
                       "ComfyUI a125cd84 comfy/extra_samplers/uni_pc.py for lists ending in 0 (tests/golden/sampling.py)")


# --------------------------------------------------------------------------------------------
# noise augmentation


def comfy_tables():
    """LDM/ComfyUI AbstractLowScaleModel.register_schedule with squaredcos_cap_v2: float64 -> float32."""
    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = np.array([min(1 - alpha_bar((i + 1) / 1000) / alpha_bar(i / 1000), 0.999) for i in range(1000)])
    alphas_cumprod = np.cumprod(1.0 - betas, axis=0)
    return (torch.tensor(np.sqrt(alphas_cumprod), dtype=F32), torch.tensor(np.sqrt(1.0 - alphas_cumprod), dtype=F32))


def comfy_timestep_embedding(level, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(start=0, end=half, dtype=F32) / half)
    args = torch.tensor([level])[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def comfy_augment(x, level, noise, tables):
    """CLIPEmbeddingNoiseAugmentation.forward without statistics (ComfyUI never loads them)."""
    sqrt_ac, sqrt_1m = tables
    z = sqrt_ac[level] * x + sqrt_1m[level] * noise
    return torch.cat((z, comfy_timestep_embedding(level, x.shape[-1])), 1)


def comfy_unclip_adm(images, seed, dim, tables, merge=0.05):
    """comfy/model_base.py SD21UNCLIP.encode_adm / unclip_adm on a CPU device."""
    images = [im for im in images if im["strength"] != 0]  # nodes.py unCLIPConditioning passes through
    if not images:
        return torch.zeros((1, 2 * dim))
    outs = []
    for image in images:
        for row in image["embeds"]:
            level = round(999 * image["noise_augmentation"])
            noise = torch.randn([1, dim], generator=torch.manual_seed(seed - 10))
            outs.append(comfy_augment(row[None], level, noise, tables) * image["strength"])
    if len(outs) == 1:
        return outs[0]
    summed = torch.stack(outs).sum(0)
    noise = torch.randn_like(summed[:, :dim])  # the global CPU generator, continuing
    return comfy_augment(summed[:, :dim], round(999 * merge), noise, tables)


ADM_CASES = [  # dim, seed, images: (rows, strength, noise_augmentation)
    (1024, 0, [(1, 1.0, 0.0)]),
    (1024, 52, [(1, 0.7, 0.3)]),
    (1024, 123, [(1, 1.0, 0.1), (1, 0.5, 0.0)]),
    (1024, 7, [(2, -1.5, 0.05)]),
    (768, 2**64 - 1, [(1, 1.0, 1.0)]),
    (1024, 5, [(1, 0.0, 0.2), (1, 2.0, 0.5)]),
    (768, 9, [(1, 1.0, 0.25), (3, 0.3, 0.75), (1, -0.2, 0.0)]),
]
DIFFUSERS_LEVELS = [0, 1, 50, 250, 500, 999]


def noise_aug_fixture():
    from diffusers import DDPMScheduler, StableUnCLIPImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    gen = torch.Generator().manual_seed(777)
    tensors, config = {}, {"diffusers": [], "comfy": []}

    for dim, with_stats in ((1024, False), (768, True)):
        normalizer = StableUnCLIPImageNormalizer(embedding_dim=dim)
        if with_stats:  # -l: Karlo-like statistics
            with torch.no_grad():
                normalizer.mean.copy_(torch.randn([1, dim], generator=gen) * 0.2)
                normalizer.std.copy_(torch.rand([1, dim], generator=gen) * 0.5 + 0.25)
        pipe = types.SimpleNamespace(
            image_normalizer=normalizer,
            image_noising_scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"))
        embeds = torch.randn([2, dim], generator=gen) * 0.5
        noise = torch.randn([2, dim], generator=gen)
        prefix = f"diffusers.{dim}"
        tensors[f"{prefix}.embeds"], tensors[f"{prefix}.noise"] = embeds, noise
        tensors[f"{prefix}.mean"], tensors[f"{prefix}.std"] = normalizer.mean.detach()[0], normalizer.std.detach()[0]
        for level in DIFFUSERS_LEVELS:
            with torch.no_grad():
                out = StableUnCLIPImg2ImgPipeline.noise_image_embeddings(pipe, embeds, level, noise=noise.clone())
            tensors[f"{prefix}.level{level}"] = out
        config["diffusers"].append({"dim": dim, "stats": with_stats, "levels": DIFFUSERS_LEVELS})

    tables = comfy_tables()
    tensors["comfy.signal_scale"], tensors["comfy.noise_scale"] = tables
    for index, (dim, seed, spec) in enumerate(ADM_CASES):
        images = []
        for j, (rows, strength, aug) in enumerate(spec):
            embeds = torch.randn([rows, dim], generator=gen) * 0.5
            tensors[f"comfy.case{index}.image{j}"] = embeds
            images.append({"embeds": embeds, "strength": strength, "noise_augmentation": aug})
        tensors[f"comfy.case{index}.adm"] = comfy_unclip_adm(images, seed, dim, tables)[0]
        config["comfy"].append({"dim": dim, "seed": str(seed),
                                "images": [{"rows": r, "strength": s, "noise_augmentation": a} for r, s, a in spec]})
    write_fixture(AREA, "noise_aug", tensors, seed=777, config=config,
                  note="diffusers StableUnCLIPImg2ImgPipeline.noise_image_embeddings (image_normalizer, "
                       "DDPMScheduler squaredcos_cap_v2, get_timestep_embedding); ComfyUI a125cd84 "
                       "comfy/model_base.py unclip_adm re-derived on a CPU device (tests/golden/sampling.py)")


# --------------------------------------------------------------------------------------------
# whole KSampler runs


def fake_network(x_in, t, mu):
    """A stand-in v-prediction network: v = a(t) x_in + b(t) mu, t the integer timestep."""
    a = 0.3 + 0.2 * math.cos(t / 100.0)
    b = 0.1 * math.sin(t / 50.0) + 0.05
    return a * x_in + b * mu


def comfy_denoiser(ms, network, cfg):
    """comfy/model_base.py _apply_model (V_PREDICTION) + comfy/samplers.py cfg_function;
    network(x_in, t, negative) -> v."""
    def denoise(x, sigma):
        sigma = sigma.reshape(-1)[0].to(F32)
        x_in = x / (sigma ** 2 + 1.0) ** 0.5
        t = int(ms.timestep(sigma.reshape(1))[0])

        def to_denoised(out):
            return x * 1.0 / (sigma ** 2 + 1.0) - out * sigma * 1.0 / (sigma ** 2 + 1.0) ** 0.5
        cond = to_denoised(network(x_in, t, False))
        if math.isclose(cfg, 1.0):
            return cond
        uncond = to_denoised(network(x_in, t, True))
        return uncond + (cond - uncond) * cfg
    return denoise


def comfy_ksample(ms, denoise_fn, sampler, scheduler, steps, denoise, seed, latent):
    """comfy/sample.py prepare_noise, comfy/samplers.py KSampler sigmas, max_denoise, EPS.noise_scaling,
    then the sampler (ancestral noise: default_noise_sampler(x, seed) on a CPU device)."""
    kd = import_k_diffusion_sampling()
    sigmas = ksampler_sigmas(ms, scheduler, sampler, steps, denoise)
    noise = torch.randn(latent.shape, generator=torch.manual_seed(seed), device="cpu")
    max_denoise = math.isclose(float(ms.sigma_max), float(sigmas[0]), rel_tol=1e-05) or float(sigmas[0]) > float(ms.sigma_max)
    x = noise * torch.sqrt(1.0 + sigmas[0] ** 2.0) if max_denoise else noise * sigmas[0]
    x = x + latent
    if sampler in ("uni_pc", "uni_pc_bh2"):
        return unipc_rederived(denoise_fn, x, sigmas, "bh2" if sampler == "uni_pc_bh2" else "bh1")
    kwargs = {}
    if sampler == "euler_ancestral":
        noise_gen = torch.Generator(device="cpu")
        noise_gen.manual_seed(seed)
        kwargs["noise_sampler"] = lambda s, sn: torch.randn(x.size(), generator=noise_gen)
    return getattr(kd, K_SAMPLERS[sampler])(lambda x_, s_: denoise_fn(x_, s_), x, sigmas, disable=True, **kwargs)


KSAMPLER_RUNS = [  # sampler, scheduler, steps, cfg, denoise, seed, batch, img2img
    ("euler_ancestral", "normal", 8, 7.0, 1.0, 3, 1, False),
    ("uni_pc_bh2", "normal", 8, 5.0, 1.0, 42, 1, False),
    ("dpmpp_2m", "karras", 10, 1.0, 1.0, 2**64 - 1, 1, False),
    ("euler", "simple", 6, 4.0, 0.6, 11, 2, True),
    ("dpm_2", "normal", 5, 8.0, 1.0, 0, 1, False),
    ("euler_ancestral", "karras", 6, 3.0, 0.5, 99, 2, True),
]


def ksampler_fixture():
    ms = ModelSamplingDiscrete()
    gen = torch.Generator().manual_seed(4242)
    tensors, config = {}, {"runs": []}
    for index, (sampler, scheduler, steps, cfg, denoise, seed, batch, img2img) in enumerate(KSAMPLER_RUNS):
        shape = [batch, 4, 8, 8]
        mu_pos = torch.randn(shape[1:], generator=gen)
        mu_neg = torch.randn(shape[1:], generator=gen)
        latent = torch.randn(shape, generator=gen) * 0.8 if img2img else torch.zeros(shape)
        denoise_fn = comfy_denoiser(ms, lambda x_in, t, negative: fake_network(x_in, t, mu_neg if negative else mu_pos),
                                    cfg)
        out = comfy_ksample(ms, denoise_fn, sampler, scheduler, steps, denoise, seed, latent)
        name = f"run{index}"
        tensors[f"{name}.mu_pos"], tensors[f"{name}.mu_neg"] = mu_pos, mu_neg
        tensors[f"{name}.latent"], tensors[f"{name}.out"] = latent, out
        config["runs"].append({"name": name, "sampler": sampler, "scheduler": scheduler, "steps": steps, "cfg": cfg,
                               "denoise": denoise, "seed": str(seed), "shape": shape})
    write_fixture(AREA, "ksampler", tensors, seed=4242, config=config,
                  note="ComfyUI's KSampler composition re-derived (prepare_noise, noise_scaling, V_PREDICTION, "
                       "cfg_function) around k_diffusion.sampling / the UniPC re-derivation, fake network")


UNET_RUNS = [  # sampler, scheduler, steps, cfg, seed, noise_augmentation, strength
    ("uni_pc_bh2", "normal", 6, 5.0, 77, 0.1, 1.0),
    ("euler_ancestral", "karras", 5, 7.0, 3, 0.0, 1.5),
]


def unet_e2e_fixture():
    from safetensors.torch import load_file
    import unet as unet_area
    source = "unet/unet_tiny_adm.safetensors"
    weights = load_file(str(DATA / source))
    model = unet_area.build(12)
    model.load_state_dict({k: weights[f"unet.{unet_area.to_ldm(k)}"] for k in model.state_dict()})
    ms, tables, dim = ModelSamplingDiscrete(), comfy_tables(), 6
    gen = torch.Generator().manual_seed(5151)
    tensors, config = {}, {"weights": source, "embedding_dim": dim, "latent": [1, 4, 16, 16], "runs": []}
    for index, (sampler, scheduler, steps, cfg, seed, aug, strength) in enumerate(UNET_RUNS):
        embeds = torch.randn([1, dim], generator=gen) * 0.5
        context = torch.randn([2, 5, unet_area.TINY["context_dim"]], generator=gen)  # [positive; negative]
        image = {"embeds": embeds, "strength": strength, "noise_augmentation": aug}
        y = torch.cat([comfy_unclip_adm([image], seed, dim, tables), torch.zeros(1, 2 * dim)])

        def network(x_in, t, negative, context=context, y=y):
            row = slice(1, 2) if negative else slice(0, 1)
            with torch.no_grad():
                return model(x_in, torch.tensor([float(t)]), encoder_hidden_states=context[row],
                             class_labels=y[row]).sample
        out = comfy_ksample(ms, comfy_denoiser(ms, network, cfg), sampler, scheduler, steps, 1.0, seed,
                            torch.zeros(config["latent"]))
        name = f"run{index}"
        tensors[f"{name}.embeds"], tensors[f"{name}.context"], tensors[f"{name}.out"] = embeds, context, out
        config["runs"].append({"name": name, "sampler": sampler, "scheduler": scheduler, "steps": steps, "cfg": cfg,
                               "seed": str(seed), "noise_augmentation": aug, "strength": strength})
    write_fixture(AREA, "unet_e2e", tensors, seed=5151, config=config,
                  note="ComfyUI's KSampler composition re-derived around diffusers.UNet2DConditionModel "
                       f"({source} weights) and the unclip_adm re-derivation")


def generate():
    torch.set_num_threads(1)
    rng_fixture()
    schedules_fixture()
    samplers_fixture()
    noise_aug_fixture()
    ksampler_fixture()
    unet_e2e_fixture()
