"""The PyTorch side of bench_components.cpp: one component per process, same shapes, threads and
repeats, random weights (values do not matter for timing), fp32 on the CPU.
  gemm    torch.mm, N x N x N (default 4096)
  text    transformers CLIPTextModelWithProjection at OpenCLIP ViT-H/14 size, one 77-token prompt,
          all hidden states returned (ComfyUI reads the penultimate)
  vision  transformers CLIPVisionModelWithProjection at ViT-H/14 size, one 224x224 image
  unet    diffusers UNet2DConditionModel in the sd21-unclip-h configuration, one CFG step (batch 2)
  vae     diffusers AutoencoderKL decode of one 1x4xN/8xN/8 latent, untiled
The last line of output is "RESULT " and a JSON object, as from bench_components.
    python bench_components_torch.py --component unet [--size 768] [--threads 2] [--repeats 3] [--no-warmup]"""
import argparse
import json
import resource
import time

import torch

from bench_timing import sorted_seconds


def build(component, size):
    """The module and a closure that runs it once."""
    if component == "gemm":
        a, b = torch.randn(size, size) * 0.05, torch.randn(size, size) * 0.05
        return lambda: torch.mm(a, b)
    if component == "text":
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection
        conf = CLIPTextConfig(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                              num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
                              projection_dim=1024, eos_token_id=49407, bos_token_id=49406, pad_token_id=0)
        model = CLIPTextModelWithProjection(conf).eval()
        ids = torch.randint(1, 49406, (1, 77))
        ids[0, 0], ids[0, 12], ids[0, 13:] = 49406, 49407, 0
        return lambda: model(input_ids=ids, output_hidden_states=True)
    if component == "vision":
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
        conf = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                                image_size=224, patch_size=14, hidden_act="gelu", projection_dim=1024)
        model = CLIPVisionModelWithProjection(conf).eval()
        pixels = torch.randn(1, 3, 224, 224)
        return lambda: model(pixel_values=pixels)
    if component == "unet":
        from diffusers import UNet2DConditionModel
        unet = UNet2DConditionModel(
            sample_size=size // 8, in_channels=4, out_channels=4, layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
            use_linear_projection=True, class_embed_type="projection", projection_class_embeddings_input_dim=2048,
            flip_sin_to_cos=True, freq_shift=0).eval()
        h = size // 8
        x, t = torch.randn(2, 4, h, h), torch.tensor([999.0, 999.0])
        context, y = torch.randn(2, 77, 1024), torch.randn(2, 2048)
        return lambda: unet(x, t, encoder_hidden_states=context, class_labels=y)
    if component == "vae":
        from diffusers import AutoencoderKL
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4).eval()
        z = torch.randn(1, 4, size // 8, size // 8)
        return lambda: vae.decode(z)
    raise ValueError(component)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--component", required=True, choices=["gemm", "text", "vision", "unet", "vae"])
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-warmup", action="store_true")
    args = parser.parse_args()
    size = args.size or {"gemm": 4096, "unet": 768, "vae": 768, "text": 77}.get(args.component, 224)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.inference_mode():
        fn = build(args.component, size)
        load_s = time.perf_counter() - t0
        rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        times = sorted_seconds(args.repeats, fn, warmup=not args.no_warmup)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    median = times[len(times) // 2]
    print(f"torch {torch.__version__} {args.component:7} {size:5} px, {torch.get_num_threads()} threads: "
          f"{median:.3f} s (median of {len(times)}), build {load_s:.1f} s, peak RSS {peak:.0f} MiB")
    print("RESULT " + json.dumps({
        "impl": "pytorch", "component": args.component, "size": size, "threads": torch.get_num_threads(),
        "repeats": args.repeats, "warmup": not args.no_warmup, "seconds": times, "median_s": median,
        "load_s": load_s, "peak_rss_mib_after_build": rss_after_load, "peak_rss_mib": peak,
        "torch": torch.__version__}))


if __name__ == "__main__":
    main()
