#pragma once
// Timing shared by the benchmark programs: `repeats` timed runs after one untimed warm-up run.
#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace unclip::bench {

// The wall times of `repeats` runs (at least one), sorted; with `warmup`, after one untimed run
// (first-touch page faults, caches, lazy initialisation).
inline std::vector<double> sorted_seconds(int repeats, const std::function<void()>& fn, bool warmup = true) {
    if (warmup) fn();
    std::vector<double> times;
    for (int i = 0; i < std::max(1, repeats); ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        fn();
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    return times;
}

inline double median_seconds(int repeats, const std::function<void()>& fn) {
    const std::vector<double> times = sorted_seconds(repeats, fn);
    return times[times.size() / 2];
}

}  // namespace unclip::bench
