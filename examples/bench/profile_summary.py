#!/usr/bin/env python3
"""Sums an Nsight Compute per-kernel summary (ncu --print-summary per-kernel --csv, metric
gpu__time_duration.sum) by kernel family: cuBLAS GEMMs together, each of our kernels by name.

    python3 examples/bench/profile_summary.py profile_unet768.csv [--steps 4]

--steps divides the times by the number of module runs the profile holds."""
import argparse
import collections
import csv
import re


def family(name):
    if name.startswith(("nvjet", "sm80_xmma", "sm90_xmma", "cutlass", "gemm", "gemv")) or "gemm" in name.lower():
        return "cuBLAS GEMM"
    match = re.search(r"(\w+_kernel)\b", name)
    return match.group(1) if match else name[:60]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("--steps", type=float, default=1.0)
    args = parser.parse_args()
    times, launches = collections.Counter(), collections.Counter()
    for row in csv.reader(open(args.csv, errors="replace")):
        if len(row) < 15 or not row[0].isdigit() or row[10] != "gpu__time_duration.sum":
            continue
        invocations, average_ns = int(row[8]), float(row[14].replace(",", ""))
        times[family(row[3])] += invocations * average_ns
        launches[family(row[3])] += invocations
    total = sum(times.values())
    if not total:
        print(f"{args.csv}: no kernel times found")
        return
    print(f"{args.csv}: {total / 1e6 / args.steps:.2f} ms of kernels per run, {sum(launches.values()) / args.steps:.0f} launches")
    for name, ns in times.most_common(16):
        print(f"  {ns / 1e6 / args.steps:8.3f} ms {100 * ns / total:5.1f}%  {launches[name] / args.steps:6.0f} x  {name}")


if __name__ == "__main__":
    main()
