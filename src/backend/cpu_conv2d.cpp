// Convolution as GEMM. With the AVX-512 kernels, 3x3 stride-1 convolutions large enough to pay
// for the transforms run as Winograd F(4x4, 3x3) (backend/winograd.hpp: 4x fewer multiplications,
// 2.2-2.5x faster on the UNet's 96x96 and 48x48 levels), the rest as one packed GEMM per image
// whose B operand is the input unfolded while it is packed. Without them: for each image and each
// band of output rows, unfold the receptive fields into a [C_in*kh*kw, band] column buffer
// (im2col) and multiply by the weight matrix [C_out, C_in*kh*kw]. Bands bound the column buffer to
// about kColumnBufferFloats whatever the image size (a full 96x96 im2col at 960 input channels
// would take 318 MB). Bands as large as 32 MiB measured 10-35% faster than 8 MiB ones (fewer
// passes over the weights; BENCHMARKS.md).
#include <algorithm>
#include <cstring>

#include "backend/cpu_affine.hpp"
#include "backend/kernel_table.hpp"
#include "unclip/backend/cpu.hpp"
#include "unclip/error.hpp"

namespace unclip {
namespace {
constexpr std::int64_t kColumnBufferFloats = std::int64_t{1} << 23;  // 32 MiB

bool is_pointwise(const CpuBackend::Conv2dArgs& a) {
    return a.kernel_h == 1 && a.kernel_w == 1 && a.stride == 1 && a.pad_top == 0 && a.pad_left == 0 &&
           a.pad_bottom == 0 && a.pad_right == 0;
}

std::int64_t band_rows(const CpuBackend::Conv2dArgs& a) {
    const std::int64_t k = a.in_channels * a.kernel_h * a.kernel_w;
    const std::int64_t rows = kColumnBufferFloats / std::max<std::int64_t>(1, k * a.out_width());
    return std::clamp<std::int64_t>(rows, 1, a.out_height());
}

// cols[(c*kh + ky)*kw + kx][(oy - oy0)*W_out + ox] = x[c][oy*stride - pad_top + ky][ox*stride - pad_left + kx]
void im2col(const CpuBackend::Context& ctx, const CpuBackend::Conv2dArgs& a, const float* x, std::int64_t oy0,
            std::int64_t oy1, float* cols) {
    const std::int64_t wo = a.out_width(), band = (oy1 - oy0) * wo;
    const std::int64_t k = a.in_channels * a.kernel_h * a.kernel_w;
    ctx.parallel_for(k, 16, [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::int64_t kx = r % a.kernel_w, ky = (r / a.kernel_w) % a.kernel_h, c = r / (a.kernel_w * a.kernel_h);
            const float* plane = x + c * a.height * a.width;
            float* out = cols + r * band;
            for (std::int64_t oy = oy0; oy < oy1; ++oy, out += wo) {
                const std::int64_t iy = oy * a.stride - a.pad_top + ky;
                if (iy < 0 || iy >= a.height) {
                    std::fill(out, out + wo, 0.0f);
                    continue;
                }
                const float* row = plane + iy * a.width;
                if (a.stride == 1) {
                    // ix = ox - pad_left + kx: valid for ox in [lo, hi)
                    const std::int64_t shift = kx - a.pad_left;
                    const std::int64_t lo = std::clamp<std::int64_t>(-shift, 0, wo);
                    const std::int64_t hi = std::clamp<std::int64_t>(a.width - shift, lo, wo);
                    std::fill(out, out + lo, 0.0f);
                    std::memcpy(out + lo, row + lo + shift, static_cast<std::size_t>(hi - lo) * sizeof(float));
                    std::fill(out + hi, out + wo, 0.0f);
                } else {
                    for (std::int64_t ox = 0; ox < wo; ++ox) {
                        const std::int64_t ix = ox * a.stride - a.pad_left + kx;
                        out[ox] = ix >= 0 && ix < a.width ? row[ix] : 0.0f;
                    }
                }
            }
        }
    });
}
}  // namespace

namespace {

// `in` ([batch, in_channels, height, width]) mapped by a.input_affine into `out` (may be `in`),
// plane by plane.
void apply_input_affine(const CpuBackend::Context& ctx, const CpuBackend::Conv2dArgs& a, const float* in, float* out) {
    const backend::InputAffine& f = *a.input_affine;
    if (!f.scale || !f.shift) throw Error(Status::invalid_argument, "conv2d: input_affine needs scale and shift");
    const std::int64_t plane = a.height * a.width;
    ctx.parallel_for(a.batch * a.in_channels, 1 + 4096 / std::max<std::int64_t>(1, plane), [&](std::int64_t p0, std::int64_t p1) {
        for (std::int64_t p = p0; p < p1; ++p) {
            const float* src = in + p * plane;
            float* dst = out + p * plane;
            for (std::int64_t i = 0; i < plane; ++i) dst[i] = detail::affine_silu(src[i], f.scale[p], f.shift[p], f.silu);
        }
    });
}

// Whether conv2d first builds its input in scratch: upsampled and/or mapped, as the kernels read
// plain tensors.
bool staged_input(const CpuBackend::Conv2dArgs& a) { return a.input_upsample != 1 || a.input_affine.has_value(); }

}  // namespace

std::size_t CpuBackend::conv2d_scratch_bytes(const Conv2dArgs& a) noexcept {
    if (staged_input(a)) {
        Conv2dArgs plain = a;
        plain.input_upsample = 1;
        plain.input_affine.reset();
        return Scratch::bytes_for<float>(static_cast<std::size_t>(a.batch * a.in_channels * a.height * a.width)) +
               conv2d_scratch_bytes(plain);
    }
    if (detail::WinogradPlan plan; detail::kernels().conv3x3_winograd && detail::plan_winograd(a, plan))
        return Scratch::bytes_for<float>(static_cast<std::size_t>(plan.scratch_floats));
    if (is_pointwise(a) || detail::kernels().gemm) return 0;
    const std::int64_t k = a.in_channels * a.kernel_h * a.kernel_w;
    return Scratch::bytes_for<float>(static_cast<std::size_t>(k * band_rows(a) * a.out_width()));
}

void CpuBackend::conv2d(const Context& ctx, const Conv2dArgs& a, Scratch& scratch) {
    if (staged_input(a)) {
        a.check_input_upsample("CPU conv2d");
        Scratch::Frame frame(scratch);
        float* staged = scratch.take<float>(static_cast<std::size_t>(a.batch * a.in_channels * a.height * a.width));
        const float* source = a.x;
        if (a.input_upsample != 1) {
            upsample_nearest(ctx, a.x, staged, a.batch, a.in_channels, a.height / 2, a.width / 2, a.height, a.width);
            source = staged;
        }
        if (a.input_affine) apply_input_affine(ctx, a, source, staged);
        Conv2dArgs plain = a;
        plain.input_upsample = 1;
        plain.input_affine.reset();
        plain.x = staged;
        conv2d(ctx, plain, scratch);
        return;
    }
    const std::int64_t ho = a.out_height(), wo = a.out_width(), plane_out = ho * wo;
    const std::int64_t k = a.in_channels * a.kernel_h * a.kernel_w;
    const float beta = a.accumulate ? 1.0f : 0.0f;
    const auto& kt = detail::kernels();
    if (detail::WinogradPlan plan; kt.conv3x3_winograd && detail::plan_winograd(a, plan)) {
        Scratch::Frame frame(scratch);
        kt.conv3x3_winograd(ctx, a, plan, scratch.take<float>(static_cast<std::size_t>(plan.scratch_floats)));
        return;
    }
    if (kt.gemm) {
        if (a.batch <= 0 || a.out_channels <= 0 || plane_out <= 0) return;
        detail::GemmProblem g;
        g.batch = a.batch;
        g.m = a.out_channels;
        g.n = plane_out;
        g.k = k;
        g.a = a.weight;
        g.a_dtype = a.weight_dtype;
        g.lda = k;
        g.b = a.x;
        g.ldb = plane_out;
        g.b_batch_stride = a.in_channels * a.height * a.width;
        g.conv = is_pointwise(a) ? nullptr : &a;
        g.c = a.y;
        g.ldc = plane_out;
        g.c_batch_stride = a.out_channels * plane_out;
        g.beta = beta;
        g.row_bias = a.bias;
        g.bf16 = detail::bf16_enabled(ctx);
        kt.gemm(ctx, g);
        return;
    }
    Scratch::Frame frame(scratch);
    const float* weight = detail::widened_weights(a.weight, a.weight_dtype, a.out_channels * k);
    const bool pointwise = is_pointwise(a);
    const std::int64_t rows_per_band = band_rows(a);
    float* cols = pointwise ? nullptr : scratch.take<float>(static_cast<std::size_t>(k * rows_per_band * wo));

    for (std::int64_t b = 0; b < a.batch; ++b) {
        const float* x = a.x + b * a.in_channels * a.height * a.width;
        float* y = a.y + b * a.out_channels * plane_out;
        for (std::int64_t oy0 = 0; oy0 < ho; oy0 += rows_per_band) {
            const std::int64_t oy1 = std::min(ho, oy0 + rows_per_band), band = (oy1 - oy0) * wo;
            const float* rhs = x + oy0 * wo;  // pointwise: the input itself is the column matrix
            std::int64_t ldb = plane_out;
            if (!pointwise) {
                im2col(ctx, a, x, oy0, oy1, cols);
                rhs = cols;
                ldb = band;
            }
            float* out = y + oy0 * wo;
            gemm(ctx, false, false, a.out_channels, band, k, 1.0f, weight, k, rhs, ldb, beta, out, plane_out);
            if (a.bias) {
                ctx.parallel_for(a.out_channels, 16, [&](std::int64_t c0, std::int64_t c1) {
                    for (std::int64_t c = c0; c < c1; ++c) {
                        float* row = out + c * plane_out;
                        const float v = a.bias[c];
                        for (std::int64_t i = 0; i < band; ++i) row[i] += v;
                    }
                });
            }
        }
    }
}

}  // namespace unclip
