#pragma once
// The discrete DDPM sampler of the unCLIP prior, as diffusers' StableUnCLIPPipeline drives it.
// Two scheduler configurations occur in prior_scheduler/scheduler_config.json:
//  * "UnCLIPScheduler" (Karlo's own, scheduling_unclip.py): timesteps round(i * (N - 1) / (n - 1))
//    in descending order; StableUnCLIPPipeline calls step() without prev_timestep, so every step
//    uses the one-step coefficients of t -> t - 1 (beta_t, alpha_t) whatever the spacing.
//  * "DDPMScheduler" (the same config converted, as stabilityai/stable-diffusion-2-1-unclip-small
//    ships it; scheduling_ddpm.py): timesteps by timestep_spacing (leading, linspace, trailing) plus
//    steps_offset; each step goes to the next listed timestep.
// Both use the squaredcos_cap_v2 betas in float32 and torch.cumprod's double accumulator, clip the
// predicted x_0 to +-clip_sample_range, and add sigma_t * noise (noise ~ N(0, 1)) while t > 0.
// The loop (sample_prior) draws its noise from PyTorch's CPU generator exactly as diffusers does
// with `generator=torch.Generator().manual_seed(seed)`: the initial latents first, then one draw
// of the latents' size per step with t > 0.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "unclip/detail/export.hpp"

namespace unclip::sampling {

enum class PriorSchedulerKind : std::uint8_t { unclip, ddpm };
enum class PriorPrediction : std::uint8_t { epsilon, sample, v_prediction };
enum class PriorVariance : std::uint8_t { fixed_small, fixed_small_log, fixed_large };
enum class TimestepSpacing : std::uint8_t { leading, linspace, trailing };

struct PriorSchedulerConfig {
    PriorSchedulerKind kind = PriorSchedulerKind::unclip;
    int num_train_timesteps = 1000;
    PriorVariance variance = PriorVariance::fixed_small_log;
    PriorPrediction prediction = PriorPrediction::epsilon;  // UnCLIPScheduler: epsilon or sample
    bool clip_sample = true;
    float clip_sample_range = 1.0f;
    TimestepSpacing spacing = TimestepSpacing::leading;  // DDPMScheduler only
    int steps_offset = 0;                                // DDPMScheduler only

    // A diffusers scheduler_config.json. Missing fields take the class's defaults. Throws
    // Error(Status::bad_model) naming `label` and the field for anything else: malformed JSON, an
    // unknown "_class_name", a beta_schedule other than squaredcos_cap_v2, trained_betas,
    // thresholding, rescale_betas_zero_snr, learned variances, an unknown prediction_type or
    // timestep_spacing, or out-of-range numbers.
    UNCLIP_CXX_API static PriorSchedulerConfig from_json(const std::string& json_text, const std::string& label);
};

class UNCLIP_CXX_API PriorScheduler {
public:
    // Throws Error(Status::invalid_argument) for num_train_timesteps outside [2, 100000] or a
    // clip_sample_range that is not positive and finite.
    explicit PriorScheduler(const PriorSchedulerConfig& config);
    const PriorSchedulerConfig& config() const noexcept { return config_; }

    // The descending timesteps of an n-step run, as set_timesteps(n). Throws
    // Error(Status::invalid_argument) for n outside [1, num_train_timesteps] (UnCLIPScheduler:
    // [2, num_train_timesteps], its step ratio divides by n - 1).
    std::vector<int> timesteps(int steps) const;
    // The timestep step i of `timesteps` goes to (-1: the clean sample).
    int previous(const std::vector<int>& timesteps, std::size_t i) const;
    // One update of sample[0, n) in place from the model output; `noise` (n values) is read iff
    // t > 0 and may be null otherwise.
    void step(const float* model_output, int t, int prev, float* sample, std::size_t n, const float* noise) const;

    const std::vector<float>& alphas_cumprod() const noexcept { return alphas_cumprod_; }

private:
    PriorSchedulerConfig config_;
    std::vector<float> betas_, alphas_, alphas_cumprod_;
};

// The prior network for one step: x [rows, dim] -> out [rows, dim] at `timestep`. With guidance
// rows = 2 B: rows [0, B) are the unconditional (empty prompt) branch, [B, 2B) the prompt's,
// the order of diffusers' torch.cat([negative, positive]).
using PriorModelFn = std::function<void(const float* x, std::int64_t rows, int timestep, float* out)>;
// Called after each step with (step index from 0, steps); return false to stop (sample_prior
// then throws Error(Status::cancelled)).
using PriorStepFn = std::function<bool(int step, int steps)>;

struct PriorSampleParams {
    int steps = 25;                // prior_num_inference_steps
    float guidance_scale = 4.0f;   // prior_guidance_scale; guidance runs iff > 1, as diffusers
    std::uint64_t seed = 0;        // torch.Generator().manual_seed(seed)
    PriorStepFn on_step;           // optional
};

// The prior's denoising loop: latents ~ randn([batch, dim]) (x init_noise_sigma = 1), then for each
// timestep: model (both branches when guided), uncond + scale * (cond - uncond), step. Returns
// [batch, dim] latents before post_process_latents. Throws Error(Status::invalid_argument) for
// bad steps / guidance (not finite or outside [0, 100]), batch or dim < 1.
UNCLIP_CXX_API std::vector<float> sample_prior(const PriorScheduler& scheduler, const PriorSampleParams& params,
                                               std::int64_t batch, std::int64_t dim, const PriorModelFn& model);

}  // namespace unclip::sampling
