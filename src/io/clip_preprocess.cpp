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

// One axis of a separable resize: for output index i, weights w[i * taps + j] apply to input
// indices first[i] + j, j < count[i].
template <class W>
struct AxisWeights {
    std::vector<std::int64_t> first, count;
    std::vector<W> w;
    std::int64_t taps = 0;
};

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

constexpr int kPilPrecisionBits = 32 - 8 - 2;

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

std::uint8_t pil_clip8(std::int64_t v) {
    return static_cast<std::uint8_t>(std::clamp<std::int64_t>(v >> kPilPrecisionBits, 0, 255));
}

// Source channel of output channel c: grey is replicated, alpha ignored.
int source_channel(const Image& image, int c) { return image.channels < 3 ? 0 : c; }

void check(const Image& image, const ClipPreprocessOptions& o, const float* out) {
    if (image.width <= 0 || image.height <= 0 || image.channels < 1 || image.channels > 4 ||
        image.pixels.size() != static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height) *
                                    static_cast<std::size_t>(image.channels))
        throw Error(Status::invalid_argument, "clip_preprocess: image is empty or its pixel buffer does not match " +
                                                  std::to_string(image.width) + "x" + std::to_string(image.height) + "x" +
                                                  std::to_string(image.channels));
    if (o.size < 1 || o.size > 4096)
        throw Error(Status::invalid_argument, "clip_preprocess: size must be 1..4096, got " + std::to_string(o.size));
    for (const float s : o.std)
        if (!(s > 0.0f)) throw Error(Status::invalid_argument, "clip_preprocess: std must be positive");
    if (!out) throw Error(Status::invalid_argument, "clip_preprocess: output is null");
}

void comfyui(const Image& image, const ClipPreprocessOptions& o, float* out, const detail::ParallelRows& parallel) {
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
    const std::int64_t top = (out_h - size) / 2, left = (out_w - size) / 2;
    const bool do_w = out_w != in_w, do_h = out_h != in_h;
    AxisWeights<float> ww, wh;
    if (do_w) ww = torch_aa_bicubic(in_w, out_w);
    if (do_h) wh = torch_aa_bicubic(in_h, out_h);

    // LoadImage's float32 image: u8 / 255, looked up (the same values) instead of divided per tap.
    float unit[256];
    for (int i = 0; i < 256; ++i) unit[i] = static_cast<float>(i) / 255.0f;
    const std::int64_t channels = image.channels;
    std::vector<float> rows(static_cast<std::size_t>(3 * in_h * size));  // [3, in_h, size] after the width pass
    parallel(3 * in_h, [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
            const auto c = static_cast<int>(r / in_h);
            const std::int64_t y = r % in_h;
            const std::uint8_t* line = image.pixels.data() + y * in_w * channels + source_channel(image, c);
            for (std::int64_t x = 0; x < size; ++x) {
                const std::int64_t ox = left + x;
                float v;
                if (do_w) {
                    const auto i = static_cast<std::size_t>(ox);
                    const float* w = ww.w.data() + ox * ww.taps;
                    const std::uint8_t* p = line + ww.first[i] * channels;
                    v = unit[p[0]] * w[0];
                    for (std::int64_t j = 1; j < ww.count[i]; ++j) v += unit[p[j * channels]] * w[j];
                } else {
                    v = unit[line[ox * channels]];
                }
                rows[static_cast<std::size_t>((c * in_h + y) * size + x)] = v;
            }
        }
    });
    parallel(3 * size, [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
            const auto c = static_cast<int>(r / size);
            const std::int64_t y = r % size;
            for (std::int64_t x = 0; x < size; ++x) {
                const std::int64_t oy = top + y;
                const float* col = rows.data() + c * in_h * size + x;
                float v;
                if (do_h) {
                    const auto i = static_cast<std::size_t>(oy);
                    const float* w = wh.w.data() + oy * wh.taps;
                    const std::int64_t first = wh.first[i];
                    v = col[first * size] * w[0];
                    for (std::int64_t j = 1; j < wh.count[i]; ++j) v += col[(first + j) * size] * w[j];
                } else {
                    v = col[oy * size];
                }
                // torch.clip(255 * x, 0, 255).round() / 255, then (x - mean) / std, all float32.
                const float q = std::nearbyint(std::clamp(255.0f * v, 0.0f, 255.0f)) / 255.0f;
                out[(c * size + y) * size + x] = (q - o.mean[static_cast<std::size_t>(c)]) / o.std[static_cast<std::size_t>(c)];
            }
        }
    });
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

void diffusers(const Image& original, const ClipPreprocessOptions& o, float* out, const detail::ParallelRows& parallel) {
    const Image image = composite_on_white(original);
    const std::int64_t in_h = image.height, in_w = image.width, size = o.size;
    // transformers get_resize_output_image_size (default_to_square=False): the short side becomes
    // size, the long one int(size * long / short).
    const std::int64_t short_side = std::min(in_h, in_w), long_side = std::max(in_h, in_w);
    const auto new_long = static_cast<std::int64_t>(static_cast<double>(size) * static_cast<double>(long_side) /
                                                    static_cast<double>(short_side));
    const std::int64_t out_h = in_h <= in_w ? size : new_long, out_w = in_h <= in_w ? new_long : size;
    const std::int64_t top = (out_h - size) / 2, left = (out_w - size) / 2;
    const bool do_w = out_w != in_w, do_h = out_h != in_h;
    AxisWeights<std::int32_t> ww, wh;
    if (do_w) ww = pil_bicubic(in_w, out_w);
    if (do_h) wh = pil_bicubic(in_h, out_h);

    std::vector<std::uint8_t> rows(static_cast<std::size_t>(3 * in_h * size));
    parallel(3 * in_h, [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
            const auto c = static_cast<int>(r / in_h);
            const std::int64_t y = r % in_h;
            for (std::int64_t x = 0; x < size; ++x) {
                const std::int64_t ox = left + x;
                std::uint8_t v;
                if (do_w) {
                    const auto i = static_cast<std::size_t>(ox);
                    const std::int32_t* w = ww.w.data() + ox * ww.taps;
                    std::int64_t ss = std::int64_t{1} << (kPilPrecisionBits - 1);
                    for (std::int64_t j = 0; j < ww.count[i]; ++j)
                        ss += image.at(static_cast<int>(ww.first[i] + j), static_cast<int>(y), source_channel(image, c)) * w[j];
                    v = pil_clip8(ss);
                } else {
                    v = image.at(static_cast<int>(ox), static_cast<int>(y), source_channel(image, c));
                }
                rows[static_cast<std::size_t>((c * in_h + y) * size + x)] = v;
            }
        }
    });
    const double rescale = 1.0 / 255.0;
    parallel(3 * size, [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
            const auto c = static_cast<int>(r / size);
            const std::int64_t y = r % size;
            for (std::int64_t x = 0; x < size; ++x) {
                const std::int64_t oy = top + y;
                const std::uint8_t* col = rows.data() + c * in_h * size + x;
                std::uint8_t v;
                if (do_h) {
                    const auto i = static_cast<std::size_t>(oy);
                    const std::int32_t* w = wh.w.data() + oy * wh.taps;
                    std::int64_t ss = std::int64_t{1} << (kPilPrecisionBits - 1);
                    for (std::int64_t j = 0; j < wh.count[i]; ++j) ss += col[(wh.first[i] + j) * size] * w[j];
                    v = pil_clip8(ss);
                } else {
                    v = col[oy * size];
                }
                // transformers rescale (float64 multiply, stored as float32), then normalise in float32.
                const auto f = static_cast<float>(static_cast<double>(v) * rescale);
                out[(c * size + y) * size + x] = (f - o.mean[static_cast<std::size_t>(c)]) / o.std[static_cast<std::size_t>(c)];
            }
        }
    });
}

}  // namespace

void detail::clip_preprocess(const Image& image, const ClipPreprocessOptions& options, float* out,
                             const ParallelRows& parallel) {
    check(image, options, out);
    if (options.method == ClipResize::comfyui) comfyui(image, options, out, parallel);
    else diffusers(image, options, out, parallel);
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
