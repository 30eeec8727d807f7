// The prior's DDPM sampler (diffusers scheduling_unclip.py / scheduling_ddpm.py as
// pipeline_stable_unclip.py drives them). Arithmetic follows PyTorch's float32 order: the
// coefficients are 0-dim float32 tensors, products and sums round to float at each operation.
#include "unclip/sampling/prior_scheduler.hpp"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "sampling/validate.hpp"
#include "unclip/error.hpp"
#include "unclip/sampling/rng.hpp"

namespace unclip::sampling {
namespace {

using Json = nlohmann::json;

[[noreturn]] void bad_config(const std::string& label, const std::string& what) {
    throw Error(Status::bad_model, label + ": " + what);
}

std::string string_field(const Json& j, const char* key, const std::string& fallback, const std::string& label) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_string()) bad_config(label, std::string("\"") + key + "\" is not a string");
    return j[key].get<std::string>();
}

template <class Number>
Number number_field(const Json& j, const char* key, Number fallback, const std::string& label) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_number()) bad_config(label, std::string("\"") + key + "\" is not a number");
    return j[key].get<Number>();
}

bool bool_field(const Json& j, const char* key, bool fallback, const std::string& label) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_boolean()) bad_config(label, std::string("\"") + key + "\" is not true or false");
    return j[key].get<bool>();
}

// betas_for_alpha_bar (cosine): float64, capped at 0.999, then torch.tensor(float32).
std::vector<float> squaredcos_cap_v2_betas(int n) {
    const double pi = 3.14159265358979323846;
    const auto alpha_bar = [pi](double t) {
        const double c = std::cos((t + 0.008) / 1.008 * pi / 2);
        return c * c;
    };
    std::vector<float> betas;
    for (int i = 0; i < n; ++i) {
        const double t1 = static_cast<double>(i) / n, t2 = static_cast<double>(i + 1) / n;
        betas.push_back(static_cast<float>(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999)));
    }
    return betas;
}

}  // namespace

PriorSchedulerConfig PriorSchedulerConfig::from_json(const std::string& json_text, const std::string& label) {
    const Json j = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) bad_config(label, "not a JSON object");
    PriorSchedulerConfig c;
    const std::string cls = string_field(j, "_class_name", "", label);
    if (cls == "UnCLIPScheduler") {
        c.kind = PriorSchedulerKind::unclip;
        c.variance = PriorVariance::fixed_small_log;
    } else if (cls == "DDPMScheduler") {
        c.kind = PriorSchedulerKind::ddpm;
        c.variance = PriorVariance::fixed_small;
    } else {
        bad_config(label, "unknown scheduler \"_class_name\" '" + cls + "' (the prior takes UnCLIPScheduler or DDPMScheduler)");
    }
    const bool ddpm = c.kind == PriorSchedulerKind::ddpm;
    const std::string schedule = string_field(j, "beta_schedule", ddpm ? "linear" : "squaredcos_cap_v2", label);
    if (schedule != "squaredcos_cap_v2")
        bad_config(label, "beta_schedule '" + schedule + "' is not supported (the unCLIP prior uses squaredcos_cap_v2)");
    if (j.contains("trained_betas") && !j["trained_betas"].is_null()) bad_config(label, "trained_betas are not supported");
    if (bool_field(j, "thresholding", false, label)) bad_config(label, "thresholding is not supported");
    if (bool_field(j, "rescale_betas_zero_snr", false, label)) bad_config(label, "rescale_betas_zero_snr is not supported");

    const double train = number_field<double>(j, "num_train_timesteps", 1000.0, label);
    if (!(train >= 2 && train <= 100000) || train != std::floor(train))
        bad_config(label, "num_train_timesteps " + detail::format_number(train) + " is not an integer in [2, 100000]");
    c.num_train_timesteps = static_cast<int>(train);

    const std::string variance = string_field(j, "variance_type", ddpm ? "fixed_small" : "fixed_small_log", label);
    if (variance == "fixed_small_log") c.variance = PriorVariance::fixed_small_log;
    else if (ddpm && variance == "fixed_small") c.variance = PriorVariance::fixed_small;
    else if (ddpm && variance == "fixed_large") c.variance = PriorVariance::fixed_large;
    else bad_config(label, "variance_type '" + variance + "' is not supported by " + cls + " for the prior");

    const std::string prediction = string_field(j, "prediction_type", "epsilon", label);
    if (prediction == "epsilon") c.prediction = PriorPrediction::epsilon;
    else if (prediction == "sample") c.prediction = PriorPrediction::sample;
    else if (ddpm && prediction == "v_prediction") c.prediction = PriorPrediction::v_prediction;
    else bad_config(label, "prediction_type '" + prediction + "' is not supported by " + cls);

    c.clip_sample = bool_field(j, "clip_sample", true, label);
    const double range = number_field<double>(j, "clip_sample_range", 1.0, label);
    if (!(range > 0) || !std::isfinite(range)) bad_config(label, "clip_sample_range " + detail::format_number(range) + " is not positive");
    c.clip_sample_range = static_cast<float>(range);

    if (ddpm) {
        const std::string spacing = string_field(j, "timestep_spacing", "leading", label);
        if (spacing == "leading") c.spacing = TimestepSpacing::leading;
        else if (spacing == "linspace") c.spacing = TimestepSpacing::linspace;
        else if (spacing == "trailing") c.spacing = TimestepSpacing::trailing;
        else bad_config(label, "timestep_spacing '" + spacing + "' is not one of leading, linspace, trailing");
        const double offset = number_field<double>(j, "steps_offset", 0.0, label);
        if (!(offset >= 0 && offset < c.num_train_timesteps) || offset != std::floor(offset))
            bad_config(label, "steps_offset " + detail::format_number(offset) + " is not an integer in [0, num_train_timesteps)");
        c.steps_offset = static_cast<int>(offset);
    }
    return c;
}

PriorScheduler::PriorScheduler(const PriorSchedulerConfig& config) : config_(config) {
    if (config.num_train_timesteps < 2 || config.num_train_timesteps > 100000)
        throw Error(Status::invalid_argument, "PriorScheduler: num_train_timesteps " + std::to_string(config.num_train_timesteps) +
                                                  " outside [2, 100000]");
    if (!(config.clip_sample_range > 0) || !std::isfinite(config.clip_sample_range))
        throw Error(Status::invalid_argument, "PriorScheduler: clip_sample_range must be positive and finite");
    betas_ = squaredcos_cap_v2_betas(config.num_train_timesteps);
    double accumulator = 1.0;  // torch.cumprod on the CPU accumulates in double
    for (float beta : betas_) {
        alphas_.push_back(1.0f - beta);
        accumulator *= alphas_.back();
        alphas_cumprod_.push_back(static_cast<float>(accumulator));
    }
}

std::vector<int> PriorScheduler::timesteps(int steps) const {
    const int train = config_.num_train_timesteps;
    const bool unclip = config_.kind == PriorSchedulerKind::unclip;
    const int min_steps = unclip ? 2 : 1;
    if (steps < min_steps || steps > train)
        throw Error(Status::invalid_argument, "prior steps " + std::to_string(steps) + " outside [" +
                                                  std::to_string(min_steps) + ", " + std::to_string(train) + "]");
    std::vector<int> out;
    // np.round rounds half to even, as nearbyint in the default rounding mode.
    if (unclip) {
        const double ratio = static_cast<double>(train - 1) / (steps - 1);
        for (int i = steps - 1; i >= 0; --i) out.push_back(static_cast<int>(std::nearbyint(i * ratio)));
    } else if (config_.spacing == TimestepSpacing::leading) {
        const int ratio = train / steps;
        for (int i = steps - 1; i >= 0; --i) out.push_back(i * ratio + config_.steps_offset);
    } else if (config_.spacing == TimestepSpacing::linspace) {
        // np.linspace(0, train - 1, steps): i * step, the last value exactly train - 1.
        const double step = steps > 1 ? static_cast<double>(train - 1) / (steps - 1) : 0.0;
        for (int i = steps - 1; i >= 0; --i)
            out.push_back(i == steps - 1 && steps > 1 ? train - 1 : static_cast<int>(std::nearbyint(i * step)));
    } else {
        // np.round(np.arange(train, 0, -train / steps)) - 1
        const double ratio = static_cast<double>(train) / steps;
        for (int i = 0; i < steps; ++i) out.push_back(static_cast<int>(std::nearbyint(train - i * ratio)) - 1);
    }
    for (int t : out)
        if (t < 0 || t >= train)
            throw Error(Status::invalid_argument, "prior timestep " + std::to_string(t) + " (steps_offset " +
                                                      std::to_string(config_.steps_offset) + ") outside [0, " +
                                                      std::to_string(train) + ")");
    return out;
}

int PriorScheduler::previous(const std::vector<int>& timesteps, std::size_t i) const {
    if (i >= timesteps.size()) throw Error(Status::invalid_argument, "PriorScheduler::previous: index out of range");
    if (config_.kind == PriorSchedulerKind::unclip) return timesteps[i] - 1;
    return i + 1 < timesteps.size() ? timesteps[i + 1] : -1;
}

void PriorScheduler::step(const float* model_output, int t, int prev, float* sample, std::size_t n,
                          const float* noise) const {
    if (t < 0 || t >= config_.num_train_timesteps || prev >= t)
        throw Error(Status::invalid_argument, "PriorScheduler::step: timestep " + std::to_string(t) + " -> " +
                                                  std::to_string(prev) + " is not a step down inside the schedule");
    if (t > 0 && !noise) throw Error(Status::invalid_argument, "PriorScheduler::step: noise is required for t > 0");
    const float alpha_prod_t = alphas_cumprod_[static_cast<std::size_t>(t)];
    const float alpha_prod_prev = prev >= 0 ? alphas_cumprod_[static_cast<std::size_t>(prev)] : 1.0f;
    const float beta_prod_t = 1.0f - alpha_prod_t, beta_prod_prev = 1.0f - alpha_prod_prev;
    float beta, alpha;
    if (config_.kind == PriorSchedulerKind::unclip && prev == t - 1) {
        beta = betas_[static_cast<std::size_t>(t)];
        alpha = alphas_[static_cast<std::size_t>(t)];
    } else {
        alpha = alpha_prod_t / alpha_prod_prev;  // DDPM's current_alpha_t
        beta = 1.0f - alpha;
        if (config_.kind == PriorSchedulerKind::unclip) alpha = 1.0f - beta;
    }
    const float sqrt_alpha_prod = std::sqrt(alpha_prod_t), sqrt_beta_prod = std::sqrt(beta_prod_t);
    const float x0_coeff = std::sqrt(alpha_prod_prev) * beta / beta_prod_t;
    const float sample_coeff = std::sqrt(alpha) * beta_prod_prev / beta_prod_t;

    float sigma = 0.0f;
    if (t > 0) {
        // _get_variance: (1 - alpha_prod_prev) / (1 - alpha_prod_t) * beta, clamped at 1e-20.
        const float variance = beta_prod_prev / beta_prod_t * beta;
        switch (config_.variance) {
            case PriorVariance::fixed_small_log: sigma = std::exp(0.5f * std::log(std::max(variance, 1e-20f))); break;
            case PriorVariance::fixed_small: sigma = std::sqrt(std::max(variance, 1e-20f)); break;
            case PriorVariance::fixed_large: sigma = std::sqrt(beta); break;
        }
    }
    const float range = config_.clip_sample_range;
    for (std::size_t i = 0; i < n; ++i) {
        float x0;
        switch (config_.prediction) {
            case PriorPrediction::epsilon: x0 = (sample[i] - sqrt_beta_prod * model_output[i]) / sqrt_alpha_prod; break;
            case PriorPrediction::sample: x0 = model_output[i]; break;
            default: x0 = sqrt_alpha_prod * sample[i] - sqrt_beta_prod * model_output[i]; break;
        }
        if (config_.clip_sample) x0 = std::min(std::max(x0, -range), range);
        float prev_sample = x0_coeff * x0 + sample_coeff * sample[i];
        if (t > 0) prev_sample = prev_sample + sigma * noise[i];
        sample[i] = prev_sample;
    }
}

std::vector<float> sample_prior(const PriorScheduler& scheduler, const PriorSampleParams& params, std::int64_t batch,
                                std::int64_t dim, const PriorModelFn& model) {
    detail::require_range("prior guidance_scale", params.guidance_scale, 0.0, 100.0);
    if (batch < 1 || dim < 1)
        throw Error(Status::invalid_argument, "sample_prior: batch " + std::to_string(batch) + " and dim " +
                                                  std::to_string(dim) + " must be positive");
    if (!model) throw Error(Status::invalid_argument, "sample_prior: no model");
    const std::vector<int> timesteps = scheduler.timesteps(params.steps);
    const bool guided = params.guidance_scale > 1.0f;
    const auto n = static_cast<std::size_t>(batch * dim);

    TorchGenerator generator(params.seed);
    std::vector<float> latents = generator.randn(n);  // prepare_latents: randn x init_noise_sigma (1)
    std::vector<float> input(guided ? 2 * n : n), output(input.size()), noise(n);
    for (std::size_t i = 0; i < timesteps.size(); ++i) {
        const int t = timesteps[i];
        std::copy(latents.begin(), latents.end(), input.begin());
        if (guided) std::copy(latents.begin(), latents.end(), input.begin() + static_cast<std::ptrdiff_t>(n));
        model(input.data(), guided ? 2 * batch : batch, t, output.data());
        if (guided) {
            const float scale = params.guidance_scale;
            for (std::size_t k = 0; k < n; ++k) output[k] = output[k] + scale * (output[n + k] - output[k]);
        }
        if (t > 0) generator.randn(noise.data(), n);
        scheduler.step(output.data(), t, scheduler.previous(timesteps, i), latents.data(), n, t > 0 ? noise.data() : nullptr);
        if (params.on_step && !params.on_step(static_cast<int>(i), static_cast<int>(timesteps.size())))
            throw Error(Status::cancelled, "prior: cancelled");
    }
    return latents;
}

}  // namespace unclip::sampling
