#include <cmath>
#include <string>

#include "sampling_support.hpp"
#include "unclip/nn/noise_aug.hpp"
#include "unclip/sampling/conditioning.hpp"

using namespace unclip;
using namespace unclip::sampling;
using nn::NoiseAugConvention;
using nn::NoiseAugmentor;

namespace {

std::vector<float> slice(const std::vector<float>& v, std::size_t begin, std::size_t count) {
    return std::vector<float>(v.begin() + static_cast<std::ptrdiff_t>(begin),
                              v.begin() + static_cast<std::ptrdiff_t>(begin + count));
}

std::vector<UnclipImage> fixture_images(const test::Fixture& fx, std::size_t index, const nlohmann::json& c) {
    std::vector<UnclipImage> images;
    for (std::size_t j = 0; j < c.at("images").size(); ++j) {
        const auto& spec = c.at("images")[j];
        UnclipImage image;
        image.embeds = test::values(fx["comfy.case" + std::to_string(index) + ".image" + std::to_string(j)]);
        image.strength = spec.at("strength").get<double>();
        image.noise_augmentation = spec.at("noise_augmentation").get<double>();
        images.push_back(std::move(image));
    }
    return images;
}

}  // namespace

TEST_SUITE("sampling") {

TEST_CASE("Noise augmentation matches diffusers' noise_image_embeddings at every level, with and without statistics") {
    const test::Fixture fx("sampling/noise_aug.safetensors");
    const auto config = fx.config();
    for (const auto& c : config.at("diffusers")) {
        const auto dim = c.at("dim").get<std::int64_t>();
        const std::string prefix = "diffusers." + std::to_string(dim);
        std::vector<float> mean, std;
        if (c.at("stats").get<bool>()) {
            mean = test::values(fx[prefix + ".mean"]);
            std = test::values(fx[prefix + ".std"]);
        }
        const NoiseAugmentor aug({dim, NoiseAugConvention::diffusers}, mean, std);
        CHECK(aug.adm_dim() == 2 * dim);
        for (const auto& level : c.at("levels")) {
            INFO("dim " << dim << ", level " << level.get<int>());
            std::vector<float> got = diffusers_noise_image_embeddings(aug, test::values(fx[prefix + ".embeds"]),
                                                                      level.get<int>(), test::values(fx[prefix + ".noise"]));
            CHECK_CLOSE(test::as_tensor(got), test::flat(fx[prefix + ".level" + std::to_string(level.get<int>())]),
                        test::kAdmTolerance);
        }
    }
}

TEST_CASE("The ComfyUI augmentation tables are LDM's float64 squaredcos_cap_v2 schedule rounded to float32") {
    const test::Fixture fx("sampling/noise_aug.safetensors");
    const NoiseAugmentor aug({1024});
    std::vector<float> signal, noise;
    for (int level = 0; level < NoiseAugmentor::kMaxNoiseLevel; ++level) {
        signal.push_back(aug.signal_scale(level));
        noise.push_back(aug.noise_scale(level));
    }
    CHECK_CLOSE(test::as_tensor(signal), fx["comfy.signal_scale"], 1e-7);
    CHECK_CLOSE(test::as_tensor(noise), fx["comfy.noise_scale"], 1e-7);
    // Reference doc 5.1: level 0 still adds noise with std 0.0064; level 999 is almost pure noise.
    CHECK(aug.noise_scale(0) == doctest::Approx(0.00642528).epsilon(1e-5));
    CHECK(aug.signal_scale(50) == doctest::Approx(0.99585375).epsilon(1e-6));
    CHECK(aug.signal_scale(999) == doctest::Approx(0.00004928).epsilon(1e-3));
}

TEST_CASE("unCLIP conditioning follows ComfyUI's unclip_adm: strengths, several images, the merge re-noise") {
    const test::Fixture fx("sampling/noise_aug.safetensors");
    const auto cases = fx.config().at("comfy");
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const auto& c = cases[i];
        INFO(c.dump());
        const NoiseAugmentor aug({c.at("dim").get<std::int64_t>()});
        std::vector<float> y =
            comfy_unclip_adm(aug, fixture_images(fx, i, c), std::stoull(c.at("seed").get<std::string>()));
        CHECK_CLOSE(test::as_tensor(y), test::flat(fx["comfy.case" + std::to_string(i) + ".adm"]), test::kAdmTolerance);
    }
}

TEST_CASE("Without an image the ADM vector is all zeros, level embedding included (the usual negative branch)") {
    const NoiseAugmentor aug({768});
    CHECK(comfy_unclip_adm(aug, {}, 42) == std::vector<float>(1536, 0.0f));
    UnclipImage passthrough{std::vector<float>(768, 0.3f), 0.0, 0.5};  // strength 0: the node passes through
    CHECK(comfy_unclip_adm(aug, {passthrough}, 42) == std::vector<float>(1536, 0.0f));
}

TEST_CASE("Strength scales both halves, and the noise is seed - 10's even at noise level 0") {
    const NoiseAugmentor aug({1024});
    std::vector<float> embedding(1024);
    for (std::size_t i = 0; i < embedding.size(); ++i) embedding[i] = std::sin(0.1f * static_cast<float>(i));
    const std::vector<float> one = comfy_unclip_adm(aug, {{embedding, 1.0, 0.0}}, 0);
    const std::vector<float> negative = comfy_unclip_adm(aug, {{embedding, -2.0, 0.0}}, 0);
    for (std::size_t i = 0; i < one.size(); ++i) CHECK(negative[i] == -2.0f * one[i]);
    // KSampler seed 0 -> torch.manual_seed(-10); level 0 -> sqrt(abar_0) x + sqrt(1 - abar_0) e.
    const std::vector<float> e = TorchGenerator(static_cast<std::uint64_t>(std::int64_t{-10})).randn(1024);
    for (std::size_t i = 0; i < 1024; i += 97)
        CHECK(one[i] == doctest::Approx(aug.signal_scale(0) * embedding[i] + aug.noise_scale(0) * e[i]).epsilon(1e-6));
    CHECK(one != std::vector<float>(one.size(), 0.0f));
    // The level-0 embedding: 512 ones then 512 zeros.
    CHECK(slice(one, 1024, 512) == std::vector<float>(512, 1.0f));
    CHECK(slice(one, 1536, 512) == std::vector<float>(512, 0.0f));
}

TEST_CASE("noise_augmentation maps to round(999 x), half to even, as ComfyUI") {
    CHECK(nn::noise_level_from_augmentation(0.0) == 0);
    CHECK(nn::noise_level_from_augmentation(0.05) == 50);
    CHECK(nn::noise_level_from_augmentation(0.25) == 250);  // 249.75
    CHECK(nn::noise_level_from_augmentation(0.5) == 500);   // 499.5 -> even
    CHECK(nn::noise_level_from_augmentation(0.7) == 699);   // 699.3
    CHECK(nn::noise_level_from_augmentation(1.0) == 999);
}

TEST_CASE("Bad unCLIP conditioning inputs are refused with the culprit named") {
    const NoiseAugmentor aug({16});
    const std::vector<float> embedding(16, 0.1f);
    CHECK_THROWS_STATUS(comfy_unclip_adm(aug, {{embedding, 1.0, -0.1}}, 0), Status::invalid_argument,
                        "unCLIP image 0 noise_augmentation must be in [0, 1] (got -0.1)");
    CHECK_THROWS_STATUS(comfy_unclip_adm(aug, {{embedding, 1.0, 1.5}}, 0), Status::invalid_argument,
                        "noise_augmentation must be in [0, 1] (got 1.5)");
    CHECK_THROWS_STATUS(comfy_unclip_adm(aug, {{embedding, 1.0, std::nan("")}}, 0), Status::invalid_argument,
                        "noise_augmentation must be finite");
    CHECK_THROWS_STATUS(comfy_unclip_adm(aug, {{embedding, 1.0, 0.0}, {embedding, 10.5, 0.0}}, 0),
                        Status::invalid_argument, "unCLIP image 1 strength must be in [-10, 10] (got 10.5)");
    CHECK_THROWS_STATUS(comfy_unclip_adm(aug, {{embedding, -11.0, 0.0}}, 0), Status::invalid_argument,
                        "strength must be in [-10, 10] (got -11)");
    CHECK_THROWS_STATUS(comfy_unclip_adm(aug, {{embedding, INFINITY, 0.0}}, 0), Status::invalid_argument,
                        "strength must be finite");
    std::vector<float> bad = embedding;
    bad[5] = std::nanf("");
    CHECK_THROWS_STATUS(comfy_unclip_adm(aug, {{bad, 1.0, 0.0}}, 0), Status::invalid_argument,
                        "unCLIP image 0 embeds[5] is not finite");
    CHECK_THROWS_STATUS(comfy_unclip_adm(aug, {{std::vector<float>(20, 0.0f), 1.0, 0.0}}, 0), Status::invalid_argument,
                        "20 values are not a whole number of rows of 16");
    CHECK_THROWS_STATUS(comfy_unclip_adm(aug, {}, 0, RandnKernel::avx2, 2.0), Status::invalid_argument,
                        "noise_augmentation must be in [0, 1] (got 2)");
    CHECK_THROWS_STATUS(diffusers_noise_image_embeddings(aug, embedding, 1000, embedding), Status::invalid_argument,
                        "noise_level must be in [0, 999] (got 1000)");
    CHECK_THROWS_STATUS(diffusers_noise_image_embeddings(aug, embedding, -1, embedding), Status::invalid_argument,
                        "noise_level must be in [0, 999] (got -1)");
    CHECK_THROWS_STATUS(diffusers_noise_image_embeddings(aug, embedding, 0, std::vector<float>(15)),
                        Status::invalid_argument, "noise: need 16 values (got 15)");
    CHECK_THROWS_STATUS(NoiseAugmentor({16}, std::vector<float>(16, 0.0f), std::vector<float>(16, 0.0f)),
                        Status::invalid_argument, "std[0] = 0 must be positive and finite");
    CHECK_THROWS_STATUS(NoiseAugmentor({16}, std::vector<float>(8, 0.0f), std::vector<float>(8, 1.0f)),
                        Status::invalid_argument, "mean and std need 16 values (got 8 and 8)");
    CHECK_THROWS_STATUS(aug.signal_scale(1000), Status::invalid_argument, "noise_level must be in [0, 999]");
}
}
