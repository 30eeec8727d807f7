#pragma once
// The ADM vector the unCLIP UNet takes (its `y`, diffusers' class_labels), built as ComfyUI's
// unCLIPConditioning node and SD21UNCLIP.encode_adm build it (nodes.py, comfy/model_base.py
// unclip_adm), or as diffusers' StableUnCLIPImg2ImgPipeline does:
//
//   nn::NoiseAugmentor aug({1024});                              // -h
//   std::vector<UnclipImage> positive = {{embedding, 1.0, 0.1}}; // strength 1, noise_augmentation 0.1
//   std::vector<float> y_pos = comfy_unclip_adm(aug, positive, seed);   // [2048]
//   std::vector<float> y_neg = comfy_unclip_adm(aug, {}, seed);         // zeros: no image on the negative
//
// ComfyUI semantics, per conditioning branch (positive and negative each get their own list):
//  * no image (or only strength-0 ones, which the node passes through) -> all 2*dim values 0,
//    the training-time dropout value, level embedding included;
//  * every embedding row of every image is augmented at round(999 * noise_augmentation) with the
//    same noise e = torch.randn([1, dim]) from a CPU generator seeded with seed - 10 (re-seeded
//    per call), and [z, level embedding] is multiplied by the strength;
//  * one row: that is y. Several rows: their sum (no normalisation); its first dim values are
//    augmented again at round(999 * merge_noise_augmentation) (0.05 -> level 50) with fresh noise
//    and get that level's embedding (not scaled). ComfyUI draws that noise from the model device's
//    generator: on a CPU device that is the same generator continuing after its last draw, which
//    is what is used here (on CUDA, ComfyUI uses the Philox stream instead).
// Errors: Error(Status::invalid_argument) naming the bad field. Thread-safety: pure functions.
#include <cstdint>
#include <vector>

#include "unclip/detail/export.hpp"
#include "unclip/nn/noise_aug.hpp"
#include "unclip/sampling/rng.hpp"

namespace unclip::sampling {

// One unCLIPConditioning node application.
struct UnclipImage {
    std::vector<float> embeds;        // [rows, dim] row-major, rows >= 1 (CLIPVisionEncode image_embeds)
    double strength = 1.0;            // [-10, 10] as the node; 0: the node passes through
    double noise_augmentation = 0.0;  // [0, 1]
};

inline constexpr double kMaxUnclipStrength = 10.0;  // the node's range is [-10, 10]

// y for one conditioning branch, ComfyUI semantics (above): [aug.adm_dim()]. `seed` is the
// KSampler seed; the augmentation noise uses seed - 10 (mod 2^64, as torch.manual_seed maps it).
UNCLIP_CXX_API std::vector<float> comfy_unclip_adm(const nn::NoiseAugmentor& aug, const std::vector<UnclipImage>& images,
                                                   std::uint64_t seed, RandnKernel kernel = RandnKernel::avx2,
                                                   double merge_noise_augmentation = 0.05);

// diffusers StableUnCLIPImg2ImgPipeline.noise_image_embeddings: every row of embeds ([rows, dim])
// augmented at the integer noise_level in [0, 999] with its own row of noise ([rows, dim]; the
// pipeline draws randn_tensor(embeds.shape, generator) before the latents). Returns
// [rows, 2 * dim]; the pipeline's negative branch is zeros of that shape. Use an augmentor with
// NoiseAugConvention::diffusers and the folder's image_normalizer statistics to match diffusers.
UNCLIP_CXX_API std::vector<float> diffusers_noise_image_embeddings(const nn::NoiseAugmentor& aug,
                                                                   const std::vector<float>& embeds, int noise_level,
                                                                   const std::vector<float>& noise);

}  // namespace unclip::sampling
