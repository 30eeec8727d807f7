#pragma once
// Noise schedules in sigma space, as ComfyUI builds them (comfy/model_sampling.py
// ModelSamplingDiscrete, comfy/samplers.py schedulers, comfy/k_diffusion/sampling.py
// get_sigmas_karras/get_sigmas_exponential):
//
//   const auto model = ModelSchedule::scaled_linear();            // SD 2.x: 0.00085..0.012, 1000 steps
//   std::vector<float> sigmas = compute_sigmas(model, Scheduler::karras, 20);   // 21 values, last 0
//
// Values are float32 like ComfyUI's tensors; the arithmetic follows ComfyUI's float32/float64 split,
// so a list agrees with ComfyUI's to within a few float32 ulp (checked by the golden tests).
// Errors: Error(Status::invalid_argument) naming the argument. Thread-safety: everything here is a
// value or a pure function; a const ModelSchedule may be shared between threads.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "unclip/detail/export.hpp"

namespace unclip::sampling {

// The denoiser's discrete training schedule: sigma_t = sqrt((1 - abar_t) / abar_t), t = 0..T-1,
// computed in float64 from the betas and stored as float32 (as are the log-sigmas).
class UNCLIP_CXX_API ModelSchedule {
public:
    // LDM "linear" / diffusers "scaled_linear": beta_t = linspace(sqrt(start), sqrt(end), T)^2.
    static ModelSchedule scaled_linear(double beta_start = 0.00085, double beta_end = 0.012, int timesteps = 1000);
    // From explicit betas, each in (0, 1); at least two of them.
    explicit ModelSchedule(const std::vector<double>& betas);

    int timesteps() const noexcept { return static_cast<int>(sigmas_.size()); }
    float sigma_min() const noexcept { return sigmas_.front(); }
    float sigma_max() const noexcept { return sigmas_.back(); }
    const std::vector<float>& sigmas() const noexcept { return sigmas_; }
    const std::vector<float>& log_sigmas() const noexcept { return log_sigmas_; }

    // ModelSamplingDiscrete.sigma: t clamped to [0, T-1], log-sigma interpolated linearly between
    // the neighbouring integer timesteps (float32), then exponentiated.
    float sigma(float t) const;
    // ModelSamplingDiscrete.timestep: the integer t whose log-sigma is nearest to log(sigma) (the
    // lower one on a tie, as argmin). ComfyUI feeds the UNet only these integer timesteps.
    int timestep(float sigma) const;

private:
    std::vector<float> sigmas_, log_sigmas_;
};

// ComfyUI's scheduler names (comfy/samplers.py SCHEDULER_HANDLERS); beta, linear_quadratic and
// kl_optimal are not provided.
enum class Scheduler { normal, karras, exponential, simple, sgm_uniform, ddim_uniform };

inline constexpr int kMaxSteps = 1000;  // one per discrete timestep of the model; ComfyUI allows 10000

// "normal", "karras", ...
UNCLIP_CXX_API const char* scheduler_name(Scheduler scheduler) noexcept;
// Throws Error(Status::invalid_argument) naming the unknown name and listing the valid ones.
UNCLIP_CXX_API Scheduler scheduler_from_name(std::string_view name);
// "normal, karras, exponential, simple, sgm_uniform, ddim_uniform"
UNCLIP_CXX_API std::string scheduler_names();

// comfy/samplers.py calculate_sigmas(model_sampling, scheduler, steps): a descending list ending in
// 0, steps + 1 long except for ddim_uniform, whose uniform timestep stride can give a few more
// (30 steps -> 31) and which starts below sigma_max. steps in [1, kMaxSteps].
UNCLIP_CXX_API std::vector<float> compute_sigmas(const ModelSchedule& model, Scheduler scheduler, int steps);

}  // namespace unclip::sampling
