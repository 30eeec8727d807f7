// Image preprocessing on the GPU against the CPU's loops, which share its per-pixel formulas:
// the VAE encoder's input exactly, the CLIP resamplings of both methods on several geometries.
#include <algorithm>
#include <cmath>
#include <string>

#include "cuda_test_support.hpp"
#include "pipeline/pipeline_gpu.hpp"
#include "test_support.hpp"

using namespace unclip;
using cuda_test::DeviceFloats;

namespace {

Image pattern(int width, int height, int channels, unsigned seed) {
    Image image;
    image.width = width;
    image.height = height;
    image.channels = channels;
    image.pixels.resize(static_cast<std::size_t>(width * height * channels));
    for (std::size_t i = 0; i < image.pixels.size(); ++i)
        image.pixels[i] = static_cast<std::uint8_t>((i * 131 + seed * 7 + (i / 97) * 13) % 256);
    return image;
}

// The image's bytes in device memory taken from `scratch`.
backend::ImageBytes on_device(const CudaBackend::Context& ctx, Scratch& scratch, const Image& image) {
    std::uint8_t* pixels = scratch.take<std::uint8_t>(image.pixels.size());
    CudaBackend::upload_bytes(ctx, image.pixels.data(), pixels, image.pixels.size());
    return {pixels, image.width, image.height, image.channels};
}

}  // namespace

TEST_SUITE("cuda") {

TEST_CASE("the VAE encoder's input on the GPU is the CPU's, for RGB, grey and RGBA crops") {
    CudaBackend::Context ctx;
    for (const int channels : {3, 1, 4}) {
        INFO(channels << " channels");
        const Image image = pattern(61, 45, channels, 3);
        const std::int64_t x0 = 2, y0 = 2, height = 40, width = 56;
        const backend::ImageBytes host{image.pixels.data(), image.width, image.height, image.channels};
        std::vector<float> expected(static_cast<std::size_t>(3 * height * width));
        for (int c = 0; c < 3; ++c)
            for (std::int64_t y = 0; y < height; ++y)
                for (std::int64_t x = 0; x < width; ++x)
                    expected[static_cast<std::size_t>((c * height + y) * width + x)] = backend::vae_input_at(host, x0, y0, c, y, x);
        Scratch scratch(Device::cuda, Scratch::bytes_for<std::uint8_t>(image.pixels.size()));
        const backend::ImageBytes device = on_device(ctx, scratch, image);
        const DeviceFloats out(3 * height * width);
        CudaBackend::vae_input(ctx, device, x0, y0, height, width, out.get());
        CHECK(out.read(ctx) == expected);
    }
}

TEST_CASE("CLIP preprocessing on the GPU matches the CPU for both methods, resized, cropped, stretched and as is") {
    CudaBackend::Context ctx;
    struct Case {
        int width, height, channels;
        ClipResize method;
        bool crop;
    };
    const Case cases[] = {
        {512, 384, 3, ClipResize::comfyui, true},   {300, 520, 3, ClipResize::comfyui, true},
        {224, 224, 3, ClipResize::comfyui, true},   {160, 100, 1, ClipResize::comfyui, false},
        {250, 250, 4, ClipResize::comfyui, true},   {512, 384, 3, ClipResize::diffusers, true},
        {300, 520, 4, ClipResize::diffusers, true}, {224, 224, 2, ClipResize::diffusers, true},
        {100, 160, 1, ClipResize::diffusers, true},
    };
    for (const Case& c : cases) {
        INFO(c.width << "x" << c.height << "x" << c.channels << (c.method == ClipResize::comfyui ? " comfyui" : " diffusers")
                     << (c.crop ? "" : " stretched"));
        const Image image = pattern(c.width, c.height, c.channels, static_cast<unsigned>(c.width));
        ClipPreprocessOptions options;
        options.method = c.method;
        options.crop = c.crop;
        const auto plan = detail::plan_clip_preprocess(image, options);
        const std::int64_t size = options.size;
        std::vector<float> expected(static_cast<std::size_t>(3 * size * size));
        detail::run_clip_preprocess(*plan, expected.data(), [](std::int64_t n, const auto& rows) { rows(0, n); });

        Scratch scratch(Device::cuda, pipeline::staged_clip_bytes(*plan));
        const backend::ClipResample device = pipeline::stage_clip_resample(ctx, scratch, *plan);
        const backend::ImageBytes& source = plan->resample.image;
        const DeviceFloats rows(3 * source.height * size), out(3 * size * size);
        CudaBackend::clip_resample(ctx, device, rows.get(), out.get());
        const std::vector<float> got = out.read(ctx);
        REQUIRE(cuda_test::all_finite(got));
        if (c.method == ClipResize::diffusers) {
            CHECK(got == expected);  // integer passes, then the same float operations
        } else {
            // The CPU compiler may fuse a tap's multiply-add; a sum that lands on a rounding boundary
            // of the 1/255 quantisation then moves by one step (1/255/std, about 0.015).
            std::size_t differing = 0;
            double worst = 0;
            for (std::size_t i = 0; i < got.size(); ++i) {
                const double d = std::abs(static_cast<double>(got[i]) - expected[i]);
                differing += d > 0;
                worst = std::max(worst, d);
            }
            MESSAGE(differing << " of " << got.size() << " values differ, by at most " << worst);
            CHECK(differing <= got.size() / 1000);
            CHECK(worst < 0.016);
        }
    }
}

}  // TEST_SUITE
