#include "unclip/nn/noise_aug.hpp"

#include <cmath>
#include <string>

#include "sampling/validate.hpp"
#include "unclip/error.hpp"
#include "unclip/nn/timestep_embedding.hpp"

namespace unclip::nn {

namespace {

// betas_for_alpha_bar with the squaredcos_cap_v2 alpha_bar (LDM util.py, diffusers
// scheduling_ddpm.py): float64, beta capped at 0.999.
std::vector<double> squaredcos_cap_v2_betas(int levels) {
    const double pi = 3.14159265358979323846;
    const auto alpha_bar = [pi](double t) {
        const double c = std::cos((t + 0.008) / 1.008 * pi / 2);
        return c * c;
    };
    std::vector<double> betas;
    for (int i = 0; i < levels; ++i) {
        const double t1 = static_cast<double>(i) / levels, t2 = static_cast<double>(i + 1) / levels;
        betas.push_back(std::fmin(1 - alpha_bar(t2) / alpha_bar(t1), 0.999));
    }
    return betas;
}

}  // namespace

NoiseAugmentor::NoiseAugmentor(const NoiseAugConfig& config, std::vector<float> mean, std::vector<float> std)
    : config_(config), mean_(std::move(mean)), std_(std::move(std)) {
    if (config.dim < 2 || config.dim % 2 != 0)
        throw Error(Status::invalid_argument,
                    "noise augmentation: dim must be even and >= 2 (got " + std::to_string(config.dim) + ")");
    if (config.convention != NoiseAugConvention::comfyui && config.convention != NoiseAugConvention::diffusers)
        throw Error(Status::invalid_argument, "noise augmentation: unknown convention");
    if (mean_.empty() != std_.empty())
        throw Error(Status::invalid_argument, "noise augmentation: give both mean and std, or neither");
    if (!mean_.empty()) {
        const auto dim = static_cast<std::size_t>(config.dim);
        if (mean_.size() != dim || std_.size() != dim)
            throw Error(Status::invalid_argument, "noise augmentation: mean and std need " + std::to_string(dim) +
                                                      " values (got " + std::to_string(mean_.size()) + " and " +
                                                      std::to_string(std_.size()) + ")");
        sampling::detail::require_all_finite("image_normalizer mean", mean_.data(), mean_.size());
        for (std::size_t i = 0; i < std_.size(); ++i)
            if (!(std_[i] > 0) || !std::isfinite(std_[i]))
                throw Error(Status::invalid_argument, "noise augmentation: image_normalizer std[" + std::to_string(i) +
                                                          "] = " + sampling::detail::format_number(std_[i]) +
                                                          " must be positive and finite");
    }

    const std::vector<double> betas = squaredcos_cap_v2_betas(kMaxNoiseLevel);
    if (config.convention == NoiseAugConvention::comfyui) {
        // upscaling.py: numpy float64 cumprod, np.sqrt, then torch.tensor(..., float32).
        double alphas_cumprod = 1.0;
        for (double beta : betas) {
            alphas_cumprod *= 1.0 - beta;
            signal_.push_back(static_cast<float>(std::sqrt(alphas_cumprod)));
            noise_.push_back(static_cast<float>(std::sqrt(1.0 - alphas_cumprod)));
        }
    } else {
        // DDPMScheduler: betas float32, alphas = 1 - betas in float32, torch.cumprod (double
        // accumulator on the CPU, each prefix stored as float32); add_noise takes ** 0.5 in float32.
        double accumulator = 1.0;
        for (double beta : betas) {
            const float alpha = 1.0f - static_cast<float>(beta);
            accumulator *= alpha;
            const auto alphas_cumprod = static_cast<float>(accumulator);
            signal_.push_back(std::sqrt(alphas_cumprod));
            noise_.push_back(std::sqrt(1.0f - alphas_cumprod));
        }
    }
}

namespace {
void require_level(int noise_level) {
    if (noise_level < 0 || noise_level >= NoiseAugmentor::kMaxNoiseLevel)
        throw Error(Status::invalid_argument, "noise_level must be in [0, " +
                                                  std::to_string(NoiseAugmentor::kMaxNoiseLevel - 1) + "] (got " +
                                                  std::to_string(noise_level) + ")");
}
}  // namespace

float NoiseAugmentor::signal_scale(int noise_level) const {
    require_level(noise_level);
    return signal_[static_cast<std::size_t>(noise_level)];
}

float NoiseAugmentor::noise_scale(int noise_level) const {
    require_level(noise_level);
    return noise_[static_cast<std::size_t>(noise_level)];
}

void NoiseAugmentor::forward(const float* x, int noise_level, const float* noise, float* out) const {
    require_level(noise_level);
    const auto dim = static_cast<std::size_t>(config_.dim);
    sampling::detail::require_all_finite("image embedding", x, dim);
    sampling::detail::require_all_finite("augmentation noise", noise, dim);
    const float a = signal_[static_cast<std::size_t>(noise_level)], b = noise_[static_cast<std::size_t>(noise_level)];
    const bool normalise = !mean_.empty();
    for (std::size_t i = 0; i < dim; ++i) {
        const float scaled = normalise ? (x[i] - mean_[i]) * 1.0f / std_[i] : x[i];  // scale()
        const float z = a * scaled + b * noise[i];                                  // q_sample()
        out[i] = normalise ? z * std_[i] + mean_[i] : z;                           // unscale()
    }
    const auto level = static_cast<float>(noise_level);
    timestep_embedding(&level, 1, config_.dim, out + dim);
}

int noise_level_from_augmentation(double noise_augmentation) {
    sampling::detail::require_range("noise_augmentation", noise_augmentation, 0.0, 1.0);
    // comfy/model_base.py unclip_adm: round((max_noise_level - 1) * noise_augment); nearbyint in
    // the default rounding mode is Python's round-half-to-even.
    return static_cast<int>(std::nearbyint((NoiseAugmentor::kMaxNoiseLevel - 1) * noise_augmentation));
}

}  // namespace unclip::nn
