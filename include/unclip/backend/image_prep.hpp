#pragma once
// The per-pixel arithmetic of image pre- and post-processing, written once for the CPU's loops
// (src/io/clip_preprocess.cpp, src/pipeline/images.cpp) and the CUDA kernels (cuda/image.cu): the
// VAE encoder's input, the decoded pixels' bytes and the two CLIP resamplings of
// unclip/clip_preprocess.hpp. Pointers are the memory of whoever runs the formulas (host for the
// CPU, device for CUDA).
#include <cmath>
#include <cstdint>

#include "unclip/backend/latent_update.hpp"  // UNCLIP_HOST_DEVICE

namespace unclip::backend {

// 8-bit pixels, interleaved [height, width, channels] (1..4 channels).
struct ImageBytes {
    const std::uint8_t* pixels = nullptr;
    std::int64_t width = 0, height = 0, channels = 0;
};

// The channel an RGB output channel c reads: grey is replicated, alpha ignored.
UNCLIP_HOST_DEVICE inline std::int64_t rgb_source_channel(std::int64_t channels, int c) { return channels < 3 ? 0 : c; }

UNCLIP_HOST_DEVICE inline std::uint8_t pixel_at(const ImageBytes& image, std::int64_t x, std::int64_t y, int c) {
    return image.pixels[(y * image.width + x) * image.channels + rgb_source_channel(image.channels, c)];
}

// VAEEncode's input at (c, y, x) of [3, H, W]: the crop at (x0, y0) mapped to [-1, 1].
UNCLIP_HOST_DEVICE inline float vae_input_at(const ImageBytes& image, std::int64_t x0, std::int64_t y0, int c,
                                             std::int64_t y, std::int64_t x) {
    const float unit = static_cast<float>(pixel_at(image, x0 + x, y0 + y, c)) / 255.0f;
    return 2.0f * unit - 1.0f;
}

// SaveImage's byte for a decoded value in [-1, 1]: (x + 1) / 2 times 255, clamped to [0, 255] (NaN
// to 0), truncated.
UNCLIP_HOST_DEVICE inline std::uint8_t decoded_byte(float x) {
    const float scaled = (x + 1.0f) * 0.5f * 255.0f;
    return static_cast<std::uint8_t>(scaled > 0.0f ? (scaled < 255.0f ? scaled : 255.0f) : 0.0f);
}

// One axis of a separable resize: output index i reads input first[i] + j for j < count[i], with
// weights w[i * taps + j].
template <class W>
struct ResizeAxis {
    const std::int64_t* first = nullptr;
    const std::int64_t* count = nullptr;
    const W* w = nullptr;
    std::int64_t taps = 0;
};

// A CLIP resampling: the width pass over every input row, for the `size` output columns from
// `left`, into rows [3, height, size]; then the height pass for the `size` output rows from `top`,
// into [3, size, size]. An axis without weights (first == nullptr) is not resized.
struct ClipResample {
    ImageBytes image;
    std::int64_t size = 0, top = 0, left = 0;
    bool pil = false;                      // diffusers (PIL, 8-bit passes); otherwise ComfyUI (float32)
    ResizeAxis<float> torch_width, torch_height;
    ResizeAxis<std::int32_t> pil_width, pil_height;
    float mean[3] = {}, std[3] = {};
};

// ComfyUI: the width pass in float32 over u8 / 255 (`unit`: a 256-entry table of i / 255.0f).
UNCLIP_HOST_DEVICE inline float torch_width_pass(const ClipResample& r, const float* unit, int c, std::int64_t y,
                                                 std::int64_t x) {
    const std::int64_t channels = r.image.channels, ox = r.left + x;
    const std::uint8_t* line = r.image.pixels + y * r.image.width * channels + rgb_source_channel(channels, c);
    const ResizeAxis<float>& a = r.torch_width;
    if (a.first == nullptr) return unit[line[ox * channels]];
    const float* w = a.w + ox * a.taps;
    const std::uint8_t* p = line + a.first[ox] * channels;
    float v = unit[p[0]] * w[0];
    for (std::int64_t j = 1; j < a.count[ox]; ++j) v += unit[p[j * channels]] * w[j];
    return v;
}

// ComfyUI: the height pass over rows [3, image height, size], then torch.clip(255 x, 0, 255).round()
// / 255 and (x - mean) / std, all float32.
UNCLIP_HOST_DEVICE inline float torch_height_pass(const ClipResample& r, const float* rows, int c, std::int64_t y,
                                                  std::int64_t x) {
    const std::int64_t size = r.size, oy = r.top + y;
    const float* col = rows + c * r.image.height * size + x;
    const ResizeAxis<float>& a = r.torch_height;
    float v;
    if (a.first == nullptr) {
        v = col[oy * size];
    } else {
        const float* w = a.w + oy * a.taps;
        const std::int64_t first = a.first[oy];
        v = col[first * size] * w[0];
        for (std::int64_t j = 1; j < a.count[oy]; ++j) v += col[(first + j) * size] * w[j];
    }
    float scaled = 255.0f * v;
    scaled = scaled < 0.0f ? 0.0f : (scaled > 255.0f ? 255.0f : scaled);
    const float q = nearbyintf(scaled) / 255.0f;
    return (q - r.mean[c]) / r.std[c];
}

// Pillow's 8-bit fixed point: 22 fraction bits, a rounding half added, clamped to 0..255.
inline constexpr int kPilPrecisionBits = 32 - 8 - 2;
UNCLIP_HOST_DEVICE inline std::uint8_t pil_clip8(std::int64_t v) {
    v >>= kPilPrecisionBits;
    return static_cast<std::uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// diffusers (PIL): the width pass, rounded to 8 bits.
UNCLIP_HOST_DEVICE inline std::uint8_t pil_width_pass(const ClipResample& r, int c, std::int64_t y, std::int64_t x) {
    const std::int64_t ox = r.left + x;
    const ResizeAxis<std::int32_t>& a = r.pil_width;
    if (a.first == nullptr) return pixel_at(r.image, ox, y, c);
    const std::int32_t* w = a.w + ox * a.taps;
    std::int64_t sum = std::int64_t{1} << (kPilPrecisionBits - 1);
    for (std::int64_t j = 0; j < a.count[ox]; ++j) sum += pixel_at(r.image, a.first[ox] + j, y, c) * w[j];
    return pil_clip8(sum);
}

// diffusers (PIL): the height pass over rows [3, image height, size] rounded to 8 bits, then
// transformers' rescale (a float64 multiply stored as float32) and the float32 normalisation.
UNCLIP_HOST_DEVICE inline float pil_height_pass(const ClipResample& r, const std::uint8_t* rows, int c, std::int64_t y,
                                                std::int64_t x) {
    const std::int64_t size = r.size, oy = r.top + y;
    const std::uint8_t* col = rows + c * r.image.height * size + x;
    const ResizeAxis<std::int32_t>& a = r.pil_height;
    std::uint8_t v;
    if (a.first == nullptr) {
        v = col[oy * size];
    } else {
        const std::int32_t* w = a.w + oy * a.taps;
        std::int64_t sum = std::int64_t{1} << (kPilPrecisionBits - 1);
        for (std::int64_t j = 0; j < a.count[oy]; ++j) sum += col[(a.first[oy] + j) * size] * w[j];
        v = pil_clip8(sum);
    }
    const auto f = static_cast<float>(static_cast<double>(v) * (1.0 / 255.0));
    return (f - r.mean[c]) / r.std[c];
}

}  // namespace unclip::backend
