#pragma once
// The state one sampler run shares with the loops in samplers.cpp and uni_pc.cpp.
#include <cstddef>
#include <deque>
#include <memory>
#include <vector>

#include "unclip/sampling/samplers.hpp"

namespace unclip::sampling::detail {

class Run {
public:
    Run(Sampler sampler, const DenoiseFn& denoise, float* x, std::size_t n, const std::vector<float>& sigmas,
        const SamplerOptions& options);

    int steps() const noexcept { return static_cast<int>(sigmas_.size()) - 1; }
    float sigma(int i) const noexcept { return sigmas_[static_cast<std::size_t>(i)]; }
    const std::vector<float>& sigmas() const noexcept { return sigmas_; }

    void denoise(const float* input, float sigma, float* out);
    // Calls options.on_step; throws Error(Status::cancelled) when it returns false.
    void report(int step, float sigma, const float* sample, const float* prediction);
    // A zero-initialised buffer of n floats, kept for the run.
    std::vector<float>& scratch(std::size_t index);
    // options.noise, or the sampler's default built from options.seed.
    NoiseSampler& noise_sampler();

    const Sampler sampler;
    const SamplerOptions& options;
    float* const x;        // [n], updated in place
    const std::size_t n;
    float* denoised;       // [n], the last prediction

private:
    const DenoiseFn& denoise_fn_;
    const std::vector<float>& sigmas_;
    std::vector<float> denoised_buffer_;
    std::deque<std::vector<float>> scratch_;  // a deque: references stay valid as it grows
    std::unique_ptr<NoiseSampler> default_noise_;
};

// comfy/extra_samplers/uni_pc.py sample_unipc (variant bh1) and sample_unipc_bh2.
void uni_pc(Run& run, bool bh2);

}  // namespace unclip::sampling::detail
