"""The GPU peer of unclip's CUDA backend: diffusers StableUnCLIPImg2ImgPipeline in the
sd21-unclip-h configuration, built from inline configs with random weights (no downloads), fp16,
PyTorch SDPA attention. examples/bench/run_cuda.sh runs it after the unclip CLI.

Measured, each after a warm-up, with CUDA events (host clock after a synchronize for the pipeline):
  gemm      torch.matmul fp16, 8192^3, median of 10 -> TFLOP/s (the card's ceiling)
  vision    CLIPVisionModelWithProjection ViT-H/14, one 224x224 image
  text      CLIPTextModel (OpenCLIP ViT-H text, 23 layers as in the unclip-h repo), one 77-token prompt
  unet768   one CFG UNet step: batch 2, 96x96 latents, context [2,77,1024], class_labels [2,2048]
  unet512   the same at 64x64 latents
  vae768    AutoencoderKL decode of a 1x4x96x96 latent
  e2e       pipe(image=..., prompt=..., 20 steps, guidance 7, 768x768) with UniPCMultistepScheduler
            (solver_type "bh2", ComfyUI's uni_pc_bh2), median of --e2e-runs; per-step time from
            CUDA events recorded in the step callback; peak torch.cuda.max_memory_allocated
The tokenizer is a real CLIP BPE tokenizer built from the repository's
src/text/data/bpe_simple_vocab_16e6.txt.gz (the vocabulary OpenCLIP and HF CLIP share); if that
fails, the pipeline gets prompt_embeds / negative_prompt_embeds instead and says so.

    python3 bench_diffusers_cuda.py --out results.json [--repeats 5] [--e2e-runs 2] [--steps 20]
    python3 bench_diffusers_cuda.py --tiny --device cpu --out /tmp/tiny.json     (smoke test)
"""
import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

# The device machine has no network: never let the hub libraries try to reach it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------
# Configurations: the full sd21-unclip-h one and a tiny one with the same structure.

def configs(tiny):
    if not tiny:
        # stabilityai/stable-diffusion-2-1-unclip unet/config.json. upcast_attention only affects
        # diffusers' non-SDPA attention path (AttnProcessor2_0 ignores it).
        unet = dict(sample_size=96, in_channels=4, out_channels=4, layers_per_block=2,
                    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=1024,
                    attention_head_dim=(5, 10, 20, 20), use_linear_projection=True, upcast_attention=True,
                    class_embed_type="projection", projection_class_embeddings_input_dim=2048,
                    flip_sin_to_cos=True, freq_shift=0, act_fn="silu", norm_num_groups=32, norm_eps=1e-5)
        vae = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                   block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                   up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=768,
                   scaling_factor=0.18215)
        text = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                    num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
                    layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
        vision = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                      image_size=224, patch_size=14, hidden_act="gelu", projection_dim=1024, layer_norm_eps=1e-5,
                      num_channels=3)
        return unet, vae, text, vision, 1024
    unet = dict(sample_size=32, in_channels=4, out_channels=4, layers_per_block=1,
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(32, 64),
                cross_attention_dim=32, attention_head_dim=(2, 4), use_linear_projection=True, upcast_attention=True,
                class_embed_type="projection", projection_class_embeddings_input_dim=64,
                flip_sin_to_cos=True, freq_shift=0, norm_num_groups=32)
    vae = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, block_out_channels=(32, 64),
               down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
               norm_num_groups=32, sample_size=64, scaling_factor=0.18215)
    text = dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=77, hidden_act="gelu", projection_dim=32, bos_token_id=49406,
                eos_token_id=49407, pad_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=224,
                  patch_size=14, hidden_act="gelu", projection_dim=32, num_channels=3)
    return unet, vae, text, vision, 32


# ---------------------------------------------------------------------------------------------
# The tokenizer, from the repository's CLIP BPE merges (as open_clip's SimpleTokenizer builds it).

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def build_tokenizer():
    from transformers import CLIPTokenizer
    gz = ROOT / "src" / "text" / "data" / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(gz).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder = tempfile.mkdtemp(prefix="clip-tokenizer-")
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer.from_pretrained(folder, model_max_length=77, pad_token="!")
    ids = tok("a photograph of an astronaut").input_ids
    if ids[:3] != [49406, 320, 8853]:
        raise RuntimeError(f"tokenizer built from {gz} gives unexpected ids {ids}")
    return tok


# ---------------------------------------------------------------------------------------------

def make_transformers_model(cls, config_cls, kwargs, dtype):
    conf = config_cls(**kwargs)
    try:
        model = cls._from_config(conf, attn_implementation="sdpa")
    except Exception as e:  # older/newer signatures: plain construction, SDPA is the default
        log(f"note: {cls.__name__}._from_config(attn_implementation='sdpa') failed ({e}); constructing plainly")
        model = cls(conf)
    return model.to(dtype).eval()


def build_pipeline(args, device, dtype):
    from diffusers import AutoencoderKL, DDPMScheduler, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel
    from diffusers import UniPCMultistepScheduler
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)

    unet_c, vae_c, text_c, vision_c, embed_dim = configs(args.tiny)
    torch.manual_seed(0)
    # Constructed on the device: random init there is fast; then cast to the benchmark dtype.
    with torch.device(device):
        unet = UNet2DConditionModel(**unet_c).to(dtype).eval()
        vae = AutoencoderKL(**vae_c).to(dtype).eval()
        text_encoder = make_transformers_model(CLIPTextModel, CLIPTextConfig, text_c, dtype)
        image_encoder = make_transformers_model(CLIPVisionModelWithProjection, CLIPVisionConfig, vision_c, dtype)
        normalizer = StableUnCLIPImageNormalizer(embedding_dim=embed_dim).to(dtype).eval()
    tokenizer, tokenizer_note = None, "CLIP BPE tokenizer from src/text/data/bpe_simple_vocab_16e6.txt.gz"
    try:
        tokenizer = build_tokenizer()
    except Exception as e:
        tokenizer_note = f"no tokenizer ({type(e).__name__}: {e}); the pipeline gets prompt_embeds"
        log("note: " + tokenizer_note)
    scheduler = UniPCMultistepScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                        beta_schedule="scaled_linear", prediction_type="v_prediction",
                                        solver_type="bh2", steps_offset=1)
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(), image_encoder=image_encoder, image_normalizer=normalizer,
        image_noising_scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"),
        tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler, vae=vae)
    pipe.set_progress_bar_config(disable=True)
    processors = sorted({type(p).__name__ for p in unet.attn_processors.values()})
    info = {
        "unet_params_m": sum(p.numel() for p in unet.parameters()) / 1e6,
        "vae_params_m": sum(p.numel() for p in vae.parameters()) / 1e6,
        "text_params_m": sum(p.numel() for p in text_encoder.parameters()) / 1e6,
        "vision_params_m": sum(p.numel() for p in image_encoder.parameters()) / 1e6,
        "unet_attention_processors": processors,
        "text_attn_implementation": getattr(text_encoder.config, "_attn_implementation", None),
        "vision_attn_implementation": getattr(image_encoder.config, "_attn_implementation", None),
        "tokenizer": tokenizer_note,
        "scheduler": "UniPCMultistepScheduler(solver_type='bh2', prediction_type='v_prediction')",
    }
    return pipe, info


class Timer:
    """Times a closure: CUDA events on a GPU, the host clock after a synchronize elsewhere."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def once(self, fn):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def run(self, fn, repeats, warmup=2):
        for _ in range(warmup):
            fn()
        self.sync()
        return sorted(self.once(fn) for _ in range(repeats))


def summary(seconds):
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "seconds": seconds}


def input_image(size):
    from PIL import Image
    path = ROOT / "examples" / "data" / "sample.png"
    if path.is_file():
        return Image.open(path).convert("RGB"), str(path.relative_to(ROOT))
    g = torch.Generator().manual_seed(1)
    pixels = (torch.rand(size, size, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels), "random"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="", help="write the results as JSON here")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny)")
    parser.add_argument("--dtype", default="", help="fp16 (default on cuda) or fp32 (default on cpu)")
    parser.add_argument("--tiny", action="store_true", help="tiny configs and sizes: a smoke test of this script")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per component (default 5)")
    parser.add_argument("--e2e-runs", type=int, default=2, help="timed end-to-end runs (default 2)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=7.0)
    parser.add_argument("--size", type=int, default=0, help="end-to-end image size (default 768; 64 with --tiny)")
    parser.add_argument("--gemm", type=int, default=0, help="GEMM size (default 8192; 256 with --tiny)")
    parser.add_argument("--skip", default="", help="comma list of gemm,vision,text,unet768,unet512,vae768,e2e")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_diffusers_cuda: no CUDA device (use --tiny --device cpu for a smoke test)")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[
        args.dtype or ("fp16" if device.type == "cuda" else "fp32")]
    skip = set(filter(None, args.skip.split(",")))
    size = args.size or (64 if args.tiny else 768)
    small = 32 if args.tiny else 512
    gemm_n = args.gemm or (256 if args.tiny else 8192)
    timer = Timer(device)
    t_start = time.perf_counter()

    import diffusers
    import transformers
    result = {
        "impl": "diffusers", "tiny": args.tiny, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cudnn_benchmark": torch.backends.cudnn.benchmark, "repeats": args.repeats,
        # Set by tests/cuda/device_check.sh when this runs on spare cores while the project compiles.
        "concurrent_build": os.environ.get("UNCLIP_BENCH_CONCURRENT_BUILD") == "1",
        "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "size": size, "components": {}, "errors": {},
    }
    log(f"bench_diffusers_cuda: torch {torch.__version__}, diffusers {diffusers.__version__}, transformers "
        f"{transformers.__version__}, {result['gpu'] or device}, {result['dtype']}{', TINY configs' if args.tiny else ''}")

    with torch.inference_mode():
        # The card's ceiling first, before the models take memory.
        errors = result["errors"]

        def guarded(name, fn):
            """Runs one measurement; a failure is logged and recorded, and the next one still runs."""
            try:
                fn()
                return True
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                errors[name] = f"{type(e).__name__}: {e}"
                log(f"{name}: FAILED ({errors[name]})")
                if device.type == "cuda":
                    torch.cuda.synchronize()
                return False

        def gemm():
            gen = torch.Generator(device).manual_seed(0)
            a = torch.randn(gemm_n, gemm_n, device=device, dtype=dtype, generator=gen)
            b = torch.randn(gemm_n, gemm_n, device=device, dtype=dtype, generator=gen)
            secs = timer.run(lambda: torch.matmul(a, b), 10, warmup=3)
            s = summary(secs)
            s["n"] = gemm_n
            s["tflops"] = 2.0 * gemm_n ** 3 / s["median_s"] / 1e12
            result["gemm"] = s
            log(f"gemm {gemm_n}^3 {result['dtype']}: {s['median_s'] * 1e3:.2f} ms, {s['tflops']:.1f} TFLOP/s")

        if "gemm" not in skip:
            guarded("gemm", gemm)

        t0 = time.perf_counter()
        built = {}
        if not guarded("build", lambda: built.update(zip(("pipe", "info"), build_pipeline(args, device, dtype)))):
            return finish(args, result, t_start)
        pipe, info = built["pipe"], built["info"]
        timer.sync()
        result["build_s"] = time.perf_counter() - t0
        result["models"] = info
        log(f"pipeline built in {result['build_s']:.1f} s: UNet {info['unet_params_m']:.0f} M, VAE "
            f"{info['vae_params_m']:.0f} M, text {info['text_params_m']:.0f} M, vision {info['vision_params_m']:.0f} M "
            f"parameters; attention {info['unet_attention_processors']} / {info['text_attn_implementation']}")

        gen = torch.Generator(device).manual_seed(1)
        rand = lambda *shape: torch.randn(*shape, device=device, dtype=dtype, generator=gen)  # noqa: E731
        components = result["components"]

        def bench(name, fn, **extra):
            if name in skip:
                return

            def run():
                s = summary(timer.run(fn, args.repeats))
                s.update(extra)
                components[name] = s
                log(f"{name:8} {s['median_s'] * 1e3:9.2f} ms (median of {args.repeats}, min {s['min_s'] * 1e3:.2f})")
            guarded(name, run)

        pixels = rand(1, 3, 224, 224)
        bench("vision", lambda: pipe.image_encoder(pixel_values=pixels).image_embeds, batch=1, image=224)
        if pipe.tokenizer is not None:
            ids = pipe.tokenizer("a photograph of an astronaut riding a horse", padding="max_length", max_length=77,
                                 truncation=True, return_tensors="pt").input_ids.to(device)
        else:
            ids = torch.randint(1, 49406, (1, 77), device=device)
            ids[0, 0], ids[0, 12], ids[0, 13:] = 49406, 49407, 0
        bench("text", lambda: pipe.text_encoder(ids)[0], batch=1, tokens=77)
        ctx_dim = pipe.unet.config.cross_attention_dim
        adm = pipe.unet.config.projection_class_embeddings_input_dim
        context, labels = rand(2, 77, ctx_dim), rand(2, adm)
        t = torch.tensor([999.0, 999.0], device=device)
        scale = pipe.vae_scale_factor
        for name, px in (("unet768", size), ("unet512", small)):
            x = rand(2, 4, px // scale, px // scale)
            bench(name, lambda x=x: pipe.unet(x, t, encoder_hidden_states=context, class_labels=labels,
                                              return_dict=False)[0], batch=2, latent=px // scale, image=px)
        z = rand(1, 4, size // scale, size // scale)
        bench("vae768", lambda: pipe.vae.decode(z, return_dict=False)[0], latent=size // scale, image=size)
        del pixels, context, labels, z

        def end_to_end():
            image, image_source = input_image(size)
            kwargs = dict(image=image, num_inference_steps=args.steps, guidance_scale=args.cfg, height=size,
                          width=size, output_type="pil")
            if pipe.tokenizer is not None:
                kwargs.update(prompt="", negative_prompt="")
            else:
                kwargs.update(prompt_embeds=pipe.text_encoder(ids)[0], negative_prompt_embeds=pipe.text_encoder(ids)[0])
            events = []

            def on_step(step, timestep, latents):
                if timer.cuda:
                    e = torch.cuda.Event(enable_timing=True)
                    e.record()
                    events.append(e)
                else:
                    events.append(time.perf_counter())

            def e2e(seed):
                events.clear()
                timer.sync()
                t0 = time.perf_counter()
                out = pipe(generator=torch.Generator(device).manual_seed(seed), callback=on_step, callback_steps=1,
                           **kwargs)
                timer.sync()
                total = time.perf_counter() - t0
                if timer.cuda:
                    steps = [a.elapsed_time(b) / 1000.0 for a, b in zip(events, events[1:])]
                else:
                    steps = [b - a for a, b in zip(events, events[1:])]
                return total, steps, out.images[0]

            if device.type == "cuda":
                torch.cuda.empty_cache()  # what the components left cached is not the pipeline's
            e2e(0)  # warm-up: the same shapes, every kernel chosen and loaded
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            runs, step_times = [], []
            for k in range(args.e2e_runs):
                total, steps, img = e2e(k + 1)
                runs.append(total)
                step_times.extend(steps)
                log(f"e2e run {k + 1}: {total:.3f} s, step median {statistics.median(steps) * 1e3:.2f} ms")
            e = summary(sorted(runs))
            e.update(steps=args.steps, cfg=args.cfg, size=size, image=image_source, output=f"{img.width}x{img.height}",
                     sampler="uni_pc_bh2 (UniPCMultistepScheduler solver_type=bh2)",
                     step_median_s=statistics.median(step_times) if step_times else None)
            if device.type == "cuda":
                e["peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
                e["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2 ** 30
                # As nvidia-smi would show this process (context, cuBLAS workspaces, the allocator's
                # pool): comparable with the unclip CLI's sampled peak.
                free, total = torch.cuda.mem_get_info(device)
                e["device_used_gib"] = (total - free) / 2 ** 30
            result["e2e"] = e

        if "e2e" not in skip:
            guarded("e2e", end_to_end)
    return finish(args, result, t_start)


def finish(args, result, t_start):
    """Prints the table and writes the JSON, whatever was measured; returns the exit status."""
    import diffusers
    result["total_s"] = time.perf_counter() - t_start
    components = result["components"]
    size = result["size"]
    # The table.
    log("")
    log(f"diffusers {diffusers.__version__} / torch {torch.__version__} on {result['gpu'] or result['device']} "
        f"({result['dtype']})")
    log(f"{'what':34} {'time':>12}")
    if "gemm" in result:
        log(f"{'gemm ' + str(result['gemm']['n']) + '^3 (TFLOP/s)':34} {result['gemm']['tflops']:12.1f}")
    labels_ = {"vision": "CLIP vision encode, 224", "text": "text encode, 77 tokens", "unet768": "UNet CFG step, {} px",
               "unet512": "UNet CFG step, {} px", "vae768": "VAE decode, {} px"}
    for k, label in labels_.items():
        if k in components:
            log(f"{label.format(components[k].get('image')):34} {components[k]['median_s'] * 1e3:9.2f} ms")
    if "e2e" in result:
        e = result["e2e"]
        log(f"{'end to end, ' + str(e['steps']) + ' steps':34} {e['median_s']:10.3f} s")
        if e.get("step_median_s"):
            log(f"{'  per step (events)':34} {e['step_median_s'] * 1e3:9.2f} ms")
        if "peak_allocated_gib" in e:
            log(f"{'  peak allocated / reserved':34} {e['peak_allocated_gib']:8.2f} / {e['peak_reserved_gib']:.2f} GiB")
            log(f"{'  device memory in use after':34} {e['device_used_gib']:8.2f} GiB")
    log(f"(script total {result['total_s']:.1f} s)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        log(f"wrote {args.out}")
    for name, err in result["errors"].items():
        log(f"FAILED {name}: {err}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
