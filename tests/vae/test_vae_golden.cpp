#include <cmath>
#include <cstring>

#include "cpu_reading_upsampled.hpp"
#include "fixture_configs.hpp"
#include "test_support.hpp"
#include "unclip/nn/instances.hpp"

using namespace unclip;

namespace {
// Tiled and whole-image passes differ by design: every tile computes its own GroupNorm statistics
// and mid-block attention and sees zero padding at its edges. With random weights GroupNorm
// amplifies that (measured 0.05-0.7 rel. L2 here), so the tests check what tiling must guarantee
// exactly instead: one covering tile is the whole pass, a region only one tile covers is that
// tile's own result, and no seam steps above the whole image's largest step.
// A region covered by one tile is (m * v) / m: one rounding step per operation.
constexpr double kSingleCoverage = 1e-6;
constexpr double kSeamStepRatio = 1.0;

// The [x0, x1) columns of an NCHW tensor.
Tensor columns(const Tensor& t, std::int64_t x0, std::int64_t x1) { return t.slice(3, x0, x1).clone(); }

// Largest |image[x+1] - image[x]| over all rows, channels and the given columns.
double max_horizontal_step(const Tensor& image, std::int64_t x_begin, std::int64_t x_end) {
    const float* p = image.data<const float>();
    const std::int64_t rows = image.dim(0) * image.dim(1) * image.dim(2), width = image.dim(3);
    double step = 0;
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t x = x_begin; x < x_end; ++x) step = std::max(step, std::fabs(double(p[r * width + x + 1]) - p[r * width + x]));
    return step;
}

struct TinyVae {
    test::Fixture fx{"vae/vae_tiny.safetensors"};
    nn::VaeConfig cfg = test::vae_config(fx.config());
    nn::WeightMap weights = fx.weights("vae.");
    nn::AutoencoderKL<CpuBackend, float> vae{cfg, nn::load_vae_encoder<float>(weights, "", cfg),
                                             nn::load_vae_decoder<float>(weights, "", cfg)};
};

Tensor decode(const TinyVae& t, const Tensor& latent, const nn::VaeTiling* tiling) {
    const std::int64_t f = t.cfg.downscale();
    Tensor image = Tensor::empty(DType::f32, {latent.dim(0), 3, latent.dim(2) * f, latent.dim(3) * f});
    std::fill(image.data<float>(), image.data<float>() + image.numel(), NAN);
    CpuBackend::Context ctx(2);
    Scratch scratch(tiling ? t.vae.tiled_decode_scratch_bytes(latent.shape(), *tiling) : t.vae.decode_scratch_bytes(latent.shape()));
    if (tiling) t.vae.decode_tiled(ctx, view_of<const float>(latent), view_of<float>(image), *tiling, scratch);
    else t.vae.decode(ctx, view_of<const float>(latent), view_of<float>(image), scratch);
    CHECK(scratch.used() == 0);
    return image;
}

Tensor encode(const TinyVae& t, const Tensor& image, const nn::VaeTiling* tiling) {
    const std::int64_t f = t.cfg.downscale();
    Tensor moments = Tensor::empty(DType::f32, {image.dim(0), 8, image.dim(2) / f, image.dim(3) / f});
    std::fill(moments.data<float>(), moments.data<float>() + moments.numel(), NAN);
    CpuBackend::Context ctx(2);
    Scratch scratch(tiling ? t.vae.tiled_encode_scratch_bytes(image.shape(), *tiling) : t.vae.encode_scratch_bytes(image.shape()));
    if (tiling) t.vae.encode_tiled(ctx, view_of<const float>(image), view_of<float>(moments), *tiling, scratch);
    else t.vae.encode(ctx, view_of<const float>(image), view_of<float>(moments), scratch);
    CHECK(scratch.used() == 0);
    return moments;
}
}  // namespace

TEST_SUITE("vae") {

TEST_CASE("VAE decoder matches diffusers AutoencoderKL post_quant_conv + decoder on a non-square latent") {
    const TinyVae t;
    CHECK_CLOSE(decode(t, t.fx["latent"], nullptr), t.fx["decoded"], test::kFp32Golden);
}

TEST_CASE("VAE decoder with the upsampling read through by the convolution (the CUDA modules' path) gives the same bits") {
    const TinyVae t;
    const nn::AutoencoderKL<test::CpuReadingUpsampled, float> fused{t.cfg, std::nullopt,
                                                                    nn::load_vae_decoder<float>(t.weights, "", t.cfg)};
    const Tensor latent = t.fx["latent"];
    const Tensor want = decode(t, latent, nullptr);
    Tensor got = Tensor::empty(DType::f32, want.shape());
    CpuBackend::Context ctx(2);
    Scratch scratch(fused.decode_scratch_bytes(latent.shape()));
    fused.decode(ctx, view_of<const float>(latent), view_of<float>(got), scratch);
    CHECK(scratch.used() == 0);
    CHECK(std::memcmp(got.data<const float>(), want.data<const float>(), want.nbytes()) == 0);
    CHECK_CLOSE(got, t.fx["decoded"], test::kFp32Golden);
}

TEST_CASE("VAE encoder matches diffusers AutoencoderKL encoder + quant_conv for a batch of two non-square images") {
    const TinyVae t;
    CHECK_CLOSE(encode(t, t.fx["image"], nullptr), t.fx["moments"], test::kFp32Golden);
}

TEST_CASE("tiled VAE decode equals the whole decode for one tile, each tile alone where it alone covers, and has no seams") {
    const TinyVae t;
    const Tensor smooth = t.fx["smooth_latent"];  // [1, 4, 24, 40]: tiles at latent x = 0 and 8
    const nn::VaeTiling tiling{32, 16};
    const Tensor whole = decode(t, smooth, nullptr);
    const Tensor tiled = decode(t, smooth, &tiling);
    MESSAGE("tiled vs whole decode (random weights): " << test::compare(tiled, whole).describe());
    // Latent columns [0, 8) are covered by the first tile only: pixels [0, 64).
    const Tensor first_tile = decode(t, columns(smooth, 0, 32), nullptr);
    CHECK_CLOSE(columns(tiled, 0, 64), columns(first_tile, 0, 64), kSingleCoverage);
    const Tensor last_tile = decode(t, columns(smooth, 8, 40), nullptr);  // alone on pixels [256, 320)
    CHECK_CLOSE(columns(tiled, 256, 320), columns(last_tile, 192, 256), kSingleCoverage);
    const double whole_step = max_horizontal_step(whole, 0, whole.dim(3) - 1);
    INFO("whole-image largest step " << whole_step);
    CHECK(max_horizontal_step(tiled, 60, 68) <= kSeamStepRatio * whole_step);
    CHECK(max_horizontal_step(tiled, 252, 260) <= kSeamStepRatio * whole_step);

    const nn::VaeTiling single{64, 8};
    const Tensor one_tile = decode(t, smooth, &single);
    CHECK(std::memcmp(one_tile.raw_data(), whole.raw_data(), whole.nbytes()) == 0);
}

TEST_CASE("tiled VAE encode equals each tile's own encode where it alone covers") {
    const TinyVae t;
    Tensor image = Tensor::empty(DType::f32, {1, 3, 64, 128});
    float* p = image.data<float>();
    for (std::int64_t c = 0; c < 3; ++c)
        for (std::int64_t y = 0; y < 64; ++y)
            for (std::int64_t x = 0; x < 128; ++x)
                p[(c * 64 + y) * 128 + x] = 0.8f * std::sin(0.05f * x + c) * std::cos(0.04f * y - c);
    const nn::VaeTiling tiling{64, 32};  // pixel tiles at x = 0, 32, 64
    const Tensor tiled = encode(t, image, &tiling);
    MESSAGE("tiled vs whole encode (random weights): " << test::compare(tiled, encode(t, image, nullptr)).describe());
    const Tensor first = encode(t, columns(image, 0, 64), nullptr);  // alone on latent columns [0, 4)
    CHECK_CLOSE(columns(tiled, 0, 4), columns(first, 0, 4), kSingleCoverage);
    const Tensor last = encode(t, columns(image, 64, 128), nullptr);  // alone on latent columns [12, 16)
    CHECK_CLOSE(columns(tiled, 12, 16), columns(last, 4, 8), kSingleCoverage);
}

TEST_CASE("VAE refuses latents and images of the wrong shape and bad tilings") {
    const TinyVae t;
    CHECK_THROWS_STATUS(t.vae.decode_scratch_bytes({1, 3, 8, 8}), Status::invalid_argument, "latent [1, 3, 8, 8]");
    CHECK_THROWS_STATUS(t.vae.encode_scratch_bytes({1, 3, 30, 32}), Status::invalid_argument, "multiples of 8");
    CHECK_THROWS_STATUS(t.vae.tiled_decode_scratch_bytes({1, 4, 8, 8}, nn::VaeTiling{8, 8}), Status::invalid_argument,
                        "overlap 8");
    auto cfg = t.cfg;
    cfg.ch = 16;
    CHECK_THROWS_STATUS(nn::load_vae_decoder<float>(t.weights, "", cfg), Status::bad_model, "tensor 'decoder.");
}

}  // TEST_SUITE
