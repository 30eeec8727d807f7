#pragma once
// Timing shared by the benchmark programs: the median of `repeats` runs after one warm-up run.
#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace unclip::bench {

inline double median_seconds(int repeats, const std::function<void()>& fn) {
    fn();  // warm-up: first-touch page faults, caches, lazy initialisation
    std::vector<double> times;
    for (int i = 0; i < std::max(1, repeats); ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        fn();
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

}  // namespace unclip::bench
