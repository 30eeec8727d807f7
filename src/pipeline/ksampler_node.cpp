#include "pipeline/ksampler_node.hpp"

#include <algorithm>

#include "sampling/denoiser_detail.hpp"
#include "sampling/samplers_detail.hpp"
#include "unclip/error.hpp"

namespace unclip::pipeline {

std::vector<float> run_ksampler(sampling::detail::LatentOps& ops, const sampling::ModelFn& network, float* model_input,
                                float* model_output, const sampling::KSamplerParams& params,
                                const sampling::ModelSchedule& schedule, const sampling::DenoiserConfig& config,
                                const std::vector<float>& latent, const LatentHold* hold, bool report_latents) {
    namespace sd = sampling::detail;
    sd::KSampleStart start = sd::ksample_start(params, schedule, latent);
    const std::size_t n = start.x.size();
    if (n != static_cast<std::size_t>(config.batch * config.row_size))
        throw Error(Status::internal, "run_ksampler: the latent and the denoiser disagree on its size");
    if (hold && (hold->mask_weights.size() != n || hold->noise.size() != n))
        throw Error(Status::internal, "run_ksampler: the mask or its noise does not match the latent");
    float* x = ops.buffer(n);
    ops.upload(start.x.data(), x, n);

    sampling::DenoiseFn denoise = [&](const float* input, float sigma, float* denoised) {
        sd::guided_denoise(ops, schedule, config, network, model_input, model_output, input, sigma, denoised);
    };
    if (hold) {
        // Outside the mask the sample is held at the noised original, the prediction at the original.
        float* held = ops.buffer(n);
        float* weights = ops.buffer(n);
        float* original = ops.buffer(n);
        float* noise = ops.buffer(n);
        ops.upload(hold->mask_weights.data(), weights, n);
        ops.upload(latent.data(), original, n);
        ops.upload(hold->noise.data(), noise, n);
        // The buffers' pointers by value: they are locals of this block, the lambda outlives it.
        denoise = [&, held, weights, original, noise, inner = denoise](const float* input, float sigma,
                                                                       float* denoised) {
            ops.apply(backend::LatentUpdate::hold_sample, held, n, {input, weights, original, noise}, {sigma});
            inner(held, sigma, denoised);
            ops.apply(backend::LatentUpdate::hold_prediction, denoised, n, {denoised, weights, original});
        };
    }

    sampling::SamplerOptions options;
    options.seed = params.seed;
    options.kernel = params.kernel;
    options.on_step = params.on_step;
    sd::sample_with(ops, params.sampler, denoise, x, n, start.sigmas, options, report_latents);
    std::vector<float> staging;
    const float* result = ops.host_view(x, n, staging);
    std::copy(result, result + n, start.x.begin());
    return std::move(start.x);
}

}  // namespace unclip::pipeline
