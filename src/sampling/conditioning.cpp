#include "unclip/sampling/conditioning.hpp"

#include <string>

#include "sampling/validate.hpp"
#include "unclip/error.hpp"

namespace unclip::sampling {

namespace {

std::size_t row_count(const std::vector<float>& embeds, std::int64_t dim, const std::string& what) {
    const auto width = static_cast<std::size_t>(dim);
    if (embeds.empty() || embeds.size() % width != 0)
        throw Error(Status::invalid_argument, what + ": " + std::to_string(embeds.size()) +
                                                  " values are not a whole number of rows of " + std::to_string(dim));
    detail::require_all_finite(what.c_str(), embeds.data(), embeds.size());
    return embeds.size() / width;
}

}  // namespace

std::vector<float> comfy_unclip_adm(const nn::NoiseAugmentor& aug, const std::vector<UnclipImage>& images,
                                    std::uint64_t seed, RandnKernel kernel, double merge_noise_augmentation) {
    const auto dim = static_cast<std::size_t>(aug.dim());
    const int merge_level = nn::noise_level_from_augmentation(merge_noise_augmentation);
    for (std::size_t i = 0; i < images.size(); ++i) {
        const std::string name = "unCLIP image " + std::to_string(i);
        detail::require_range((name + " strength").c_str(), images[i].strength, -kMaxUnclipStrength, kMaxUnclipStrength);
        detail::require_range((name + " noise_augmentation").c_str(), images[i].noise_augmentation, 0.0, 1.0);
        row_count(images[i].embeds, aug.dim(), name + " embeds");
    }

    std::vector<float> y(2 * dim, 0.0f);
    // model_base.py unclip_adm: noise_augmentor(..., seed=seed - 10) re-seeds the global CPU
    // generator each call and draws torch.randn([1, dim]): the same e for every row.
    TorchGenerator generator(seed - 10, kernel);
    const std::vector<float> noise = generator.randn(dim);
    std::vector<float> adm(2 * dim);
    int pairs = 0;
    for (const UnclipImage& image : images) {
        if (image.strength == 0.0) continue;  // nodes.py unCLIPConditioning returns the conditioning unchanged
        const int level = nn::noise_level_from_augmentation(image.noise_augmentation);
        const auto strength = static_cast<float>(image.strength);
        for (std::size_t row = 0; row < image.embeds.size() / dim; ++row) {
            aug.forward(image.embeds.data() + row * dim, level, noise.data(), adm.data());
            for (std::size_t i = 0; i < 2 * dim; ++i) y[i] += adm[i] * strength;  // torch.stack(...).sum(0)
            ++pairs;
        }
    }
    if (pairs > 1) {
        // Re-augment the summed noisy embedding at the merge level; the noise is randn_like on the
        // model device, i.e. (CPU) the generator continuing after the seed - 10 draw.
        const std::vector<float> merge_noise = generator.randn(dim);
        const std::vector<float> summed(y.begin(), y.begin() + static_cast<std::ptrdiff_t>(dim));
        aug.forward(summed.data(), merge_level, merge_noise.data(), y.data());
    }
    return y;
}

std::vector<float> diffusers_noise_image_embeddings(const nn::NoiseAugmentor& aug, const std::vector<float>& embeds,
                                                    int noise_level, const std::vector<float>& noise) {
    const auto dim = static_cast<std::size_t>(aug.dim());
    const std::size_t rows = row_count(embeds, aug.dim(), "image_embeds");
    if (noise.size() != embeds.size())
        throw Error(Status::invalid_argument, "noise: need " + std::to_string(embeds.size()) + " values (got " +
                                                  std::to_string(noise.size()) + ")");
    // pipeline_stable_unclip_img2img.py: 0 <= noise_level < num_train_timesteps (1000).
    if (noise_level < 0 || noise_level >= nn::NoiseAugmentor::kMaxNoiseLevel)
        throw Error(Status::invalid_argument, "noise_level must be in [0, " +
                                                  std::to_string(nn::NoiseAugmentor::kMaxNoiseLevel - 1) + "] (got " +
                                                  std::to_string(noise_level) + ")");
    std::vector<float> out(rows * 2 * dim);
    for (std::size_t row = 0; row < rows; ++row)
        aug.forward(embeds.data() + row * dim, noise_level, noise.data() + row * dim, out.data() + row * 2 * dim);
    return out;
}

}  // namespace unclip::sampling
