#pragma once
// The state one sampler run shares with the loops in samplers.cpp and uni_pc.cpp, and the entry
// point that runs a sampler on latents in any LatentOps memory.
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <vector>

#include "sampling/latent_ops.hpp"
#include "unclip/sampling/samplers.hpp"

namespace unclip::sampling::detail {

// Runs `sampler` as sample() does, with x (n floats) and every buffer in `ops`' memory; `denoise`
// reads and writes that memory too. report_latents false: the step callback gets null x and
// denoised pointers (and the values are not copied to the host for it).
void sample_with(LatentOps& ops, Sampler sampler, const DenoiseFn& denoise, float* x, std::size_t n,
                 const std::vector<float>& sigmas, const SamplerOptions& options, bool report_latents = true);

// comfy/sample.py prepare_noise and the noise scaling of KSampler.sample (see ksample()): the
// sigma list and the noised starting sample, on the host.
struct KSampleStart {
    std::vector<float> sigmas, x;
};
KSampleStart ksample_start(const KSamplerParams& params, const ModelSchedule& model, const std::vector<float>& latent);

class Run {
public:
    Run(LatentOps& ops, Sampler sampler, const DenoiseFn& denoise, float* x, std::size_t n,
        const std::vector<float>& sigmas, const SamplerOptions& options, bool report_latents);

    int steps() const noexcept { return static_cast<int>(sigmas_.size()) - 1; }
    float sigma(int i) const noexcept { return sigmas_[static_cast<std::size_t>(i)]; }
    const std::vector<float>& sigmas() const noexcept { return sigmas_; }

    void denoise(const float* input, float sigma, float* out);
    // Calls options.on_step; throws Error(Status::cancelled) when it returns false.
    void report(int step, float sigma, const float* sample, const float* prediction);
    // A buffer of n floats (unspecified until written), kept for the run.
    float* scratch(std::size_t index);
    // n values of the noise sampler (options.noise or the sampler's default) into `out`.
    void noise(float sigma, float sigma_next, float* out);

    // Queues one update over n values (LatentOps::apply); pointers in ops' memory.
    void update(backend::LatentUpdate kind, float* out, std::initializer_list<const float*> inputs,
                std::initializer_list<float> constants) {
        ops.apply(kind, out, n, inputs, constants);
    }
    void copy(float* dst, const float* src) { update(backend::LatentUpdate::copy, dst, {src}, {}); }
    // dst = c0 * a + c1 * b
    void combine(float* dst, float c0, const float* a, float c1, const float* b) {
        update(backend::LatentUpdate::combine, dst, {a, b}, {c0, c1});
    }

    LatentOps& ops;
    const Sampler sampler;
    const SamplerOptions& options;
    float* const x;        // [n], updated in place
    const std::size_t n;
    float* denoised;       // [n], the last prediction

private:
    NoiseSampler& noise_sampler();
    const DenoiseFn& denoise_fn_;
    const std::vector<float>& sigmas_;
    const bool report_latents_;
    std::vector<float*> scratch_;
    std::vector<float> host_noise_, host_x_, host_denoised_;
    std::unique_ptr<NoiseSampler> default_noise_;
};

// comfy/extra_samplers/uni_pc.py sample_unipc (variant bh1) and sample_unipc_bh2.
void uni_pc(Run& run, bool bh2);

}  // namespace unclip::sampling::detail
