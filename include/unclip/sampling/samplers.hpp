#pragma once
// The samplers of ComfyUI's KSampler, each as ComfyUI defines it (comfy/k_diffusion/sampling.py,
// comfy/extra_samplers/uni_pc.py, comfy/samplers.py KSampler), over host float arrays and a
// denoiser callback D(x, sigma) (see denoiser.hpp):
//
//   const auto model = ModelSchedule::scaled_linear();
//   Denoiser denoiser(model, {Prediction::v, 1, 4 * 96 * 96, 7.0}, unet_callback);
//   KSamplerParams params;                       // ComfyUI's KSampler node
//   params.sampler = Sampler::uni_pc_bh2;
//   params.scheduler = Scheduler::normal;
//   params.steps = 20;
//   params.seed = 42;
//   std::vector<float> latent = ksample(params, model, std::ref(denoiser), std::vector<float>(n, 0.0f));
//
// Seeds: the initial noise is torch.manual_seed(seed) + torch.randn(latent) on the CPU, bit-exact
// (rng.hpp). Ancestral noise (euler_ancestral) is what ComfyUI draws on a CPU device: a fresh
// torch CPU generator seeded with the same seed, one torch.randn(latent) per step, so the run
// reproduces ComfyUI's latent to float32 rounding when ComfyUI samples on the CPU (on a GPU it
// draws that noise from the CUDA Philox generator instead; the initial noise is the same there). The SDE samplers (dpmpp_sde, dpmpp_2m_sde) use ComfyUI's
// update rules, but their Brownian noise comes from BrownianNoiseSampler below, not from torchsde.
//
// Errors: Error(Status::invalid_argument) naming the bad argument; Error(Status::cancelled) when
// the step callback returns false; whatever the denoiser throws propagates unchanged.
// Determinism: single-threaded arithmetic; results never depend on the thread count.
// Thread-safety: the functions are reentrant; a NoiseSampler is used by one run at a time.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "unclip/detail/export.hpp"
#include "unclip/sampling/denoiser.hpp"
#include "unclip/sampling/rng.hpp"
#include "unclip/sampling/schedules.hpp"

namespace unclip::sampling {

// ComfyUI's sampler names. ddim is ComfyUI's: Euler (it differs only in how masked inpainting
// re-noises, which this library does not do). uni_pc is the B(h) = h variant (bh1), uni_pc_bh2
// B(h) = expm1(h); both are ComfyUI's order-3 multistep UniPC with the corrector off on the last
// step, run on the sigma list with a final 0 replaced by 0.001.
enum class Sampler {
    euler, euler_ancestral, heun, dpm_2, dpmpp_2m, dpmpp_2m_sde, dpmpp_sde, ddim, uni_pc, uni_pc_bh2
};
UNCLIP_CXX_API const char* sampler_name(Sampler sampler) noexcept;  // "euler", "uni_pc_bh2", ...
// Throws Error(Status::invalid_argument) naming the unknown name and listing the valid ones.
UNCLIP_CXX_API Sampler sampler_from_name(std::string_view name);
UNCLIP_CXX_API std::string sampler_names();  // "euler, euler_ancestral, ..."
// KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS: dpm_2, uni_pc, uni_pc_bh2.
UNCLIP_CXX_API bool discards_penultimate_sigma(Sampler sampler) noexcept;

// Standard-normal noise for one stochastic step from sigma to sigma_next, n values per call.
class UNCLIP_CXX_API NoiseSampler {
public:
    virtual ~NoiseSampler() = default;
    virtual void sample(float sigma, float sigma_next, float* out, std::size_t n) = 0;
};

// ComfyUI's default_noise_sampler on a CPU device: a torch CPU generator seeded with `seed`,
// torch.randn(n) per call (so its first draw repeats the initial noise, as in ComfyUI on the CPU).
class UNCLIP_CXX_API TorchNoiseSampler final : public NoiseSampler {
public:
    explicit TorchNoiseSampler(std::uint64_t seed, RandnKernel kernel = RandnKernel::avx2) : generator_(seed, kernel) {}
    void sample(float sigma, float sigma_next, float* out, std::size_t n) override;

private:
    TorchGenerator generator_;
};

// A Brownian motion W(s) on s in [sigma_min, sigma_max] with W(sigma_min) = 0, sampled lazily:
// a query between known points draws from the Brownian bridge between its neighbours, so the
// increments of overlapping steps are correlated exactly as k-diffusion's BrownianTreeNoiseSampler
// makes them (DPM++ SDE asks for sigma -> midpoint and sigma -> sigma_next). Returns
// (W(sigma_next) - W(sigma)) / sqrt|sigma - sigma_next|. The draws come from a torch CPU generator
// seeded from `seed` through SplitMix64, so they are independent of the initial noise; they are not
// torchsde's numbers. Queries are expected to move down in sigma (every sampler's do): points
// above the current step are forgotten, which keeps memory at a few latents.
class UNCLIP_CXX_API BrownianNoiseSampler final : public NoiseSampler {
public:
    BrownianNoiseSampler(std::uint64_t seed, float sigma_min, float sigma_max,
                         RandnKernel kernel = RandnKernel::avx2);
    void sample(float sigma, float sigma_next, float* out, std::size_t n) override;

private:
    const std::vector<float>& at(double s, std::size_t n);
    TorchGenerator generator_;
    double sigma_min_, sigma_max_;
    std::map<double, std::vector<float>> known_;  // s -> W(s)
};

// One step's progress, reported once per step before the move to the next sigma: the sample at
// `sigma` and the model's prediction of the clean latent there (UniPC: its data prediction).
struct StepInfo {
    int step = 0;                   // 0-based
    int steps = 0;                  // total
    float sigma = 0;                // the sigma this step starts from
    const float* x = nullptr;       // the sample at sigma (k-diffusion scale), numel values
    const float* denoised = nullptr;  // the prediction at sigma
    std::size_t numel = 0;
};
// Return false to stop: the run then throws Error(Status::cancelled).
using StepCallback = std::function<bool(const StepInfo& info)>;

struct SamplerOptions {
    double eta = 1.0;           // euler_ancestral, dpmpp_sde, dpmpp_2m_sde: >= 0; 0 = no noise
    double s_noise = 1.0;       // the same samplers: noise scale, >= 0
    std::uint64_t seed = 0;     // seeds the default noise samplers (the KSampler seed)
    RandnKernel kernel = RandnKernel::avx2;
    NoiseSampler* noise = nullptr;  // borrowed; nullptr = the sampler's default (see above)
    StepCallback on_step;       // optional
};

// Runs `sampler` on x (n floats, updated in place) along `sigmas`: at least 2 values, all finite,
// every one but the last > 0, the last >= 0 (a final 0 means "denoise fully"). x must be finite.
UNCLIP_CXX_API void sample(Sampler sampler, const DenoiseFn& denoise, float* x, std::size_t n,
                           const std::vector<float>& sigmas, const SamplerOptions& options = {});
inline void sample(Sampler sampler, const DenoiseFn& denoise, std::vector<float>& x, const std::vector<float>& sigmas,
                   const SamplerOptions& options = {}) {
    sample(sampler, denoise, x.data(), x.size(), sigmas, options);
}

// KSampler's sigma list (comfy/samplers.py KSampler.calculate_sigmas / set_steps): the schedule
// for `steps` (steps + 1 for the samplers that drop the penultimate sigma, which is then dropped);
// with denoise < 1 (img2img) the schedule for int(steps / denoise) steps, of which the last
// steps + 1 sigmas are kept. denoise > 0.9999 counts as 1, as in ComfyUI.
// steps in [1, kMaxSteps]; denoise in (0, 1].
UNCLIP_CXX_API std::vector<float> ksampler_sigmas(const ModelSchedule& model, Scheduler scheduler, Sampler sampler,
                                                  int steps, double denoise = 1.0);

// The KSampler node's settings (nodes.py KSampler; cfg lives in the Denoiser).
struct KSamplerParams {
    Sampler sampler = Sampler::euler;
    Scheduler scheduler = Scheduler::normal;
    int steps = 20;             // [1, kMaxSteps]
    double denoise = 1.0;       // (0, 1]
    std::uint64_t seed = 0;     // any; ComfyUI's range is 0..2^64-1
    RandnKernel kernel = RandnKernel::avx2;
    StepCallback on_step;       // optional
};

// comfy/sample.py prepare_noise + KSampler.sample: draws the initial noise for the latent's n
// values, noises the latent (latent + noise * sqrt(1 + sigma_0^2) when sigma_0 is sigma_max,
// latent + noise * sigma_0 otherwise) and samples. `latent` is in model space: zeros for text or
// image-variation generation, the VAE latent times 0.18215 for img2img; it must be finite.
// Returns the sampled latent (model space, not yet divided by 0.18215).
UNCLIP_CXX_API std::vector<float> ksample(const KSamplerParams& params, const ModelSchedule& model,
                                          const DenoiseFn& denoise, const std::vector<float>& latent);

}  // namespace unclip::sampling
