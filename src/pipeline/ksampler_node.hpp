#pragma once
// generate()'s KSampler node, with SetLatentNoiseMask's held region, over latents in any
// LatentOps memory: host arrays for the CPU pipeline, device memory for the GPU one (which then
// sends nothing back to the host between steps).
#include <cstddef>
#include <vector>

#include "sampling/latent_ops.hpp"
#include "unclip/sampling/denoiser.hpp"
#include "unclip/sampling/samplers.hpp"

namespace unclip::pipeline {

// Inpainting (comfy/samplers.py KSamplerX0Inpaint): per latent value, the weight of the sample
// (1 inside the mask) and the initial noise that re-noises the original outside it.
struct LatentHold {
    const std::vector<float>& mask_weights;
    const std::vector<float>& noise;
};

// Buffers run_ksampler takes from its ops at most: the sampler's and five of its own.
inline constexpr std::size_t kKSamplerBuffers = sampling::detail::kMaxLatentBuffers + 5;

// sampling::ksample(params, schedule, Denoiser(schedule, config, network), latent) with the
// latent held by `hold` when given. The network reads model_input and writes model_output, rows
// of config.row_size in ops' memory (2B rows with guidance). report_latents: params.on_step reads
// StepInfo's x and denoised (otherwise they are null and stay where they are). The initial noise
// and an ancestral sampler's noise are drawn on the host. Returns the sampled latent.
std::vector<float> run_ksampler(sampling::detail::LatentOps& ops, const sampling::ModelFn& network, float* model_input,
                                float* model_output, const sampling::KSamplerParams& params,
                                const sampling::ModelSchedule& schedule, const sampling::DenoiserConfig& config,
                                const std::vector<float>& latent, const LatentHold* hold, bool report_latents);

}  // namespace unclip::pipeline
