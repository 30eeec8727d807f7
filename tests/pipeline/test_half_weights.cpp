// Half-precision checkpoints run with their Linear/Conv2d matrices unwidened in memory (the GEMM
// widens them while packing), and low-memory mode pages the CLIP towers out after each encoding:
// neither may change a single pixel.
#include <cmath>
#include <cstdlib>

#include "test_support.hpp"
#include "tiny_model.hpp"
#include "unclip/backend/cpu.hpp"
#include "unclip/io/safetensors.hpp"
#include "unclip/pipeline.hpp"

using namespace unclip;

namespace {
// The tiny model with every tensor rounded to `stored` and written as `written`.
std::string rounded_model(const test::TempDir& dir, const std::string& name, DType stored, DType written) {
    const auto file = io::SafetensorsFile::open(test::tiny_model_path());
    const std::string path = (dir / name).string();
    io::SafetensorsWriter writer(path);
    for (const auto& e : file.entries()) writer.add(e.name, file.get(e.name).to(stored).to(written));
    writer.finish();
    return path;
}

std::vector<Image> generate_with(const std::string& model, bool low_memory, int threads, bool bf16 = false) {
    PipelineOptions o;
    o.model_path = model;
    o.allow_reduced = true;
    o.threads = threads;
    o.low_memory = low_memory;
    o.bf16_gemm = bf16;
    Pipeline pipeline(o);
    GenerateParams p;
    p.width = 64;
    p.height = 48;
    p.steps = 3;
    p.seed = 11;
    p.prompt = "a lighthouse";
    Image picture;
    picture.width = 40;
    picture.height = 30;
    picture.channels = 3;
    picture.pixels.resize(40 * 30 * 3);
    for (std::size_t i = 0; i < picture.pixels.size(); ++i) picture.pixels[i] = static_cast<std::uint8_t>((i * 29) % 253);
    p.images.push_back({picture, {}, 1.0f, 0.1f});
    auto first = pipeline.generate(p);
    auto second = pipeline.generate(p);  // after low-memory paging out, the towers read their weights again
    CHECK(first[0].pixels == second[0].pixels);
    return first;
}
}  // namespace

TEST_CASE("f16 and bf16 checkpoints give the pixels of their values in fp32, with and without low-memory mode") {
    test::TempDir dir;
    for (const DType half : {DType::f16, DType::bf16}) {
        CAPTURE(dtype_name(half));
        const auto as_half = rounded_model(dir, "half.safetensors", half, half);
        const auto as_f32 = rounded_model(dir, "f32.safetensors", half, DType::f32);
        const auto reference = generate_with(as_f32, false, 2);
        CHECK(generate_with(as_half, false, 2)[0].pixels == reference[0].pixels);
        CHECK(generate_with(as_half, true, 1)[0].pixels == reference[0].pixels);
    }
}

TEST_CASE("bf16 GEMMs change the pixels only slightly, and only on CPUs that have them") {
    const auto exact = generate_with(test::tiny_model_path(), false, 2);
    const auto bf16 = generate_with(test::tiny_model_path(), false, 2, true);
    double difference = 0;
    for (std::size_t i = 0; i < exact[0].pixels.size(); ++i)
        difference += std::abs(int(exact[0].pixels[i]) - int(bf16[0].pixels[i]));
    difference /= static_cast<double>(exact[0].pixels.size());
    MESSAGE("mean absolute pixel difference, bf16 vs fp32 GEMMs: " << difference);
    if (CpuBackend::has_bf16_gemm()) {
        CHECK(difference > 0.0);
        CHECK(difference < 3.0);  // of 255; measured 2.04 on this tiny random model
    } else {
        CHECK(difference == 0.0);
    }
}
