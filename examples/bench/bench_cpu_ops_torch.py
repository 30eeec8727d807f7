"""The PyTorch side of bench_cpu_ops: same shapes, same thread count, median of N after a warm-up.
    python bench_cpu_ops_torch.py [--threads 2] [--repeats 5]"""
import argparse

import torch

from bench_timing import median_seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, median of {args.repeats}")
    with torch.no_grad():
        n = 2048
        a, b = torch.randn(n, n), torch.randn(n, n)
        s = median_seconds(args.repeats, lambda: a @ b)
        print(f"{'gemm 2048x2048x2048':34s} {s * 1e3:10.2f} {2 * n**3 / s / 1e9:10.1f}")
        for channels, size in ((320, 96), (640, 48), (1280, 24)):
            conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
            x = torch.randn(2, channels, size, size)
            s = median_seconds(args.repeats, lambda: conv(x))
            flops = 2.0 * 2 * channels * channels * 9 * size * size
            print(f"{f'conv3x3 {channels}ch {size}x{size} B2':34s} {s * 1e3:10.2f} {flops / s / 1e9:10.1f}")


if __name__ == "__main__":
    main()
