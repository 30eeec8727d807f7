#pragma once
// The per-thread work of the convolution's im2col, as host-and-device functions so that a host
// test can run every thread's share and compare the vectorised layout with the scalar one.
//
// Columns of output rows [row0, row0 + rows) of `planes` = images * channels input planes:
// col[plane][k][p], k = (ky, kx) tap, p = (oy - row0) * out_w + ox, zero where the window falls
// into the padding (the per-image column matrix [channels * taps, band] is one plane after another).
#include <cmath>
#include <cstdint>

#include "convert.cuh"

// Full unrolling keeps the window in registers on the device; the host compiler (test builds)
// does not know the pragma.
#if defined(__CUDA_ARCH__)
#define UNCLIP_UNROLL _Pragma("unroll")
#else
#define UNCLIP_UNROLL
#endif

namespace unclip::cuda {

// height and width are the convolution's input size; with upsample_shift 1 the planes in memory
// are half that (Conv2dArgs::input_upsample 2) and each value stands for a 2x2 block.
struct Im2colGeometry {
    std::int64_t planes = 0;
    int height = 0, width = 0, kernel_h = 0, kernel_w = 0, stride = 1, pad_top = 0, pad_left = 0;
    int out_w = 0, row0 = 0, rows = 0;
    int upsample_shift = 0;
    __host__ __device__ std::int64_t band() const { return std::int64_t{rows} * out_w; }
    __host__ __device__ std::int64_t taps() const { return std::int64_t{kernel_h} * kernel_w; }
};

// The convolution's input map (Conv2dArgs::input_affine) per plane read: silu?(x * scale + shift),
// rounded step by step on the device exactly as group_normalize_kernel does, so a folded GroupNorm
// gives the columns the separate pass gave. scale == nullptr: values pass unchanged.
struct PlaneAffine {
    const float* scale = nullptr;
    const float* shift = nullptr;
    bool silu = false;
};

__host__ __device__ __forceinline__ float affine_value(float v, float scale, float shift, bool silu) {
#if defined(__CUDA_ARCH__)
    const float out = __fadd_rn(__fmul_rn(v, scale), shift);
    return silu ? out / (1.0f + expf(-out)) : out;
#else
    const float out = v * scale + shift;
    return silu ? out / (1.0f + std::exp(-out)) : out;
#endif
}

// Reads plane `plane` at input pixel (iy, ix), inside the input, through the upsampling and the
// map (the identity without them).
struct PlaneReader {
    const float* image;
    int source_width, upsample_shift;
    float scale = 1.0f, shift = 0.0f;
    bool mapped = false, silu = false;
    __host__ __device__ PlaneReader(const float* x, const Im2colGeometry& g, const PlaneAffine& f, std::int64_t plane)
        : image(x + plane * std::int64_t{g.height >> g.upsample_shift} * (g.width >> g.upsample_shift)),
          source_width(g.width >> g.upsample_shift),
          upsample_shift(g.upsample_shift) {
        if (f.scale) {
            mapped = true;
            silu = f.silu;
            scale = f.scale[plane];
            shift = f.shift[plane];
        }
    }
    __host__ __device__ float operator()(int iy, int ix) const {
        const float v = image[std::int64_t{iy >> upsample_shift} * source_width + (ix >> upsample_shift)];
        return mapped ? affine_value(v, scale, shift, silu) : v;
    }
};

// Every tap of output pixel (ox, row0 + r) of one plane, one element at a time.
template <class To>
__host__ __device__ __forceinline__ void im2col_pixel(const float* __restrict__ x, To* __restrict__ col,
                                                      const Im2colGeometry& g, const PlaneAffine& f, int ox, int r,
                                                      std::int64_t plane) {
    const std::int64_t band = g.band();
    const PlaneReader read(x, g, f, plane);
    To* out = col + plane * g.taps() * band + std::int64_t{r} * g.out_w + ox;
    const int oy = g.row0 + r;
    for (int ky = 0; ky < g.kernel_h; ++ky) {
        const int iy = oy * g.stride - g.pad_top + ky;
        const bool row_inside = iy >= 0 && iy < g.height;
        for (int kx = 0; kx < g.kernel_w; ++kx) {
            const int ix = ox * g.stride - g.pad_left + kx;
            const bool inside = row_inside && ix >= 0 && ix < g.width;
            out[(ky * g.kernel_w + kx) * band] = from_float<To>(inside ? read(iy, ix) : 0.0f);
        }
    }
}

// Eight neighbouring outputs stored with one 16-byte (half) or 32-byte (float) write.
template <class To>
struct alignas(8 * sizeof(To)) Octet {
    To v[8];
};

// The 3-wide stride-1 case (every 3x3 convolution of the UNet and VAE): output pixels
// [8 * group, 8 * group + 8) of row row0 + r, with out_w % 8 == 0 and col 8-element aligned, so
// each tap row is one Octet store. The ten input values a window row needs are read once.
template <class To>
__host__ __device__ __forceinline__ void im2col_octet_3wide(const float* __restrict__ x, To* __restrict__ col,
                                                            const Im2colGeometry& g, const PlaneAffine& f, int group,
                                                            int r, std::int64_t plane) {
    constexpr int kWindow = 8 + 2;
    const std::int64_t band = g.band();
    const PlaneReader read(x, g, f, plane);
    const int ox0 = 8 * group, ix0 = ox0 - g.pad_left, oy = g.row0 + r;
    To* out = col + plane * g.taps() * band + std::int64_t{r} * g.out_w + ox0;
    for (int ky = 0; ky < g.kernel_h; ++ky) {
        const int iy = oy - g.pad_top + ky;
        const bool row_inside = iy >= 0 && iy < g.height;
        float window[kWindow];
UNCLIP_UNROLL
        for (int j = 0; j < kWindow; ++j) {
            const int ix = ix0 + j;
            window[j] = row_inside && ix >= 0 && ix < g.width ? read(iy, ix) : 0.0f;
        }
UNCLIP_UNROLL
        for (int kx = 0; kx < 3; ++kx) {
            Octet<To> o;
UNCLIP_UNROLL
            for (int j = 0; j < 8; ++j) o.v[j] = from_float<To>(window[j + kx]);
            *reinterpret_cast<Octet<To>*>(out + (ky * 3 + kx) * band) = o;
        }
    }
}

// Where thread i of an im2col launch works: row `row` of the band, column `column` (a pixel, or an
// eight-pixel group) of `per_row`; a launch runs per_row * rows threads per plane, row by row.
struct BandPosition {
    int row, column;
};
__host__ __device__ __forceinline__ BandPosition band_position(int i, int per_row) {
    const int row = i / per_row;
    return {row, i - row * per_row};
}

// Whether im2col_octet_3wide serves geometry g (col must also be 8 * sizeof(To) aligned).
inline bool octet_im2col_fits(const Im2colGeometry& g) { return g.stride == 1 && g.kernel_w == 3 && g.out_w % 8 == 0; }

}  // namespace unclip::cuda
