#include "unclip/sampling/denoiser.hpp"

#include <cmath>
#include <string>

#include "sampling/validate.hpp"
#include "unclip/error.hpp"

namespace unclip::sampling {

const char* prediction_name(Prediction prediction) noexcept { return prediction == Prediction::v ? "v" : "eps"; }

Prediction prediction_from_name(std::string_view name) {
    if (name == "v") return Prediction::v;
    if (name == "eps") return Prediction::eps;
    throw Error(Status::invalid_argument, "unknown prediction type '" + std::string(name) + "' (valid: eps, v)");
}

Denoiser::Denoiser(const ModelSchedule& model, const DenoiserConfig& config, ModelFn network)
    : model_(model), config_(config), network_(std::move(network)) {
    if (config.prediction != Prediction::v && config.prediction != Prediction::eps)
        throw Error(Status::invalid_argument, "denoiser: unknown prediction value");
    if (config.batch < 1)
        throw Error(Status::invalid_argument, "denoiser: batch must be >= 1 (got " + std::to_string(config.batch) + ")");
    if (config.row_size < 1)
        throw Error(Status::invalid_argument,
                    "denoiser: row_size must be >= 1 (got " + std::to_string(config.row_size) + ")");
    detail::require_range("cfg_scale", config.cfg_scale, 0.0, 100.0);
    if (!network_) throw Error(Status::invalid_argument, "denoiser: the network callback is empty");
    // comfy/samplers.py sampling_function: math.isclose(cond_scale, 1.0), rel_tol 1e-9.
    uses_negative_ = !(std::fabs(config.cfg_scale - 1.0) <= 1e-9 * std::fmax(std::fabs(config.cfg_scale), 1.0));
    const std::int64_t rows = uses_negative_ ? 2 * config.batch : config.batch;
    input_.resize(static_cast<std::size_t>(rows * config.row_size));
    output_.resize(input_.size());
}

void Denoiser::operator()(const float* x, float sigma, float* denoised) {
    if (!(sigma > 0) || !std::isfinite(sigma))
        throw Error(Status::invalid_argument,
                    "denoiser: sigma must be positive and finite (got " + detail::format_number(sigma) + ")");
    const std::size_t n = static_cast<std::size_t>(numel());
    // comfy/model_sampling.py EPS.calculate_input, in float32 as there.
    const float scale = std::sqrt(sigma * sigma + 1.0f);
    for (std::size_t i = 0; i < n; ++i) input_[i] = x[i] / scale;
    if (uses_negative_)
        for (std::size_t i = 0; i < n; ++i) input_[n + i] = input_[i];

    ModelCall call;
    call.input = input_.data();
    call.output = output_.data();
    call.rows = uses_negative_ ? 2 * config_.batch : config_.batch;
    call.positive_rows = config_.batch;
    call.row_size = config_.row_size;
    call.timestep = static_cast<float>(model_.timestep(sigma));
    call.sigma = sigma;
    network_(call);

    // calculate_denoised for each half, then cfg_function; float32 throughout.
    const float c_skip = 1.0f / (sigma * sigma + 1.0f);
    const bool v = config_.prediction == Prediction::v;
    const auto to_denoised = [&](float xi, float out) {
        return v ? xi * c_skip - out * sigma / scale : xi - out * sigma;
    };
    const auto cfg = static_cast<float>(config_.cfg_scale);
    for (std::size_t i = 0; i < n; ++i) {
        const float positive = to_denoised(x[i], output_[i]);
        if (!uses_negative_) {
            denoised[i] = positive;
            continue;
        }
        const float negative = to_denoised(x[i], output_[n + i]);
        denoised[i] = negative + (positive - negative) * cfg;
    }
}

}  // namespace unclip::sampling
