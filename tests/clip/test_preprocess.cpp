#include <cmath>
#include <cstring>

#include "io/clip_preprocess_detail.hpp"
#include "unclip/backend/cpu.hpp"

#include "test_support.hpp"
#include "unclip/clip_preprocess.hpp"
#include "unclip/image.hpp"

using namespace unclip;

namespace {
// ComfyUI's float pipeline: our float32 arithmetic follows PyTorch's, but PyTorch's kernels may be
// compiled with FMA, which can move a value across a 1/255 rounding boundary: one such pixel
// changes by 1/255/std (0.015) and adds about 1e-4 of relative L2 on a 32x32 image.
constexpr double kPreprocessComfy = 5e-4;
// diffusers' PIL path is integer arithmetic up to the last float32 step: only rounding differs.
constexpr double kPreprocessDiffusers = 1e-6;

Image fixture_image(const Tensor& pixels) {
    Image image;
    image.height = static_cast<int>(pixels.dim(0));
    image.width = static_cast<int>(pixels.dim(1));
    image.channels = static_cast<int>(pixels.dim(2));
    const float* p = pixels.data<float>();
    for (std::int64_t i = 0; i < pixels.numel(); ++i) image.pixels.push_back(static_cast<std::uint8_t>(p[i]));
    return image;
}

// Pixels further than one 1/255 step apart (after normalisation) from the reference.
std::int64_t far_pixels(const Tensor& a, const Tensor& b) {
    std::int64_t n = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i)
        n += std::abs(a.data<float>()[i] - b.data<float>()[i]) > 1.0f / 255.0f / 0.26f + 1e-5f;
    return n;
}
}  // namespace

TEST_SUITE("clip") {

TEST_CASE("CLIP preprocessing matches ComfyUI and diffusers on odd, non-square, RGBA and grey images") {
    const test::Fixture fx("clip/preprocess.safetensors");
    const auto cases = fx.config().at("cases");
    REQUIRE(cases.size() >= 8);
    for (const auto& c : cases) {
        const std::string name = c.at("name");
        INFO("case " << name);
        const Image image = fixture_image(fx[name + ".pixels"]);
        ClipPreprocessOptions o;
        o.size = c.at("size");
        const Tensor comfy = clip_preprocess(image, o);
        CHECK_CLOSE(comfy, fx[name + ".comfyui"], kPreprocessComfy);
        CHECK(far_pixels(comfy, fx[name + ".comfyui"]) == 0);
        o.crop = false;
        CHECK_CLOSE(clip_preprocess(image, o), fx[name + ".comfyui_stretch"], kPreprocessComfy);
        o.crop = true;
        o.method = ClipResize::diffusers;
        CHECK_CLOSE(clip_preprocess(image, o), fx[name + ".diffusers"], kPreprocessDiffusers);
    }
}

TEST_CASE("CLIP preprocessing spread over threads (the pipeline's) gives the serial bits for both methods") {
    const test::Fixture fx("clip/preprocess.safetensors");
    const CpuBackend::Context pool(3);
    const auto cases = fx.config().at("cases");  // a copy: config() returns a temporary
    for (const auto& c : cases) {
        const std::string name = c.at("name");
        INFO("case " << name);
        const Image image = fixture_image(fx[name + ".pixels"]);
        for (const ClipResize method : {ClipResize::comfyui, ClipResize::diffusers}) {
            ClipPreprocessOptions o;
            o.size = c.at("size");
            o.method = method;
            const Tensor serial = clip_preprocess(image, o);
            Tensor threaded = Tensor::empty(DType::f32, serial.shape());
            std::int64_t calls = 0;
            detail::clip_preprocess(image, o, threaded.data<float>(),
                                    [&](std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& rows) {
                                        ++calls;
                                        pool.parallel_for(n, 1, rows);
                                    });
            CHECK(calls == 2);  // both passes went through the runner
            CHECK(std::memcmp(threaded.raw_data(), serial.raw_data(), serial.nbytes()) == 0);
        }
    }
}

TEST_CASE("Images are decoded from PNG with their channel count and refused when too large before allocating") {
    // A 1x1 greyscale PNG and a 2x1 RGBA PNG, as bytes.
    const unsigned char grey_png[] = {0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
                                      0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00,
                                      0x00, 0x3a, 0x7e, 0x9b, 0x55, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78,
                                      0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x48, 0xaf, 0xa4, 0x71, 0x00,
                                      0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
    const Image grey = decode_image(grey_png, sizeof(grey_png));
    CHECK(grey.width == 1);
    CHECK(grey.height == 1);
    CHECK(grey.channels == 1);
    CHECK(grey.pixels.size() == 1);
    // The same header claiming 16384x16384: refused from the header, before any pixel buffer.
    unsigned char huge[sizeof(grey_png)];
    std::copy(grey_png, grey_png + sizeof(grey_png), huge);
    huge[18] = 0x40, huge[19] = 0x00;  // IHDR width, big-endian: 0x4000
    huge[22] = 0x40, huge[23] = 0x00;  // height
    CHECK_THROWS_STATUS(decode_image(huge, sizeof(huge)), Status::bad_image, "16384x16384");
    CHECK_THROWS_STATUS(decode_image("not an image", 12), Status::bad_image, "not a decodable image");
    // A JPEG whose Huffman table declares 512 codes: stb 2.27 would write past its tables.
    std::string jpeg = "\xFF\xD8\xFF\xC4";
    jpeg += std::string("\x00\x13\x00", 3) + std::string(16, '\x20');
    CHECK_THROWS_STATUS(decode_image(jpeg.data(), jpeg.size()), Status::bad_image, "Huffman table declares 512 codes");
    CHECK_THROWS_STATUS(decode_image(nullptr, 0), Status::bad_image, "empty");
    test::TempDir dir;
    CHECK_THROWS_STATUS(load_image(dir / "missing.png"), Status::io, "missing.png");
    test::write_bytes(dir / "garbage.png", "\x89PNG garbage");
    CHECK_THROWS_STATUS(load_image(dir / "garbage.png"), Status::bad_image, "garbage.png");
}

TEST_CASE("A 1x1 image preprocesses to a constant image and oversized buffers are refused") {
    const std::uint8_t px[3] = {10, 128, 250};
    const Image one = image_from_pixels(px, 1, 1, 3);
    for (const ClipResize method : {ClipResize::comfyui, ClipResize::diffusers}) {
        ClipPreprocessOptions o;
        o.method = method;
        const Tensor t = clip_preprocess(one, o);
        CHECK(t.shape() == Shape{1, 3, 224, 224});
        for (int c = 0; c < 3; ++c) {
            const float expected = (px[c] / 255.0f - o.mean[static_cast<std::size_t>(c)]) / o.std[static_cast<std::size_t>(c)];
            const float* plane = t.data<float>() + c * 224 * 224;
            CHECK(std::all_of(plane, plane + 224 * 224, [&](float v) { return std::abs(v - expected) < 1e-5f; }));
        }
    }
    CHECK_THROWS_STATUS(image_from_pixels(px, 16384, 16384, 3), Status::bad_image, "16384x16384");
    CHECK_THROWS_STATUS(image_from_pixels(px, 1, 1, 5), Status::invalid_argument, "channels");
    CHECK_THROWS_STATUS(image_from_pixels(nullptr, 1, 1, 3), Status::invalid_argument, "null");
    CHECK_THROWS_STATUS(image_from_pixels(px, 0, 1, 3), Status::invalid_argument, "0x1");
    CHECK_THROWS_STATUS(image_from_pixels(px, 2, 1, 3, 3), Status::invalid_argument, "row_stride");
    ClipPreprocessOptions bad;
    bad.size = 0;
    CHECK_THROWS_STATUS(clip_preprocess(one, bad), Status::invalid_argument, "size");
    CHECK_THROWS_STATUS(clip_preprocess(Image{}, ClipPreprocessOptions{}), Status::invalid_argument, "image is empty");
}

}  // TEST_SUITE
