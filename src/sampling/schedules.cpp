#include "unclip/sampling/schedules.hpp"

#include <algorithm>
#include <cmath>

#include "sampling/schedules_detail.hpp"
#include "sampling/validate.hpp"
#include "unclip/error.hpp"

namespace unclip::sampling {

namespace {

constexpr Scheduler kSchedulers[] = {Scheduler::normal,  Scheduler::karras,      Scheduler::exponential,
                                     Scheduler::simple,  Scheduler::sgm_uniform, Scheduler::ddim_uniform};

// torch.linspace on the CPU (RangeFactoriesKernel.cpp): the first half counts up from `start`,
// the second half down from `end`, so both ends are exact. T is float or double.
template <class T>
std::vector<T> linspace(T start, T end, std::int64_t steps) {
    std::vector<T> out(static_cast<std::size_t>(steps));
    if (steps == 1) {
        out[0] = start;
        return out;
    }
    const T step = (end - start) / static_cast<T>(steps - 1);
    const std::int64_t halfway = steps / 2;
    for (std::int64_t i = 0; i < steps; ++i)
        out[static_cast<std::size_t>(i)] =
            i < halfway ? start + step * static_cast<T>(i) : end - step * static_cast<T>(steps - i - 1);
    return out;
}

// comfy/samplers.py normal_scheduler: float32 timesteps from t(sigma_max) to t(sigma_min), each
// mapped through ModelSchedule::sigma. sgm_uniform takes steps + 1 points and drops the last.
std::vector<float> normal_sigmas(const ModelSchedule& model, int steps, bool sgm) {
    const auto start = static_cast<float>(model.timestep(model.sigma_max()));
    const auto end = static_cast<float>(model.timestep(model.sigma_min()));
    // ComfyUI takes one more step and appends no 0 when sigma(t_min) is ~0 (never for SD 2.x).
    const bool append_zero = sgm || std::fabs(model.sigma(end)) > 1e-5f;
    std::vector<float> ts = sgm ? linspace(start, end, steps + 1) : linspace(start, end, append_zero ? steps : steps + 1);
    if (sgm) ts.pop_back();
    std::vector<float> sigmas;
    sigmas.reserve(ts.size() + 1);
    for (float t : ts) sigmas.push_back(model.sigma(t));
    if (append_zero) sigmas.push_back(0.0f);
    return sigmas;
}

// k_diffusion get_sigmas_karras (rho = 7): float32 tensor arithmetic with Python-float constants.
std::vector<float> karras_sigmas(const ModelSchedule& model, int steps) {
    const double rho = 7.0;
    const double min_inv_rho = std::pow(static_cast<double>(model.sigma_min()), 1.0 / rho);
    const double max_inv_rho = std::pow(static_cast<double>(model.sigma_max()), 1.0 / rho);
    const std::vector<float> ramp = linspace(0.0f, 1.0f, steps);
    const auto span = static_cast<float>(min_inv_rho - max_inv_rho);
    std::vector<float> sigmas;
    for (float r : ramp) sigmas.push_back(std::pow(static_cast<float>(max_inv_rho) + r * span, static_cast<float>(rho)));
    sigmas.push_back(0.0f);
    return sigmas;
}

// k_diffusion get_sigmas_exponential: exp of a float32 linspace from log(sigma_max) to log(sigma_min).
std::vector<float> exponential_sigmas(const ModelSchedule& model, int steps) {
    const auto lo = static_cast<float>(std::log(static_cast<double>(model.sigma_min())));
    const auto hi = static_cast<float>(std::log(static_cast<double>(model.sigma_max())));
    std::vector<float> sigmas;
    for (float l : linspace(hi, lo, steps)) sigmas.push_back(std::exp(l));
    sigmas.push_back(0.0f);
    return sigmas;
}

// comfy/samplers.py simple_scheduler: every (T / steps)-th table sigma from the top.
std::vector<float> simple_sigmas(const ModelSchedule& model, int steps) {
    const auto& table = model.sigmas();
    const double stride = static_cast<double>(table.size()) / steps;
    std::vector<float> sigmas;
    for (int i = 0; i < steps; ++i)
        sigmas.push_back(table[table.size() - 1 - static_cast<std::size_t>(static_cast<double>(i) * stride)]);
    sigmas.push_back(0.0f);
    return sigmas;
}

// comfy/samplers.py ddim_scheduler: table sigmas at t = 1, 1 + c, 1 + 2c, ... (c = T // steps),
// reversed, after a leading 0 (LDM make_ddim_timesteps adds the same 1).
std::vector<float> ddim_uniform_sigmas(const ModelSchedule& model, int steps) {
    const auto& table = model.sigmas();
    const auto size = static_cast<int>(table.size());
    std::vector<float> sigmas;
    int t = 1;
    if (std::fabs(table[1]) <= 1e-5f) ++steps;  // a zero-terminal-SNR table: no leading 0
    else sigmas.push_back(0.0f);
    const int stride = std::max(size / steps, 1);
    for (; t < size; t += stride) sigmas.push_back(table[static_cast<std::size_t>(t)]);
    std::reverse(sigmas.begin(), sigmas.end());
    return sigmas;
}

}  // namespace

ModelSchedule ModelSchedule::scaled_linear(double beta_start, double beta_end, int timesteps) {
    detail::require_finite("beta_start", beta_start);
    detail::require_finite("beta_end", beta_end);
    if (!(beta_start > 0 && beta_end > beta_start && beta_end < 1))
        throw Error(Status::invalid_argument, "scaled_linear schedule: need 0 < beta_start < beta_end < 1 (got " +
                                                  std::to_string(beta_start) + ", " + std::to_string(beta_end) + ")");
    if (timesteps < 2)
        throw Error(Status::invalid_argument, "scaled_linear schedule: timesteps must be >= 2 (got " +
                                                  std::to_string(timesteps) + ")");
    std::vector<double> betas = linspace(std::sqrt(beta_start), std::sqrt(beta_end), timesteps);
    for (double& b : betas) b = b * b;
    return ModelSchedule(betas);
}

ModelSchedule::ModelSchedule(const std::vector<double>& betas) {
    if (betas.size() < 2)
        throw Error(Status::invalid_argument, "model schedule: need at least 2 betas (got " +
                                                  std::to_string(betas.size()) + ")");
    double alphas_cumprod = 1.0;
    for (std::size_t t = 0; t < betas.size(); ++t) {
        if (!(betas[t] > 0 && betas[t] < 1))
            throw Error(Status::invalid_argument,
                        "model schedule: beta[" + std::to_string(t) + "] = " + std::to_string(betas[t]) +
                            " is outside (0, 1)");
        alphas_cumprod *= 1.0 - betas[t];
        const double sigma = std::sqrt((1.0 - alphas_cumprod) / alphas_cumprod);
        sigmas_.push_back(static_cast<float>(sigma));
        log_sigmas_.push_back(static_cast<float>(std::log(sigma)));
    }
}

float ModelSchedule::sigma(float t) const {
    if (std::isnan(t)) throw Error(Status::invalid_argument, "model schedule: timestep is NaN");
    t = std::min(std::max(t, 0.0f), static_cast<float>(sigmas_.size() - 1));
    const float low = std::floor(t), high = std::ceil(t);
    const float w = t - std::trunc(t);
    const float log_sigma = (1.0f - w) * log_sigmas_[static_cast<std::size_t>(low)] +
                            w * log_sigmas_[static_cast<std::size_t>(high)];
    return std::exp(log_sigma);
}

int ModelSchedule::timestep(float sigma) const {
    if (!(sigma > 0) || !std::isfinite(sigma))
        throw Error(Status::invalid_argument,
                    "model schedule: sigma must be positive and finite (got " + std::to_string(sigma) + ")");
    const float log_sigma = std::log(sigma);
    std::size_t best = 0;
    float best_distance = std::fabs(log_sigma - log_sigmas_[0]);
    for (std::size_t t = 1; t < log_sigmas_.size(); ++t) {
        const float distance = std::fabs(log_sigma - log_sigmas_[t]);
        if (distance < best_distance) {
            best_distance = distance;
            best = t;
        }
    }
    return static_cast<int>(best);
}

const char* scheduler_name(Scheduler scheduler) noexcept {
    switch (scheduler) {
        case Scheduler::normal: return "normal";
        case Scheduler::karras: return "karras";
        case Scheduler::exponential: return "exponential";
        case Scheduler::simple: return "simple";
        case Scheduler::sgm_uniform: return "sgm_uniform";
        case Scheduler::ddim_uniform: return "ddim_uniform";
    }
    return "unknown";
}

std::string scheduler_names() {
    std::string names;
    for (Scheduler s : kSchedulers) names += (names.empty() ? "" : ", ") + std::string(scheduler_name(s));
    return names;
}

Scheduler scheduler_from_name(std::string_view name) {
    for (Scheduler s : kSchedulers)
        if (name == scheduler_name(s)) return s;
    throw Error(Status::invalid_argument,
                "unknown scheduler '" + std::string(name) + "' (valid: " + scheduler_names() + ")");
}

namespace detail {
std::vector<float> compute_sigmas_unchecked(const ModelSchedule& model, Scheduler scheduler, int steps) {
    switch (scheduler) {
        case Scheduler::normal: return normal_sigmas(model, steps, false);
        case Scheduler::sgm_uniform: return normal_sigmas(model, steps, true);
        case Scheduler::karras: return karras_sigmas(model, steps);
        case Scheduler::exponential: return exponential_sigmas(model, steps);
        case Scheduler::simple: return simple_sigmas(model, steps);
        case Scheduler::ddim_uniform: return ddim_uniform_sigmas(model, steps);
    }
    throw Error(Status::invalid_argument, "unknown scheduler value " + std::to_string(static_cast<int>(scheduler)));
}
}  // namespace detail

std::vector<float> compute_sigmas(const ModelSchedule& model, Scheduler scheduler, int steps) {
    detail::require_steps(steps);
    return detail::compute_sigmas_unchecked(model, scheduler, steps);
}

}  // namespace unclip::sampling
