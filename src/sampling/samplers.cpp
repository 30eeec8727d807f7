#include "unclip/sampling/samplers.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>

#include "sampling/samplers_detail.hpp"
#include "sampling/schedules_detail.hpp"
#include "sampling/validate.hpp"
#include "unclip/error.hpp"

namespace unclip::sampling {

namespace {

constexpr Sampler kSamplers[] = {Sampler::euler,    Sampler::euler_ancestral, Sampler::heun,
                                 Sampler::dpm_2,    Sampler::dpmpp_2m,        Sampler::dpmpp_2m_sde,
                                 Sampler::dpmpp_sde, Sampler::ddim,           Sampler::uni_pc,
                                 Sampler::uni_pc_bh2};

// The sampler loops below transcribe comfy/k_diffusion/sampling.py. Scalars are float32 like the
// 0-d tensors there (sigmas[i] is a float32 tensor), element-wise updates are float32 in the same
// operation order; the result agrees with ComfyUI to float32 rounding.

// get_ancestral_step(sigma_from, sigma_to, eta): (sigma_down, sigma_up).
void ancestral_step(float from, float to, float eta, float* down, float* up) {
    if (eta == 0.0f) {
        *down = to;
        *up = 0.0f;
        return;
    }
    *up = std::min(to, eta * std::sqrt(to * to * (from * from - to * to) / (from * from)));
    *down = std::sqrt(to * to - *up * *up);
}

using detail::Run;
using backend::LatentUpdate;

// sample_euler with s_churn = 0 (ComfyUI's default; also ComfyUI's "ddim").
void euler(Run& run) {
    for (int i = 0; i < run.steps(); ++i) {
        const float sigma = run.sigma(i), next = run.sigma(i + 1);
        run.denoise(run.x, sigma, run.denoised);
        run.report(i, sigma, run.x, run.denoised);
        // d = (x - denoised) / sigma; x = x + d * dt
        run.update(LatentUpdate::euler, run.x, {run.x, run.x, run.denoised}, {sigma, next - sigma});
    }
}

// ComfyUI's sample_euler_ancestral (not the RF variant): the last step lands on the prediction.
void euler_ancestral(Run& run) {
    const auto eta = static_cast<float>(run.options.eta), s_noise = static_cast<float>(run.options.s_noise);
    float* eps = run.scratch(0);
    for (int i = 0; i < run.steps(); ++i) {
        const float sigma = run.sigma(i), next = run.sigma(i + 1);
        run.denoise(run.x, sigma, run.denoised);
        float down, up;
        ancestral_step(sigma, next, eta, &down, &up);
        run.report(i, sigma, run.x, run.denoised);
        if (down == 0.0f) {
            run.copy(run.x, run.denoised);
            continue;
        }
        run.noise(sigma, next, eps);
        run.update(LatentUpdate::euler_noisy, run.x, {run.x, run.denoised, eps}, {sigma, down - sigma, s_noise, up});
    }
}

// sample_heun: Euler on the last step (sigma_next = 0), the trapezoid rule elsewhere.
void heun(Run& run) {
    float* x2 = run.scratch(0);
    float* denoised2 = run.scratch(1);
    for (int i = 0; i < run.steps(); ++i) {
        const float sigma = run.sigma(i), next = run.sigma(i + 1);
        run.denoise(run.x, sigma, run.denoised);
        run.report(i, sigma, run.x, run.denoised);
        const float dt = next - sigma;
        if (next == 0.0f) {
            run.update(LatentUpdate::euler, run.x, {run.x, run.x, run.denoised}, {sigma, dt});
            continue;
        }
        run.update(LatentUpdate::euler, x2, {run.x, run.x, run.denoised}, {sigma, dt});
        run.denoise(x2, next, denoised2);
        run.update(LatentUpdate::heun, run.x, {run.x, run.denoised, x2, denoised2}, {sigma, next, dt});
    }
}

// sample_dpm_2: a midpoint step in log-sigma; Euler on the last step.
void dpm_2(Run& run) {
    float* x2 = run.scratch(0);
    float* denoised2 = run.scratch(1);
    for (int i = 0; i < run.steps(); ++i) {
        const float sigma = run.sigma(i), next = run.sigma(i + 1);
        run.denoise(run.x, sigma, run.denoised);
        run.report(i, sigma, run.x, run.denoised);
        if (next == 0.0f) {
            run.update(LatentUpdate::euler, run.x, {run.x, run.x, run.denoised}, {sigma, next - sigma});
            continue;
        }
        // torch.lerp(a, b, 0.5) = b - (b - a) * 0.5
        const float log_a = std::log(sigma), log_b = std::log(next);
        const float mid = std::exp(log_b - (log_b - log_a) * 0.5f);
        const float dt1 = mid - sigma, dt2 = next - sigma;
        run.update(LatentUpdate::euler, x2, {run.x, run.x, run.denoised}, {sigma, dt1});
        run.denoise(x2, mid, denoised2);
        run.update(LatentUpdate::euler, run.x, {run.x, x2, denoised2}, {mid, dt2});
    }
}

// sample_dpmpp_2m: t = -log(sigma); first order on the first and the last step.
void dpmpp_2m(Run& run) {
    float* old_denoised = run.scratch(0);
    const auto t_fn = [](float s) { return -std::log(s); };
    const auto sigma_fn = [](float t) { return std::exp(-t); };
    for (int i = 0; i < run.steps(); ++i) {
        const float sigma = run.sigma(i), next = run.sigma(i + 1);
        run.denoise(run.x, sigma, run.denoised);
        run.report(i, sigma, run.x, run.denoised);
        const float t = t_fn(sigma), t_next = t_fn(next);
        const float h = t_next - t;
        const float ratio = sigma_fn(t_next) / sigma_fn(t);
        const float phi = std::expm1(-h);
        if (i == 0 || next == 0.0f) {
            run.combine(run.x, ratio, run.x, -phi, run.denoised);
        } else {
            const float h_last = t - t_fn(run.sigma(i - 1));
            const float r = h_last / h;
            const float a = 1.0f + 1.0f / (2.0f * r), b = 1.0f / (2.0f * r);
            // x = ratio x - phi (a denoised - b old_denoised)
            run.update(LatentUpdate::combine_nested, run.x, {run.x, run.denoised, old_denoised}, {ratio, -phi, a, -b});
        }
        run.copy(old_denoised, run.denoised);
    }
}

// ComfyUI's sample_dpmpp_2m_sde, solver_type "midpoint" (the default); lambda = -log(sigma).
void dpmpp_2m_sde(Run& run) {
    const auto eta = static_cast<float>(run.options.eta), s_noise = static_cast<float>(run.options.s_noise);
    float* old_denoised = run.scratch(0);
    float* eps = run.scratch(1);
    bool have_old = false;
    float h = 0.0f, h_last = 0.0f;
    for (int i = 0; i < run.steps(); ++i) {
        const float sigma = run.sigma(i), next = run.sigma(i + 1);
        run.denoise(run.x, sigma, run.denoised);
        run.report(i, sigma, run.x, run.denoised);
        if (next == 0.0f) {
            run.copy(run.x, run.denoised);
        } else {
            const float lambda_s = -std::log(sigma), lambda_t = -std::log(next);
            h = lambda_t - lambda_s;
            const float h_eta = h * (eta + 1.0f);
            const float alpha_t = next * std::exp(lambda_t);
            const float decay = next / sigma * std::exp(-h * eta);
            const float gain = alpha_t * -std::expm1(-h_eta);
            run.combine(run.x, decay, run.x, gain, run.denoised);
            if (have_old) {
                const float r = h_last / h;
                const float c = 0.5f * alpha_t * -std::expm1(-h_eta) * (1.0f / r);
                run.update(LatentUpdate::add_scaled_difference, run.x, {run.x, run.denoised, old_denoised}, {c});
            }
            if (eta > 0.0f && s_noise > 0.0f) {
                run.noise(sigma, next, eps);
                const float c = next * std::sqrt(-std::expm1(-2.0f * h * eta)) * s_noise;
                run.combine(run.x, 1.0f, run.x, c, eps);  // x + eps * c
            }
        }
        run.copy(old_denoised, run.denoised);
        have_old = true;
        h_last = h;
    }
}

// ComfyUI's sample_dpmpp_sde (r = 1/2): an ancestral half step to the geometric midpoint, a model
// evaluation there, then the full step with the midpoint prediction.
void dpmpp_sde(Run& run) {
    const auto eta = static_cast<float>(run.options.eta), s_noise = static_cast<float>(run.options.s_noise);
    const float r = 0.5f, fac = 1.0f / (2.0f * r);
    float* x2 = run.scratch(0);
    float* denoised2 = run.scratch(1);
    float* eps = run.scratch(2);
    const bool noisy = eta > 0.0f && s_noise > 0.0f;
    for (int i = 0; i < run.steps(); ++i) {
        const float sigma = run.sigma(i), next = run.sigma(i + 1);
        run.denoise(run.x, sigma, run.denoised);
        run.report(i, sigma, run.x, run.denoised);
        if (next == 0.0f) {
            run.copy(run.x, run.denoised);
            continue;
        }
        const float lambda_s = -std::log(sigma), lambda_t = -std::log(next);
        const float h = lambda_t - lambda_s;
        const float lambda_s1 = lambda_s + r * h;
        const float sigma_s1 = std::exp(-lambda_s1);
        const float alpha_s = sigma * std::exp(lambda_s);
        const float alpha_s1 = sigma_s1 * std::exp(lambda_s1);
        const float alpha_t = next * std::exp(lambda_t);

        float sd, su;
        ancestral_step(std::exp(-lambda_s), std::exp(-lambda_s1), eta, &sd, &su);
        float h_ = -std::log(sd) - lambda_s;
        float decay = alpha_s1 / alpha_s * std::exp(-h_);
        float gain = alpha_s1 * std::expm1(-h_);
        run.combine(x2, decay, run.x, -gain, run.denoised);
        if (noisy) {
            run.noise(sigma, sigma_s1, eps);
            run.combine(x2, 1.0f, x2, alpha_s1 * s_noise * su, eps);
        }
        run.denoise(x2, sigma_s1, denoised2);

        ancestral_step(std::exp(-lambda_s), std::exp(-lambda_t), eta, &sd, &su);
        h_ = -std::log(sd) - lambda_s;
        decay = alpha_t / alpha_s * std::exp(-h_);
        gain = alpha_t * std::expm1(-h_);
        // x = decay x - gain ((1 - fac) denoised + fac denoised2)
        run.update(LatentUpdate::combine_nested, run.x, {run.x, run.denoised, denoised2},
                   {decay, -gain, 1.0f - fac, fac});
        if (noisy) {
            run.noise(sigma, next, eps);
            run.combine(run.x, 1.0f, run.x, alpha_t * s_noise * su, eps);
        }
    }
}

// SplitMix64 (Steele et al.): decorrelates the Brownian stream's seed from the KSampler seed.
std::uint64_t splitmix64(std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

}  // namespace

namespace detail {

Run::Run(LatentOps& ops_, Sampler sampler_, const DenoiseFn& denoise_fn, float* x_, std::size_t n_,
         const std::vector<float>& sigmas_, const SamplerOptions& options_, bool report_latents)
    : ops(ops_), sampler(sampler_), options(options_), x(x_), n(n_), denoised(ops_.buffer(n_)), denoise_fn_(denoise_fn),
      sigmas_(sigmas_), report_latents_(report_latents) {}

void Run::denoise(const float* input, float sigma, float* out) { denoise_fn_(input, sigma, out); }

void Run::report(int step, float sigma, const float* sample, const float* prediction) {
    ops.step_queued();
    if (!options.on_step) return;
    StepInfo info;
    info.step = step;
    info.steps = steps();
    info.sigma = sigma;
    if (report_latents_) {
        info.x = ops.host_view(sample, n, host_x_);
        info.denoised = ops.host_view(prediction, n, host_denoised_);
    }
    info.numel = n;
    if (!options.on_step(info))
        throw Error(Status::cancelled, std::string("sampling cancelled at step ") + std::to_string(step + 1) + " of " +
                                           std::to_string(steps()) + " (" + sampler_name(sampler) + ")");
}

float* Run::scratch(std::size_t index) {
    while (scratch_.size() <= index) scratch_.push_back(ops.buffer(n));
    return scratch_[index];
}

void Run::noise(float sigma, float sigma_next, float* out) {
    host_noise_.resize(n);
    noise_sampler().sample(sigma, sigma_next, host_noise_.data(), n);
    ops.upload(host_noise_.data(), out, n);
}

NoiseSampler& Run::noise_sampler() {
    if (options.noise != nullptr) return *options.noise;
    if (!default_noise_) {
        if (sampler == Sampler::dpmpp_sde || sampler == Sampler::dpmpp_2m_sde) {
            // ComfyUI: BrownianTreeNoiseSampler(x, min nonzero sigma, max sigma, seed).
            float lo = sigmas_.front(), hi = sigmas_.front();
            for (float s : sigmas_) {
                if (s > 0.0f) lo = std::min(lo, s);
                hi = std::max(hi, s);
            }
            default_noise_ = std::make_unique<BrownianNoiseSampler>(options.seed, lo, hi, options.kernel);
        } else {
            default_noise_ = std::make_unique<TorchNoiseSampler>(options.seed, options.kernel);
        }
    }
    return *default_noise_;
}

}  // namespace detail

const char* sampler_name(Sampler sampler) noexcept {
    switch (sampler) {
        case Sampler::euler: return "euler";
        case Sampler::euler_ancestral: return "euler_ancestral";
        case Sampler::heun: return "heun";
        case Sampler::dpm_2: return "dpm_2";
        case Sampler::dpmpp_2m: return "dpmpp_2m";
        case Sampler::dpmpp_2m_sde: return "dpmpp_2m_sde";
        case Sampler::dpmpp_sde: return "dpmpp_sde";
        case Sampler::ddim: return "ddim";
        case Sampler::uni_pc: return "uni_pc";
        case Sampler::uni_pc_bh2: return "uni_pc_bh2";
    }
    return "unknown";
}

std::string sampler_names() {
    std::string names;
    for (Sampler s : kSamplers) names += (names.empty() ? "" : ", ") + std::string(sampler_name(s));
    return names;
}

Sampler sampler_from_name(std::string_view name) {
    for (Sampler s : kSamplers)
        if (name == sampler_name(s)) return s;
    throw Error(Status::invalid_argument,
                "unknown sampler '" + std::string(name) + "' (valid: " + sampler_names() + ")");
}

bool discards_penultimate_sigma(Sampler sampler) noexcept {
    return sampler == Sampler::dpm_2 || sampler == Sampler::uni_pc || sampler == Sampler::uni_pc_bh2;
}

void TorchNoiseSampler::sample(float, float, float* out, std::size_t n) { generator_.randn(out, n); }

BrownianNoiseSampler::BrownianNoiseSampler(std::uint64_t seed, float sigma_min, float sigma_max, RandnKernel kernel)
    : generator_(splitmix64(seed), kernel), sigma_min_(sigma_min), sigma_max_(sigma_max) {
    detail::require_finite("sigma_min", sigma_min);
    detail::require_finite("sigma_max", sigma_max);
    if (!(sigma_min >= 0 && sigma_max >= sigma_min))
        throw Error(Status::invalid_argument, "Brownian noise: need 0 <= sigma_min <= sigma_max (got " +
                                                  detail::format_number(sigma_min) + ", " +
                                                  detail::format_number(sigma_max) + ")");
}

const std::vector<float>& BrownianNoiseSampler::at(double s, std::size_t n) {
    if (known_.empty()) {
        known_[sigma_min_].assign(n, 0.0f);
        if (sigma_max_ > sigma_min_) {
            std::vector<float> w = generator_.randn(n);
            const auto scale = static_cast<float>(std::sqrt(sigma_max_ - sigma_min_));
            for (float& v : w) v *= scale;
            known_[sigma_max_] = std::move(w);
        }
    }
    if (known_.begin()->second.size() != n)
        throw Error(Status::invalid_argument, "Brownian noise: the sample size changed between calls");
    const auto found = known_.find(s);
    if (found != known_.end()) return found->second;

    std::vector<float> w = generator_.randn(n);
    const auto upper = known_.upper_bound(s);
    if (upper == known_.begin()) {  // below every known point: an independent increment downwards
        const auto scale = static_cast<float>(std::sqrt(upper->first - s));
        for (std::size_t k = 0; k < n; ++k) w[k] = upper->second[k] + scale * w[k];
    } else if (upper == known_.end()) {  // above every known point: an independent increment upwards
        const auto& lower = *std::prev(upper);
        const auto scale = static_cast<float>(std::sqrt(s - lower.first));
        for (std::size_t k = 0; k < n; ++k) w[k] = lower.second[k] + scale * w[k];
    } else {  // the Brownian bridge between the neighbours
        const auto& lower = *std::prev(upper);
        const double a = lower.first, b = upper->first;
        const auto weight = static_cast<float>((s - a) / (b - a));
        const auto scale = static_cast<float>(std::sqrt((s - a) * (b - s) / (b - a)));
        for (std::size_t k = 0; k < n; ++k)
            w[k] = lower.second[k] + weight * (upper->second[k] - lower.second[k]) + scale * w[k];
    }
    return known_.emplace(s, std::move(w)).first->second;
}

void BrownianNoiseSampler::sample(float sigma, float sigma_next, float* out, std::size_t n) {
    detail::require_finite("sigma", sigma);
    detail::require_finite("sigma_next", sigma_next);
    if (sigma == sigma_next) throw Error(Status::invalid_argument, "Brownian noise: empty interval");
    const std::vector<float>& from = at(sigma, n);
    const std::vector<float>& to = at(sigma_next, n);
    const auto scale = static_cast<float>(1.0 / std::sqrt(std::fabs(static_cast<double>(sigma) - sigma_next)));
    for (std::size_t k = 0; k < n; ++k) out[k] = (to[k] - from[k]) * scale;
    // Steps move down in sigma: nothing above this interval is asked for again.
    const double top = std::max(sigma, sigma_next);
    known_.erase(known_.upper_bound(top), known_.end());
}

namespace detail {

namespace {
// Everything sample_with() can check without reading x's values (they may be device memory).
void check_sample_arguments(const DenoiseFn& denoise, const float* x, std::size_t n, const std::vector<float>& sigmas,
                            const SamplerOptions& options) {
    if (!denoise) throw Error(Status::invalid_argument, "sample: the denoiser callback is empty");
    if (x == nullptr || n == 0) throw Error(Status::invalid_argument, "sample: x is empty");
    if (sigmas.size() < 2)
        throw Error(Status::invalid_argument,
                    "sample: need at least 2 sigmas (got " + std::to_string(sigmas.size()) + ")");
    require_all_finite("sigmas", sigmas.data(), sigmas.size());
    for (std::size_t i = 0; i + 1 < sigmas.size(); ++i)
        if (!(sigmas[i] > 0))
            throw Error(Status::invalid_argument, "sample: sigmas[" + std::to_string(i) + "] = " +
                                                      format_number(sigmas[i]) +
                                                      " must be > 0 (only the last sigma may be 0)");
    if (sigmas.back() < 0)
        throw Error(Status::invalid_argument, "sample: the last sigma must be >= 0");
    require_at_least("eta", options.eta, 0.0);
    require_at_least("s_noise", options.s_noise, 0.0);
}
}  // namespace

void sample_with(LatentOps& ops, Sampler sampler, const DenoiseFn& denoise, float* x, std::size_t n,
                 const std::vector<float>& sigmas, const SamplerOptions& options, bool report_latents) {
    check_sample_arguments(denoise, x, n, sigmas, options);
    Run run(ops, sampler, denoise, x, n, sigmas, options, report_latents);
    switch (sampler) {
        case Sampler::euler:
        case Sampler::ddim: euler(run); return;
        case Sampler::euler_ancestral: euler_ancestral(run); return;
        case Sampler::heun: heun(run); return;
        case Sampler::dpm_2: dpm_2(run); return;
        case Sampler::dpmpp_2m: dpmpp_2m(run); return;
        case Sampler::dpmpp_2m_sde: dpmpp_2m_sde(run); return;
        case Sampler::dpmpp_sde: dpmpp_sde(run); return;
        case Sampler::uni_pc: uni_pc(run, false); return;
        case Sampler::uni_pc_bh2: uni_pc(run, true); return;
    }
    throw Error(Status::invalid_argument, "sample: unknown sampler value " + std::to_string(static_cast<int>(sampler)));
}

}  // namespace detail

void sample(Sampler sampler, const DenoiseFn& denoise, float* x, std::size_t n, const std::vector<float>& sigmas,
            const SamplerOptions& options) {
    if (x != nullptr) detail::require_all_finite("x", x, n);  // the rest: sample_with
    detail::HostLatentOps ops;
    detail::sample_with(ops, sampler, denoise, x, n, sigmas, options);
}

std::vector<float> ksampler_sigmas(const ModelSchedule& model, Scheduler scheduler, Sampler sampler, int steps,
                                   double denoise) {
    detail::require_steps(steps);
    detail::require_finite("denoise", denoise);
    if (!(denoise > 0.0 && denoise <= 1.0))
        throw Error(Status::invalid_argument, "denoise must be in (0, 1] (got " + detail::format_number(denoise) + ")");
    const auto full_schedule = [&](int n) {
        const bool discard = discards_penultimate_sigma(sampler);
        std::vector<float> sigmas = detail::compute_sigmas_unchecked(model, scheduler, discard ? n + 1 : n);
        if (discard) sigmas.erase(sigmas.end() - 2);
        return sigmas;
    };
    if (denoise > 0.9999) return full_schedule(steps);
    // KSampler.set_steps: new_steps = int(steps / denoise), keep the last steps + 1.
    constexpr double kMaxScheduleSteps = 100000;
    const double new_steps = std::floor(static_cast<double>(steps) / denoise);
    if (new_steps > kMaxScheduleSteps)
        throw Error(Status::invalid_argument, "denoise " + detail::format_number(denoise) + " with " +
                                                  std::to_string(steps) + " steps needs a " +
                                                  detail::format_number(new_steps) + "-step schedule (limit " +
                                                  detail::format_number(kMaxScheduleSteps) + ")");
    std::vector<float> sigmas = full_schedule(static_cast<int>(new_steps));
    const auto keep = static_cast<std::size_t>(steps) + 1;
    if (sigmas.size() > keep) sigmas.erase(sigmas.begin(), sigmas.end() - static_cast<std::ptrdiff_t>(keep));
    return sigmas;
}

detail::KSampleStart detail::ksample_start(const KSamplerParams& params, const ModelSchedule& model,
                                           const std::vector<float>& latent) {
    if (latent.empty()) throw Error(Status::invalid_argument, "ksample: the latent is empty");
    require_all_finite("latent", latent.data(), latent.size());
    KSampleStart start;
    start.sigmas = ksampler_sigmas(model, params.scheduler, params.sampler, params.steps, params.denoise);
    // comfy/sample.py prepare_noise: one torch.randn over the whole latent.
    start.x = TorchGenerator(params.seed, params.kernel).randn(latent.size());
    // comfy/samplers.py Sampler.max_denoise and EPS.noise_scaling, float32.
    const float sigma0 = start.sigmas.front(), sigma_max = model.sigma_max();
    const bool max_denoise =
        std::fabs(static_cast<double>(sigma_max) - sigma0) <= 1e-5 * std::max<double>(std::fabs(sigma_max), std::fabs(sigma0)) ||
        sigma0 > sigma_max;
    const float scale = max_denoise ? std::sqrt(1.0f + sigma0 * sigma0) : sigma0;
    for (std::size_t k = 0; k < start.x.size(); ++k) start.x[k] = start.x[k] * scale + latent[k];
    return start;
}

std::vector<float> ksample(const KSamplerParams& params, const ModelSchedule& model, const DenoiseFn& denoise,
                           const std::vector<float>& latent) {
    detail::KSampleStart start = detail::ksample_start(params, model, latent);
    SamplerOptions options;
    options.seed = params.seed;
    options.kernel = params.kernel;
    options.on_step = params.on_step;
    sample(params.sampler, denoise, start.x, start.sigmas, options);
    return std::move(start.x);
}

}  // namespace unclip::sampling
