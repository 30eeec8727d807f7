// CLIP image preprocessing as ComfyUI and diffusers do it (see clip_preprocess.hpp). Both resizes
// are separable: the width pass runs over every input row but only for the output columns that
// survive the centre crop, then the height pass only for the surviving rows; per output pixel the
// arithmetic is the reference's, so skipping cropped-away pixels changes nothing.
#include "unclip/clip_preprocess.hpp"

#include "io/clip_preprocess_detail.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace unclip {
namespace {

using detail::AxisWeights;
using backend::kPilPrecisionBits;

// PyTorch UpSampleKernel.cpp, antialiased bicubic for float tensors (HelperInterpCubic::aa_filter
// with a = -0.5, _compute_indices_min_size_weights_aa), keeping its float/double mix: the scale,
// centre and weights are float, some intermediate sums are double.
float torch_cubic(float x) {
    constexpr float a = -0.5f;
    x = std::abs(x);
    if (x < 1.0f) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2.0f) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0.0f;
}

AxisWeights<float> torch_aa_bicubic(std::int64_t in, std::int64_t out) {
    AxisWeights<float> r;
    const float scale = static_cast<float>(in) / static_cast<float>(out);
    const float support = scale >= 1.0f ? static_cast<float>(2.0 * static_cast<double>(scale)) : 2.0f;
    r.taps = static_cast<std::int64_t>(std::ceil(support)) * 2 + 1;
    const float invscale = scale >= 1.0f ? static_cast<float>(1.0 / static_cast<double>(scale)) : 1.0f;
    r.first.resize(static_cast<std::size_t>(out));
    r.count.resize(static_cast<std::size_t>(out));
    r.w.assign(static_cast<std::size_t>(out * r.taps), 0.0f);
    for (std::int64_t i = 0; i < out; ++i) {
        const float center = static_cast<float>(static_cast<double>(scale) * (static_cast<double>(i) + 0.5));
        const std::int64_t xmin =
            std::max<std::int64_t>(static_cast<std::int64_t>(static_cast<double>(center - support) + 0.5), 0);
        std::int64_t xsize =
            std::min<std::int64_t>(static_cast<std::int64_t>(static_cast<double>(center + support) + 0.5), in) - xmin;
        xsize = std::clamp<std::int64_t>(xsize, 0, r.taps);
        float* w = r.w.data() + i * r.taps;
        float total = 0.0f;
        for (std::int64_t j = 0; j < xsize; ++j) {
            const float offset = static_cast<float>(j + xmin) - center;
            w[j] = torch_cubic(static_cast<float>((static_cast<double>(offset) + 0.5) * static_cast<double>(invscale)));
            total += w[j];
        }
        if (total != 0.0f)
            for (std::int64_t j = 0; j < xsize; ++j) w[j] /= total;
        r.first[static_cast<std::size_t>(i)] = xmin;
        r.count[static_cast<std::size_t>(i)] = xsize;
    }
    return r;
}

// Pillow's ImagingResample (libImaging/Resample.c): bicubic a = -0.5 in double, coefficients then
// turned into 22-bit fixed point for 8-bit images, each pass rounding and clamping to 8 bits.
double pil_cubic(double x) {
    constexpr double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

AxisWeights<std::int32_t> pil_bicubic(std::int64_t in, std::int64_t out) {
    AxisWeights<std::int32_t> r;
    const double scale = static_cast<double>(in) / static_cast<double>(out);
    const double filterscale = std::max(scale, 1.0);
    const double support = 2.0 * filterscale;
    r.taps = static_cast<std::int64_t>(std::ceil(support)) * 2 + 1;
    r.first.resize(static_cast<std::size_t>(out));
    r.count.resize(static_cast<std::size_t>(out));
    r.w.assign(static_cast<std::size_t>(out * r.taps), 0);
    std::vector<double> k(static_cast<std::size_t>(r.taps));
    for (std::int64_t i = 0; i < out; ++i) {
        const double center = (static_cast<double>(i) + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        std::int64_t xmin = static_cast<std::int64_t>(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        std::int64_t xmax = static_cast<std::int64_t>(center + support + 0.5);
        if (xmax > in) xmax = in;
        xmax -= xmin;
        double total = 0.0;
        for (std::int64_t x = 0; x < xmax; ++x) {
            k[static_cast<std::size_t>(x)] = pil_cubic((static_cast<double>(x + xmin) - center + 0.5) * ss);
            total += k[static_cast<std::size_t>(x)];
        }
        for (std::int64_t x = 0; x < xmax; ++x) {
            double v = k[static_cast<std::size_t>(x)];
            if (total != 0.0) v /= total;
            const double fixed = v * (1 << kPilPrecisionBits);
            r.w[static_cast<std::size_t>(i * r.taps + x)] =
                static_cast<std::int32_t>(v < 0 ? -0.5 + fixed : 0.5 + fixed);
        }
        r.first[static_cast<std::size_t>(i)] = xmin;
        r.count[static_cast<std::size_t>(i)] = xmax;
    }
    return r;
}

void check(const Image& image, const ClipPreprocessOptions& o) {
    check_image_pixels(image, "clip_preprocess");
    if (o.size < 1 || o.size > 4096)
        throw Error(Status::invalid_argument, "clip_preprocess: size must be 1..4096, got " + std::to_string(o.size));
    for (const float s : o.std)
        if (!(s > 0.0f)) throw Error(Status::invalid_argument, "clip_preprocess: std must be positive");
}

void plan_comfyui(const Image& image, const ClipPreprocessOptions& o, detail::ClipResamplePlan& plan) {
    const std::int64_t in_h = image.height, in_w = image.width, size = o.size;
    std::int64_t out_h = size, out_w = size;
    const bool resize = !(in_h == size && in_w == size);
    if (resize && o.crop) {
        // Python: scale = size / min(H, W); (round(scale * H), round(scale * W)), ties to even.
        const double scale = static_cast<double>(size) / static_cast<double>(std::min(in_h, in_w));
        out_h = static_cast<std::int64_t>(std::nearbyint(scale * static_cast<double>(in_h)));
        out_w = static_cast<std::int64_t>(std::nearbyint(scale * static_cast<double>(in_w)));
    }
    if (!resize) out_h = in_h, out_w = in_w;
    plan.resample.top = (out_h - size) / 2;
    plan.resample.left = (out_w - size) / 2;
    if (out_w != in_w) plan.torch_width = torch_aa_bicubic(in_w, out_w);
    if (out_h != in_h) plan.torch_height = torch_aa_bicubic(in_h, out_h);
    plan.resample.torch_width = plan.torch_width.view();
    plan.resample.torch_height = plan.torch_height.view();
}

// The width pass into rows [3, image height, size] of Row, then the height pass into out.
template <class Row, class WidthPass, class HeightPass>
void run_passes(const backend::ClipResample& r, float* out, const detail::ParallelRows& parallel, WidthPass width,
                HeightPass height) {
    const std::int64_t in_h = r.image.height, size = r.size;
    std::vector<Row> rows(static_cast<std::size_t>(3 * in_h * size));
    parallel(3 * in_h, [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t row = r0; row < r1; ++row)
            for (std::int64_t x = 0; x < size; ++x)
                rows[static_cast<std::size_t>(row * size + x)] = width(static_cast<int>(row / in_h), row % in_h, x);
    });
    parallel(3 * size, [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t row = r0; row < r1; ++row)
            for (std::int64_t x = 0; x < size; ++x)
                out[row * size + x] = height(rows.data(), static_cast<int>(row / size), row % size, x);
    });
}

void run_comfyui(const backend::ClipResample& r, float* out, const detail::ParallelRows& parallel) {
    // LoadImage's float32 image: u8 / 255, looked up (the same values) instead of divided per tap.
    float unit[256];
    for (int i = 0; i < 256; ++i) unit[i] = static_cast<float>(i) / 255.0f;
    run_passes<float>(
        r, out, parallel, [&](int c, std::int64_t y, std::int64_t x) { return backend::torch_width_pass(r, unit, c, y, x); },
        [&](const float* rows, int c, std::int64_t y, std::int64_t x) { return backend::torch_height_pass(r, rows, c, y, x); });
}

// transformers convert_to_rgb: an image with alpha is composited over opaque white with
// Pillow's Image.alpha_composite (libImaging/AlphaComposite.c, 7-bit fixed point, /255 by shifts).
Image composite_on_white(const Image& image) {
    if (image.channels == 1 || image.channels == 3) return image;
    Image rgb;
    rgb.width = image.width;
    rgb.height = image.height;
    rgb.channels = 3;
    rgb.pixels.resize(static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height) * 3);
    constexpr std::uint32_t kBits = 7;
    auto div255 = [](std::uint32_t v) { return ((v >> 8) + v) >> 8; };
    const std::size_t n = static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint8_t* src = image.pixels.data() + i * static_cast<std::size_t>(image.channels);
        const std::uint32_t alpha = src[image.channels - 1];
        for (int c = 0; c < 3; ++c) {
            const std::uint32_t value = src[image.channels == 2 ? 0 : c];
            std::uint32_t result = 255;
            if (alpha != 0) {
                const std::uint32_t out_alpha = alpha * 255 + 255 * (255 - alpha);
                const std::uint32_t coef1 = alpha * 255 * 255 * (1u << kBits) / out_alpha;
                const std::uint32_t coef2 = 255 * (1u << kBits) - coef1;
                result = div255(value * coef1 + 255 * coef2 + (0x80u << kBits)) >> kBits;
            }
            rgb.pixels[i * 3 + static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(result);
        }
    }
    return rgb;
}

void plan_diffusers(const Image& original, const ClipPreprocessOptions& o, detail::ClipResamplePlan& plan) {
    if (original.channels == 2 || original.channels == 4) {
        plan.composited = composite_on_white(original);
        plan.resample.image = {plan.composited.pixels.data(), plan.composited.width, plan.composited.height,
                               plan.composited.channels};
    }
    const std::int64_t in_h = original.height, in_w = original.width, size = o.size;
    // transformers get_resize_output_image_size (default_to_square=False): the short side becomes
    // size, the long one int(size * long / short).
    const std::int64_t short_side = std::min(in_h, in_w), long_side = std::max(in_h, in_w);
    const auto new_long = static_cast<std::int64_t>(static_cast<double>(size) * static_cast<double>(long_side) /
                                                    static_cast<double>(short_side));
    const std::int64_t out_h = in_h <= in_w ? size : new_long, out_w = in_h <= in_w ? new_long : size;
    plan.resample.top = (out_h - size) / 2;
    plan.resample.left = (out_w - size) / 2;
    if (out_w != in_w) plan.pil_width = pil_bicubic(in_w, out_w);
    if (out_h != in_h) plan.pil_height = pil_bicubic(in_h, out_h);
    plan.resample.pil_width = plan.pil_width.view();
    plan.resample.pil_height = plan.pil_height.view();
}

void run_diffusers(const backend::ClipResample& r, float* out, const detail::ParallelRows& parallel) {
    run_passes<std::uint8_t>(
        r, out, parallel, [&](int c, std::int64_t y, std::int64_t x) { return backend::pil_width_pass(r, c, y, x); },
        [&](const std::uint8_t* rows, int c, std::int64_t y, std::int64_t x) {
            return backend::pil_height_pass(r, rows, c, y, x);
        });
}

}  // namespace

std::unique_ptr<detail::ClipResamplePlan> detail::plan_clip_preprocess(const Image& image,
                                                                       const ClipPreprocessOptions& options) {
    check(image, options);
    auto plan = std::make_unique<ClipResamplePlan>();
    backend::ClipResample& r = plan->resample;
    r.image = {image.pixels.data(), image.width, image.height, image.channels};
    r.size = options.size;
    r.pil = options.method == ClipResize::diffusers;
    for (std::size_t c = 0; c < 3; ++c) r.mean[c] = options.mean[c], r.std[c] = options.std[c];
    if (r.pil) plan_diffusers(image, options, *plan);
    else plan_comfyui(image, options, *plan);
    return plan;
}

void detail::run_clip_preprocess(const ClipResamplePlan& plan, float* out, const ParallelRows& parallel) {
    if (!out) throw Error(Status::invalid_argument, "clip_preprocess: output is null");
    if (plan.resample.pil) run_diffusers(plan.resample, out, parallel);
    else run_comfyui(plan.resample, out, parallel);
}

void detail::clip_preprocess(const Image& image, const ClipPreprocessOptions& options, float* out,
                             const ParallelRows& parallel) {
    if (!out) throw Error(Status::invalid_argument, "clip_preprocess: output is null");
    run_clip_preprocess(*plan_clip_preprocess(image, options), out, parallel);
}

void clip_preprocess(const Image& image, const ClipPreprocessOptions& options, float* out) {
    detail::clip_preprocess(image, options, out, [](std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& rows) {
        rows(0, n);
    });
}

Tensor clip_preprocess(const Image& image, const ClipPreprocessOptions& options) {
    Tensor t = Tensor::empty(DType::f32, {1, 3, options.size, options.size});
    clip_preprocess(image, options, t.data<float>());
    return t;
}

}  // namespace unclip
