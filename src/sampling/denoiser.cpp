#include "unclip/sampling/denoiser.hpp"

#include <cmath>
#include <string>

#include "sampling/denoiser_detail.hpp"
#include "sampling/validate.hpp"
#include "unclip/error.hpp"

namespace unclip::sampling {

const char* prediction_name(Prediction prediction) noexcept { return prediction == Prediction::v ? "v" : "eps"; }

Prediction prediction_from_name(std::string_view name) {
    if (name == "v") return Prediction::v;
    if (name == "eps") return Prediction::eps;
    throw Error(Status::invalid_argument, "unknown prediction type '" + std::string(name) + "' (valid: eps, v)");
}

namespace detail {

bool uses_negative(double cfg_scale) noexcept {
    return !(std::fabs(cfg_scale - 1.0) <= 1e-9 * std::fmax(std::fabs(cfg_scale), 1.0));
}

void guided_denoise(LatentOps& ops, const ModelSchedule& model, const DenoiserConfig& config, const ModelFn& network,
                    float* model_input, float* model_output, const float* x, float sigma, float* denoised) {
    if (!(sigma > 0) || !std::isfinite(sigma))
        throw Error(Status::invalid_argument,
                    "denoiser: sigma must be positive and finite (got " + format_number(sigma) + ")");
    const bool guided = uses_negative(config.cfg_scale);
    const std::int64_t n = config.batch * config.row_size, rows = guided ? 2 * config.batch : config.batch;
    // comfy/model_sampling.py EPS.calculate_input, in float32 as there; the negative rows repeat it.
    const float scale = std::sqrt(sigma * sigma + 1.0f);
    backend::LatentUpdateArgs input;
    input.kind = backend::LatentUpdate::cfg_input;
    input.out = model_input;
    input.in[0] = x;
    input.c[0] = scale;
    input.n = rows * config.row_size;
    input.period = n;
    ops.update(input);

    ModelCall call;
    call.input = model_input;
    call.output = model_output;
    call.rows = rows;
    call.positive_rows = config.batch;
    call.row_size = config.row_size;
    call.timestep = static_cast<float>(model.timestep(sigma));
    call.sigma = sigma;
    network(call);

    // calculate_denoised for each half, then cfg_function; float32 throughout.
    backend::LatentUpdateArgs combine;
    combine.kind = backend::LatentUpdate::cfg_denoised;
    combine.out = denoised;
    combine.in[0] = x;
    combine.in[1] = model_output;
    combine.c[0] = 1.0f / (sigma * sigma + 1.0f);
    combine.c[1] = sigma;
    combine.c[2] = scale;
    combine.c[3] = static_cast<float>(config.cfg_scale);
    combine.n = n;
    combine.period = n;
    combine.v_prediction = config.prediction == Prediction::v;
    combine.guided = guided;
    ops.update(combine);
}

}  // namespace detail

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
    uses_negative_ = detail::uses_negative(config.cfg_scale);
    const std::int64_t rows = uses_negative_ ? 2 * config.batch : config.batch;
    input_.resize(static_cast<std::size_t>(rows * config.row_size));
    output_.resize(input_.size());
}

void Denoiser::operator()(const float* x, float sigma, float* denoised) {
    detail::HostLatentOps ops;
    detail::guided_denoise(ops, model_, config_, network_, input_.data(), output_.data(), x, sigma, denoised);
}

}  // namespace unclip::sampling
