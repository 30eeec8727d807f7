#pragma once
#include <vector>

#include "unclip/sampling/schedules.hpp"

namespace unclip::sampling::detail {

// compute_sigmas without the kMaxSteps bound: KSampler's denoise < 1 asks for int(steps / denoise).
std::vector<float> compute_sigmas_unchecked(const ModelSchedule& model, Scheduler scheduler, int steps);

}  // namespace unclip::sampling::detail
