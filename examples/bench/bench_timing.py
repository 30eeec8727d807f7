"""Timing shared by the PyTorch benchmark scripts: the median of `repeats` runs after a warm-up."""
import statistics
import time


def median_seconds(repeats, fn):
    fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
