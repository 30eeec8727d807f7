"""Timing shared by the PyTorch benchmark scripts: `repeats` timed runs after an untimed warm-up."""
import statistics
import time


def sorted_seconds(repeats, fn, warmup=True):
    """The wall times of `repeats` runs (at least one), sorted; with `warmup`, after one untimed run."""
    if warmup:
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)


def median_seconds(repeats, fn):
    return statistics.median(sorted_seconds(repeats, fn))
