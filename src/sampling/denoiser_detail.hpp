#pragma once
// The CFG denoiser's evaluation on latents in any LatentOps memory (Denoiser runs it on the host;
// the pipeline's GPU loop on device memory).
#include <cstdint>

#include "sampling/latent_ops.hpp"
#include "unclip/sampling/denoiser.hpp"

namespace unclip::sampling::detail {

// comfy/samplers.py sampling_function: math.isclose(cfg_scale, 1.0) skips the negative rows.
bool uses_negative(double cfg_scale) noexcept;

// D(x, sigma) into `denoised` (x and denoised: config.batch * config.row_size floats, may alias).
// model_input and model_output hold the network's rows (2B with guidance, else B) in ops' memory;
// the ModelCall passes them on. Throws Error(Status::invalid_argument) for a non-positive or
// non-finite sigma.
void guided_denoise(LatentOps& ops, const ModelSchedule& model, const DenoiserConfig& config, const ModelFn& network,
                    float* model_input, float* model_output, const float* x, float sigma, float* denoised);

}  // namespace unclip::sampling::detail
