// generate()'s sampling loop with its latents on the GPU: the samplers and the CFG denoiser queue
// their updates as kernels (CudaLatentOps), so the only host-device traffic per step is the
// timestep's embedding input and, for the ancestral samplers, their noise going up.
#include <algorithm>

#include "pipeline/gpu_latent_ops.hpp"
#include "pipeline/pipeline_gpu.hpp"
#include "sampling/denoiser_detail.hpp"
#include "sampling/samplers_detail.hpp"
#include "unclip/error.hpp"

namespace unclip::pipeline {

std::vector<float> ksample_on_gpu(GpuUNetSteps& steps, const CudaBackend::Context& ctx,
                                  const sampling::KSamplerParams& params, const sampling::ModelSchedule& schedule,
                                  const sampling::DenoiserConfig& config, const std::vector<float>& latent,
                                  const LatentHold* hold, bool report_latents) {
    namespace sd = sampling::detail;
    sd::KSampleStart start = sd::ksample_start(params, schedule, latent);
    const std::size_t n = start.x.size();
    if (n != static_cast<std::size_t>(config.batch * config.row_size))
        throw Error(Status::internal, "ksample_on_gpu: the latent and the denoiser disagree on its size");
    ctx.activate();
    // The loop's own buffers sit at the end of the reserved block; the sampler takes the rest.
    const std::size_t own = hold ? 5 : 1;
    if (steps.latents_floats() < (sd::kMaxLatentBuffers + own) * n)
        throw Error(Status::internal, "ksample_on_gpu: the UNet steps reserved too few latents for the sampler");
    float* const own_buffers = steps.latents() + steps.latents_floats() - own * n;
    CudaLatentOps ops(ctx, steps.latents(), steps.latents_floats() - own * n);
    float* x = own_buffers;
    ops.upload(start.x.data(), x, n);

    const sampling::ModelFn network = [&](const sampling::ModelCall& call) {
        steps.forward(call.rows, call.timestep);
    };
    sampling::DenoiseFn denoise = [&](const float* input, float sigma, float* denoised) {
        sd::guided_denoise(ops, schedule, config, network, steps.input(), steps.output(), input, sigma, denoised);
    };
    if (hold) {
        // KSamplerX0Inpaint: outside the mask the sample is held at the noised original and the
        // prediction at the original.
        float* held = own_buffers + n;
        float* weights = own_buffers + 2 * n;
        float* original = own_buffers + 3 * n;
        float* noise = own_buffers + 4 * n;
        ops.upload(hold->mask_weights.data(), weights, n);
        ops.upload(latent.data(), original, n);
        ops.upload(hold->noise.data(), noise, n);
        denoise = [&, inner = denoise](const float* input, float sigma, float* denoised) {
            backend::LatentUpdateArgs args;
            args.kind = backend::LatentUpdate::hold_sample;
            args.out = held;
            args.in[0] = input;
            args.in[1] = weights;
            args.in[2] = original;
            args.in[3] = noise;
            args.c[0] = sigma;
            args.n = static_cast<std::int64_t>(n);
            ops.update(args);
            inner(held, sigma, denoised);
            args = {};
            args.kind = backend::LatentUpdate::hold_prediction;
            args.out = denoised;
            args.in[0] = denoised;
            args.in[1] = weights;
            args.in[2] = original;
            args.n = static_cast<std::int64_t>(n);
            ops.update(args);
        };
    }

    sampling::SamplerOptions options;
    options.seed = params.seed;
    options.kernel = params.kernel;
    options.on_step = params.on_step;
    sd::sample_with(ops, params.sampler, denoise, x, n, start.sigmas, options, report_latents);
    CudaBackend::download(ctx, x, start.x.data(), static_cast<std::int64_t>(n));
    return std::move(start.x);
}

}  // namespace unclip::pipeline
