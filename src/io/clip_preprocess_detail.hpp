#pragma once
// clip_preprocess split into its plan (the resampling's geometry and weights, computed on the
// host) and its two passes, so that the pipeline can run the passes on its CPU threads or on the
// GPU (CudaBackend::clip_resample). Every output value is computed as in the serial version.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "unclip/backend/image_prep.hpp"
#include "unclip/clip_preprocess.hpp"

namespace unclip::detail {

// The weights of one resized axis (see backend::ResizeAxis).
template <class W>
struct AxisWeights {
    std::vector<std::int64_t> first, count;
    std::vector<W> w;
    std::int64_t taps = 0;
    bool empty() const noexcept { return first.empty(); }
    backend::ResizeAxis<W> view() const noexcept {
        if (empty()) return {};
        return {first.data(), count.data(), w.data(), taps};
    }
};

// Everything the passes need. `resample` points into this object (and into the image it was made
// from, unless the image was composited over white), so it is neither copied nor moved.
struct ClipResamplePlan {
    backend::ClipResample resample;
    Image composited;  // diffusers, an image with alpha: composited over white (resample reads it)
    AxisWeights<float> torch_width, torch_height;
    AxisWeights<std::int32_t> pil_width, pil_height;
    ClipResamplePlan() = default;
    ClipResamplePlan(const ClipResamplePlan&) = delete;
    ClipResamplePlan& operator=(const ClipResamplePlan&) = delete;
};

// Throws Error(Status::invalid_argument) for an empty image or bad options. `image` must outlive
// the plan.
std::unique_ptr<ClipResamplePlan> plan_clip_preprocess(const Image& image, const ClipPreprocessOptions& options);

// Runs rows(begin, end) over ranges covering [0, n), possibly concurrently.
using ParallelRows = std::function<void(std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& rows)>;

// The plan's two passes on the host into out [3, size, size].
void run_clip_preprocess(const ClipResamplePlan& plan, float* out, const ParallelRows& parallel);

void clip_preprocess(const Image& image, const ClipPreprocessOptions& options, float* out, const ParallelRows& parallel);

}  // namespace unclip::detail
