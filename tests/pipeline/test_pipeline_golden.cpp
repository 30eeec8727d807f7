// The whole image-variation graph against a reference composed from diffusers/transformers/open_clip
// classes with ComfyUI's semantics (tests/golden/pipeline.py), on the tiny demo model.
#include "test_support.hpp"
#include "tiny_model.hpp"
#include "unclip/backend/cpu.hpp"
#include "unclip/pipeline.hpp"

using namespace unclip;

namespace {
// 8-bit outputs: the reference truncates float pixels exactly like the pipeline, so only pixels whose
// float value lands within rounding of an integer boundary may differ by one step (issue 6: <= 1e-3).
constexpr double kDecodedImage = 1e-3;
// With bf16 GEMMs and attention (PipelineOptions::bf16_gemm) the CPU computes with 8-bit mantissas
// like a GPU's bf16 path: the CUDA backend's bf16 bound.
constexpr double kDecodedImageBf16 = 2e-2;

Tensor as_tensor(const Image& image) {
    Tensor t = Tensor::empty(DType::f32, {image.height, image.width, image.channels});
    for (std::size_t i = 0; i < image.pixels.size(); ++i) t.data<float>()[i] = image.pixels[i];
    return t;
}

void check_variations(bool bf16, double tolerance) {
    const test::Fixture fx("pipeline/tiny_variations.safetensors");
    const auto cfg = fx.config();
    REQUIRE(cfg.at("model_seed") == 7);  // test::tiny_model_path() writes the same weights
    PipelineOptions options;
    options.model_path = test::tiny_model_path();
    options.allow_reduced = true;
    options.bf16_gemm = bf16;
    Pipeline pipeline(options);

    const Tensor picture_values = fx["picture"];  // [224, 224, 3] in 0..255
    Image picture;
    picture.width = picture.height = 224;
    picture.channels = 3;
    for (std::int64_t i = 0; i < picture_values.numel(); ++i)
        picture.pixels.push_back(static_cast<std::uint8_t>(picture_values.data<const float>()[i]));

    for (const auto& c : cfg.at("cases")) {
        const std::string name = c.at("name");
        INFO("case " << name);
        GenerateParams p;
        p.images.push_back({picture, {}, c.at("strength").get<float>(), c.at("noise_augmentation").get<float>()});
        p.prompt = c.at("prompt");
        p.negative_prompt = c.at("negative");
        p.steps = c.at("steps");
        p.cfg_scale = c.at("cfg");
        p.seed = c.at("seed");
        p.width = c.at("width");
        p.height = c.at("height");
        p.sampler = "euler";
        p.scheduler = "normal";
        CHECK_CLOSE(as_tensor(pipeline.generate(p).front()), fx[name + ".image"], tolerance);
    }
}
}  // namespace

TEST_SUITE("pipeline") {

TEST_CASE("image variations match the reference composition of ComfyUI's unCLIP graph end to end") {
    check_variations(false, kDecodedImage);
}

TEST_CASE("with bf16 GEMMs and attention the end-to-end variations stay within the bf16 tolerance") {
    if (!CpuBackend::has_bf16_gemm()) MESSAGE("no AVX-512 BF16 on this CPU: this runs the fp32 path");
    check_variations(true, kDecodedImageBf16);
}

}  // TEST_SUITE
