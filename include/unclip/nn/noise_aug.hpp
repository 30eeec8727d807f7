#pragma once
// unCLIP's noise augmentation of the CLIP image embedding and the level embedding that together
// make the UNet's ADM vector (class_labels in diffusers): LDM/ComfyUI
// CLIPEmbeddingNoiseAugmentation (comfy/ldm/modules/encoders/noise_aug_modules.py) and diffusers'
// StableUnCLIPImageNormalizer + image_noising_scheduler + get_timestep_embedding
// (pipeline_stable_unclip_img2img.py noise_image_embeddings):
//
//   x^  = (x - mean) / std                      the model's embedding statistics (identity for -h)
//   z   = sqrt(abar_t) x^ + sqrt(1 - abar_t) e    squaredcos_cap_v2 schedule, 1000 levels, t = level
//   adm = [z * std + mean, timestep_embedding(t, dim)]     -> [2 * dim]: 2048 (-h), 1536 (-l)
//
// Noise is always added, even at level 0 (std 0.0064). Drawing e and the ComfyUI semantics of
// several images are in unclip/sampling/conditioning.hpp; timestep_embedding is the UNet's
// (unclip/nn/timestep_embedding.hpp).
// Errors: Error(Status::invalid_argument) naming the argument. Thread-safety: a const
// NoiseAugmentor may be used from several threads.
#include <cstdint>
#include <vector>

#include "unclip/detail/export.hpp"

namespace unclip::nn {

// How the augmentation schedule's tables are rounded.
enum class NoiseAugConvention {
    comfyui,    // LDM upscaling.py register_schedule: abar and both square roots in float64, stored float32
    diffusers,  // DDPMScheduler: float32 betas and abar (the cumulative product accumulated in
                // double, as torch's CPU cumprod does), square roots taken in float32 at use
};

struct NoiseAugConfig {
    std::int64_t dim = 1024;  // embedding width, even: 1024 (-h, OpenCLIP ViT-H/14), 768 (-l, OpenAI ViT-L/14)
    NoiseAugConvention convention = NoiseAugConvention::comfyui;
};

class UNCLIP_CXX_API NoiseAugmentor {
public:
    static constexpr int kMaxNoiseLevel = 1000;  // levels 0..999

    // mean, std: the embedding statistics ([dim] each; std > 0), or both empty for the identity,
    // which is what ComfyUI always uses (it never loads them) and what -h has everywhere. The
    // diffusers -l folders carry Karlo's statistics in image_normalizer/.
    explicit NoiseAugmentor(const NoiseAugConfig& config, std::vector<float> mean = {}, std::vector<float> std = {});

    std::int64_t dim() const noexcept { return config_.dim; }
    std::int64_t adm_dim() const noexcept { return 2 * config_.dim; }
    const NoiseAugConfig& config() const noexcept { return config_; }
    // The q-sample coefficients at a level in [0, 999], as the convention rounds them.
    float signal_scale(int noise_level) const;  // sqrt(abar_t)
    float noise_scale(int noise_level) const;   // sqrt(1 - abar_t)

    // x: [dim] one embedding row; noise: [dim] standard normal; out: [2 * dim]. noise_level in
    // [0, 999]. x and noise must be finite.
    void forward(const float* x, int noise_level, const float* noise, float* out) const;

private:
    NoiseAugConfig config_;
    std::vector<float> mean_, std_;  // empty: identity
    std::vector<float> signal_, noise_;  // per level
};

// ComfyUI's noise_augmentation in [0, 1] -> noise level round(999 * x), Python's round (half to
// even): 0.05 -> 50, 0.5 -> 500, 1 -> 999. Throws Error(Status::invalid_argument) outside [0, 1].
UNCLIP_CXX_API int noise_level_from_augmentation(double noise_augmentation);

}  // namespace unclip::nn
