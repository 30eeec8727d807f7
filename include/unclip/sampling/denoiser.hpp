#pragma once
// The model wrapper: turns a network that predicts v or epsilon at a discrete timestep into the
// k-diffusion denoiser D(x, sigma) the samplers call, with classifier-free guidance. It follows
// ComfyUI (comfy/model_base.py BaseModel._apply_model, comfy/model_sampling.py EPS / V_PREDICTION,
// comfy/samplers.py sampling_function / cfg_function), with sigma_data = 1:
//
//   c_in = 1 / sqrt(sigma^2 + 1)           network input = c_in * x
//   t    = ModelSchedule::timestep(sigma)  nearest integer timestep, never fractional
//   v:   D = x / (sigma^2 + 1) - out * sigma / sqrt(sigma^2 + 1)
//   eps: D = x - out * sigma
//   CFG: D = D_negative + cfg_scale * (D_positive - D_negative); cfg_scale == 1 (isclose) skips
//        the negative branch, as ComfyUI does.
//
// The network is a callback over host float arrays, so any backend (CPU now, CUDA later) can sit
// behind it; positive and negative rows go to it together in one batch of 2B rows.
//
//   Denoiser denoiser(schedule, {Prediction::v, 1, 4 * 96 * 96, 7.0}, [&](const ModelCall& call) {
//       unet(call.input, call.rows, call.timestep, /*rows < positive_rows: positive cond*/ call.output);
//   });
//   sample(Sampler::uni_pc_bh2, std::ref(denoiser), x, sigmas, options);
//
// Errors: Error(Status::invalid_argument) for a bad config or a non-finite/non-positive sigma;
// whatever the network callback throws propagates unchanged.
// Thread-safety: a Denoiser owns scratch buffers, so one thread at a time calls it.
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "unclip/detail/export.hpp"
#include "unclip/sampling/schedules.hpp"

namespace unclip::sampling {

// What the network outputs.
enum class Prediction {
    eps,  // the added noise (SD 1.x, SD 2.x base 512)
    v,    // v = alpha * eps - sigma_vp * x0 (SD 2.x 768 and both unCLIP models)
};
UNCLIP_CXX_API const char* prediction_name(Prediction prediction) noexcept;        // "eps", "v"
UNCLIP_CXX_API Prediction prediction_from_name(std::string_view name);             // lists valid names

// One network evaluation as the wrapper requests it. All pointers are host memory owned by the
// wrapper and valid for the duration of the call only.
struct ModelCall {
    const float* input = nullptr;   // [rows, C, h, w]: c_in * x, positive rows first
    float* output = nullptr;        // [rows, C, h, w]: the raw network output (v or eps), to write
    std::int64_t rows = 0;          // B without guidance, 2B with it
    std::int64_t positive_rows = 0; // B: rows [0, B) take the positive conditioning, [B, 2B) the negative
    std::int64_t row_size = 0;      // C * h * w
    float timestep = 0;             // the discrete timestep (an integer value) for every row
    float sigma = 0;                // the k-diffusion sigma it came from
};
using ModelFn = std::function<void(const ModelCall& call)>;

// A k-diffusion denoiser: writes D(x, sigma) for the whole latent batch (n floats, n fixed per run).
using DenoiseFn = std::function<void(const float* x, float sigma, float* denoised)>;

struct DenoiserConfig {
    Prediction prediction = Prediction::v;
    std::int64_t batch = 1;     // B latents, >= 1
    std::int64_t row_size = 0;  // C * h * w of one latent, >= 1
    double cfg_scale = 8.0;     // [0, 100] as ComfyUI's KSampler; default 8.0 as ComfyUI's
};

class UNCLIP_CXX_API Denoiser {
public:
    // Copies the schedule (for the sigma -> timestep map). Throws Error(Status::invalid_argument)
    // naming the bad field, or for an empty network callback.
    Denoiser(const ModelSchedule& model, const DenoiserConfig& config, ModelFn network);

    // x and denoised: [B, C, h, w] (numel() floats); they may alias.
    void operator()(const float* x, float sigma, float* denoised);

    std::int64_t numel() const noexcept { return config_.batch * config_.row_size; }
    // False when cfg_scale is 1 (math.isclose): the network then sees B rows, all positive.
    bool uses_negative() const noexcept { return uses_negative_; }
    const DenoiserConfig& config() const noexcept { return config_; }

private:
    ModelSchedule model_;
    DenoiserConfig config_;
    ModelFn network_;
    bool uses_negative_ = true;
    std::vector<float> input_, output_;  // [rows, row_size]
};

}  // namespace unclip::sampling
