"""The PyTorch side of bench_unet: diffusers' UNet2DConditionModel in the sd21-unclip-h configuration
and AutoencoderKL's decoder with random weights, same shapes and threads, median of N after a warm-up.
    python bench_unet_torch.py [--size 768] [--threads 2] [--repeats 3] [--skip-vae]"""
import argparse

import torch

from bench_timing import median_seconds
from diffusers import AutoencoderKL, UNet2DConditionModel


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-vae", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=args.size // 8, in_channels=4, out_channels=4, layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True, class_embed_type="projection", projection_class_embeddings_input_dim=2048,
        flip_sin_to_cos=True, freq_shift=0).eval()
    h = args.size // 8
    x = torch.randn(2, 4, h, h)
    t = torch.tensor([999.0, 999.0])
    context = torch.randn(2, 77, 1024)
    y = torch.randn(2, 2048)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, median of {args.repeats}")
    with torch.no_grad():
        s = median_seconds(args.repeats, lambda: unet(x, t, encoder_hidden_states=context, class_labels=y))
        tflop = {768: 4.30, 512: 1.61}.get(args.size, 4.30 * args.size**2 / 768**2)
        print(f"UNet CFG step {args.size}x{args.size} batch 2: {s:.2f} s, {tflop * 1e3 / s:.1f} GFLOP/s")
        if not args.skip_vae:
            vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4).eval()
            z = torch.randn(1, 4, h, h)
            s = median_seconds(args.repeats, lambda: vae.decode(z))
            print(f"VAE decode {args.size}x{args.size} batch 1: {s:.2f} s")


if __name__ == "__main__":
    main()
