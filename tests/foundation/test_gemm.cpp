// The CPU GEMM, linear layer and convolution against double-precision loops, on shapes that cut the
// register tiles (14 x 32), the depth blocks (256) and the column blocks at every edge.
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <doctest/doctest.h>

#include "backend/kernel_table.hpp"
#include "backend/winograd.hpp"
#include "unclip/backend/cpu.hpp"
#include "unclip/dtype.hpp"
#include "unclip/error.hpp"
#include "unclip/nn/weights.hpp"

using unclip::CpuBackend;
using unclip::DType;

namespace {

std::vector<float> random_values(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

double rel_l2(const std::vector<float>& actual, const std::vector<double>& expected) {
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < actual.size(); ++i) {
        if (!std::isfinite(actual[i])) return std::numeric_limits<double>::infinity();
        diff += (actual[i] - expected[i]) * (actual[i] - expected[i]);
        norm += expected[i] * expected[i];
    }
    return std::sqrt(diff / norm);
}

// A square-kernel convolution's geometry with the same padding on every side.
CpuBackend::Conv2dArgs square_conv(std::int64_t batch, std::int64_t in_c, std::int64_t out_c, std::int64_t h,
                                   std::int64_t w, int kernel, int stride, int pad) {
    CpuBackend::Conv2dArgs args;
    args.batch = batch;
    args.in_channels = in_c;
    args.out_channels = out_c;
    args.height = h;
    args.width = w;
    args.kernel_h = args.kernel_w = kernel;
    args.stride = stride;
    args.pad_top = args.pad_left = args.pad_bottom = args.pad_right = pad;
    return args;
}

// The convolution of x [B, C_in, H, W] with w [C_out, C_in, kh, kw] plus bias, summed in double.
std::vector<double> direct_conv(const CpuBackend::Conv2dArgs& a, const std::vector<float>& x, const std::vector<float>& w,
                                const std::vector<float>& bias) {
    const std::int64_t ho = a.out_height(), wo = a.out_width();
    std::vector<double> y(static_cast<std::size_t>(a.batch * a.out_channels * ho * wo));
    for (std::int64_t b = 0; b < a.batch; ++b)
        for (std::int64_t o = 0; o < a.out_channels; ++o)
            for (std::int64_t oy = 0; oy < ho; ++oy)
                for (std::int64_t ox = 0; ox < wo; ++ox) {
                    double sum = bias[o];
                    for (std::int64_t c = 0; c < a.in_channels; ++c)
                        for (int ky = 0; ky < a.kernel_h; ++ky)
                            for (int kx = 0; kx < a.kernel_w; ++kx) {
                                const std::int64_t iy = oy * a.stride - a.pad_top + ky, ix = ox * a.stride - a.pad_left + kx;
                                if (iy < 0 || iy >= a.height || ix < 0 || ix >= a.width) continue;
                                sum += static_cast<double>(x[((b * a.in_channels + c) * a.height + iy) * a.width + ix]) *
                                       w[((o * a.in_channels + c) * a.kernel_h + ky) * a.kernel_w + kx];
                            }
                    y[((b * a.out_channels + o) * ho + oy) * wo + ox] = sum;
                }
    return y;
}

struct GemmCase {
    std::int64_t m = 0, n = 0, k = 0;
    bool trans_a = false, trans_b = false;
    float alpha = 1.0f, beta = 0.0f;
};

void check_gemm(const CpuBackend::Context& ctx, const GemmCase& gc) {
    CAPTURE(gc.m);
    CAPTURE(gc.n);
    CAPTURE(gc.k);
    CAPTURE(gc.trans_a);
    CAPTURE(gc.trans_b);
    CAPTURE(gc.beta);
    // Leading dimensions wider than the matrices, so strides are exercised too.
    const std::int64_t lda = (gc.trans_a ? gc.m : gc.k) + 3, ldb = (gc.trans_b ? gc.k : gc.n) + 5, ldc = gc.n + 7;
    const auto a = random_values(static_cast<std::size_t>((gc.trans_a ? gc.k : gc.m) * lda), 1);
    const auto b = random_values(static_cast<std::size_t>((gc.trans_b ? gc.n : gc.k) * ldb), 2);
    auto c = random_values(static_cast<std::size_t>(gc.m * ldc), 3);
    if (gc.beta == 0.0f)  // beta 0 must ignore what C held
        for (auto& x : c) x = std::numeric_limits<float>::quiet_NaN();
    std::vector<double> expected(c.size());
    for (std::int64_t i = 0; i < gc.m; ++i)
        for (std::int64_t j = 0; j < ldc; ++j) {
            const auto at = static_cast<std::size_t>(i * ldc + j);
            if (j >= gc.n) {
                expected[at] = c[at];  // outside the matrix: untouched
                continue;
            }
            double sum = 0;
            for (std::int64_t p = 0; p < gc.k; ++p)
                sum += static_cast<double>(gc.trans_a ? a[p * lda + i] : a[i * lda + p]) *
                       (gc.trans_b ? b[j * ldb + p] : b[p * ldb + j]);
            expected[at] = gc.alpha * sum + (gc.beta == 0.0f ? 0.0 : gc.beta * static_cast<double>(c[at]));
        }
    CpuBackend::gemm(ctx, gc.trans_a, gc.trans_b, gc.m, gc.n, gc.k, gc.alpha, a.data(), lda, b.data(), ldb, gc.beta,
                     c.data(), ldc);
    for (std::int64_t i = 0; i < gc.m; ++i)
        for (std::int64_t j = gc.n; j < ldc; ++j) {
            const auto at = static_cast<std::size_t>(i * ldc + j);
            if (!(c[at] == expected[at] || (std::isnan(c[at]) && std::isnan(expected[at])))) {
                FAIL("wrote outside the matrix at row " << i << " column " << j);
            }
            c[at] = 0.0f;
            expected[at] = 0.0;
        }
    CHECK(rel_l2(c, expected) <= 1e-5);
}

// Weights stored as `dtype` (what a half-precision checkpoint maps), and their exact fp32 values.
struct StoredWeights {
    std::vector<float> f32;
    std::vector<unclip::Half> f16;
    std::vector<unclip::BFloat16> bf16;
    DType dtype;
    StoredWeights(std::vector<float> values, DType stored) : f32(std::move(values)), dtype(stored) {
        if (dtype == DType::f16) {
            f16.resize(f32.size());
            unclip::convert(f32.data(), f16.data(), f32.size());
            unclip::convert(f16.data(), f32.data(), f32.size());
        } else if (dtype == DType::bf16) {
            bf16.resize(f32.size());
            unclip::convert(f32.data(), bf16.data(), f32.size());
            unclip::convert(bf16.data(), f32.data(), f32.size());
        }
    }
    const void* data() const {
        return dtype == DType::f16 ? static_cast<const void*>(f16.data())
                                   : dtype == DType::bf16 ? static_cast<const void*>(bf16.data()) : f32.data();
    }
};

}  // namespace

TEST_CASE("gemm equals a double-precision product for every transpose, edge tile and beta") {
    CpuBackend::Context ctx(2);
    for (const bool trans_a : {false, true})
        for (const bool trans_b : {false, true})
            for (const auto& [m, n, k] : {std::array<std::int64_t, 3>{1, 1, 1}, {13, 31, 7}, {14, 32, 256}, {15, 33, 257},
                                          {29, 70, 300}, {341, 45, 520}, {3, 2100, 17}})
                for (const float beta : {0.0f, 1.0f, -0.5f}) check_gemm(ctx, {m, n, k, trans_a, trans_b, 0.75f, beta});
}

TEST_CASE("linear adds the bias once, accumulates into y on request and takes f32, f16 and bf16 weights") {
    CpuBackend::Context ctx(2);
    const std::int64_t rows = 37, in = 300, out = 45;
    const auto x = random_values(rows * in, 4), bias = random_values(out, 6);
    const auto y0 = random_values(rows * out, 7);
    for (const DType dtype : {DType::f32, DType::f16, DType::bf16})
        for (const bool accumulate : {false, true})
            for (const bool with_bias : {false, true}) {
                CAPTURE(dtype_name(dtype));
                CAPTURE(accumulate);
                CAPTURE(with_bias);
                const StoredWeights w(random_values(out * in, 5), dtype);
                std::vector<double> expected(rows * out);
                for (std::int64_t r = 0; r < rows; ++r)
                    for (std::int64_t o = 0; o < out; ++o) {
                        double sum = with_bias ? bias[o] : 0.0;
                        for (std::int64_t i = 0; i < in; ++i) sum += static_cast<double>(x[r * in + i]) * w.f32[o * in + i];
                        expected[r * out + o] = sum + (accumulate ? y0[r * out + o] : 0.0);
                    }
                std::vector<float> y = y0;
                if (!accumulate) y.assign(y.size(), std::numeric_limits<float>::quiet_NaN());
                CpuBackend::linear(ctx, x.data(), rows, in, out, w.data(), dtype, with_bias ? bias.data() : nullptr,
                                   y.data(), accumulate);
                CHECK(rel_l2(y, expected) <= 1e-5);
            }
}

TEST_CASE("conv2d equals direct convolution for 3x3, 1x1, stride 2, odd sizes and half weights, whatever the thread count") {
    struct ConvCase {
        std::int64_t batch, in_c, out_c, h, w;
        int kernel, stride, pad;
        bool accumulate;
    };
    for (const ConvCase& cc : {ConvCase{2, 5, 17, 9, 13, 3, 1, 1, false}, ConvCase{1, 30, 15, 24, 24, 3, 1, 1, true},
                               ConvCase{2, 7, 33, 17, 11, 3, 2, 1, false}, ConvCase{1, 9, 20, 6, 35, 1, 1, 0, true},
                               ConvCase{1, 3, 4, 5, 5, 3, 1, 0, false}, ConvCase{1, 4, 6, 1, 40, 3, 1, 1, false},
                               // Winograd-sized: partial tiles at the right and bottom, channel tails,
                               // more than 16 tiles a row, no padding
                               ConvCase{2, 19, 17, 30, 37, 3, 1, 1, false}, ConvCase{1, 32, 24, 21, 70, 3, 1, 1, true},
                               ConvCase{1, 16, 16, 34, 34, 3, 1, 0, false}})
    for (const DType dtype : {DType::f32, DType::f16, DType::bf16}) {
        CAPTURE(dtype_name(dtype));
        CAPTURE(cc.in_c);
        CAPTURE(cc.out_c);
        CAPTURE(cc.h);
        CAPTURE(cc.w);
        CAPTURE(cc.stride);
        CpuBackend::Conv2dArgs args = square_conv(cc.batch, cc.in_c, cc.out_c, cc.h, cc.w, cc.kernel, cc.stride, cc.pad);
        args.accumulate = cc.accumulate;
        const auto x = random_values(cc.batch * cc.in_c * cc.h * cc.w, 8);
        const StoredWeights stored(random_values(cc.out_c * cc.in_c * cc.kernel * cc.kernel, 9), dtype);
        const auto& w = stored.f32;
        const auto bias = random_values(cc.out_c, 10);
        const auto y0 = random_values(cc.batch * cc.out_c * args.out_height() * args.out_width(), 11);
        std::vector<double> expected = direct_conv(args, x, w, bias);
        if (cc.accumulate)
            for (std::size_t i = 0; i < expected.size(); ++i) expected[i] += y0[i];
        std::vector<float> results[2];
        for (int threads : {1, 2}) {
            CpuBackend::Context ctx(threads);
            std::vector<float> y = y0;
            if (!cc.accumulate) y.assign(y.size(), std::numeric_limits<float>::quiet_NaN());
            args.x = x.data();
            args.weight = stored.data();
            args.weight_dtype = dtype;
            args.bias = bias.data();
            args.y = y.data();
            unclip::Scratch scratch(CpuBackend::conv2d_scratch_bytes(args));
            CpuBackend::conv2d(ctx, args, scratch);
            CHECK(rel_l2(y, expected) <= 1e-5);
            results[threads - 1] = y;
        }
        CHECK(results[0] == results[1]);
    }
}

TEST_CASE("a weight map widens half tensors for fp32 modules only on demand, and hands matrices over unwidened") {
    unclip::nn::WeightMap map;
    unclip::Tensor half = unclip::Tensor::empty(DType::f16, {2, 3});
    const std::vector<float> values{1.0f, -2.5f, 0.125f, 3.0f, 65504.0f, -0.0f};
    unclip::convert(values.data(), half.data<unclip::Half>(), values.size());
    map.insert("w", half);
    CHECK_THROWS_WITH_AS(map.require<float>("w", {2, 3}), "tensor 'w': dtype F16, expected F32", unclip::Error);
    const unclip::nn::MatrixView matrix = map.require_matrix("w", {2, 3});
    CHECK(matrix.dtype == DType::f16);
    CHECK(matrix.data == half.raw_data());
    map.widen_on_demand();
    const auto widened = map.require<float>("w", {2, 3});
    CHECK(std::vector<float>(widened.data, widened.data + 6) == values);
    CHECK(map.require<float>("w", {2, 3}).data == widened.data);  // widened once
    CHECK(map.require_matrix("w", {2, 3}).dtype == DType::f16);
}

TEST_CASE("bf16 GEMMs stay within bf16 rounding of the exact product, and only when asked") {
    if (!CpuBackend::has_bf16_gemm()) {
        MESSAGE("skipped: this CPU has no AVX-512 BF16 (the bf16 GEMM setting falls back to fp32 there)");
        return;
    }
    CpuBackend::Context ctx(2);
    ctx.set_bf16_gemm(true);
    const std::int64_t m = 45, n = 70, k = 301;  // odd depth: the last bf16 pair is half padding
    const auto a = random_values(m * k, 12), b = random_values(k * n, 13);
    std::vector<double> expected(m * n);
    for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
            double sum = 0;
            for (std::int64_t p = 0; p < k; ++p) sum += static_cast<double>(a[i * k + p]) * b[p * n + j];
            expected[i * n + j] = sum;
        }
    std::vector<float> c(m * n);
    CpuBackend::gemm(ctx, false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
    const double bf16_error = rel_l2(c, expected);
    CHECK(bf16_error <= 1e-2);
    CHECK(bf16_error > 1e-5);  // the inputs really were rounded to 8-bit mantissas
    ctx.set_bf16_gemm(false);
    CpuBackend::gemm(ctx, false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
    CHECK(rel_l2(c, expected) <= 1e-5);
}

// Winograd F(4x4, 3x3) itself, with the chunking and weight blocking forced by small budgets (the
// real budgets only split images far larger than a test's).
TEST_CASE("conv2d: Winograd F(4x4,3x3) matches a direct convolution across chunks of tile rows and blocks of output channels") {
    const auto& kernels = unclip::detail::kernels();
    if (!kernels.conv3x3_winograd) {
        MESSAGE("skipped: this CPU or build has no AVX-512 kernels (3x3 convolutions run as implicit GEMMs there)");
        return;
    }
    CpuBackend::Conv2dArgs a;
    a.batch = 2;
    a.in_channels = 21;
    a.out_channels = 45;
    a.height = 23;
    a.width = 70;
    a.kernel_h = a.kernel_w = 3;
    a.pad_top = 2;  // uneven padding: output 24 x 70, 6 x 18 tiles per image
    a.pad_left = a.pad_right = 1;
    const auto x = random_values(static_cast<std::size_t>(a.batch * a.in_channels * a.height * a.width), 1);
    const auto w = random_values(static_cast<std::size_t>(a.out_channels * a.in_channels * 9), 2);
    const auto bias = random_values(static_cast<std::size_t>(a.out_channels), 3);
    a.x = x.data();
    a.weight = w.data();
    a.bias = bias.data();
    const std::vector<double> expected = direct_conv(a, x, w, bias);

    struct Budgets {
        const char* name;
        std::int64_t weights, chunk;
        std::int64_t expect_chunk_rows, expect_out_block;
    };
    const std::int64_t per_channel = unclip::detail::kWinogradPoints * a.in_channels;
    for (const Budgets& budget :
         {Budgets{"whole", unclip::detail::kWinogradWeightFloats, unclip::detail::kWinogradChunkFloats, 12, 45},
          Budgets{"chunks of 5 tile rows", unclip::detail::kWinogradWeightFloats, 36 * 18 * (21 + 45) * 5, 5, 45},
          Budgets{"weight blocks of 14 channels, one tile row a chunk", per_channel * 14, 1, 1, 14}}) {
        CAPTURE(budget.name);
        unclip::detail::WinogradPlan plan;
        REQUIRE(unclip::detail::plan_winograd(a, plan, budget.weights, budget.chunk));
        CHECK(plan.chunk_rows == budget.expect_chunk_rows);
        CHECK(plan.out_block == budget.expect_out_block);
        std::vector<float> results[2];
        for (int threads : {1, 2}) {
            CpuBackend::Context ctx(threads);
            std::vector<float> y(expected.size(), std::numeric_limits<float>::quiet_NaN());
            std::vector<float> scratch(static_cast<std::size_t>(plan.scratch_floats));
            a.y = y.data();
            kernels.conv3x3_winograd(ctx, a, plan, scratch.data());
            CHECK(rel_l2(y, expected) <= 1e-5);
            results[threads - 1] = y;
        }
        CHECK(results[0] == results[1]);
    }
}

TEST_CASE("conv2d: Winograd serves only 3x3 stride-1 convolutions with enough tiles and channels") {
    CpuBackend::Conv2dArgs a;
    a.batch = 1;
    a.in_channels = a.out_channels = 32;
    a.height = a.width = 32;
    a.kernel_h = a.kernel_w = 3;
    a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 1;
    unclip::detail::WinogradPlan plan;
    CHECK(unclip::detail::plan_winograd(a, plan));  // 8 x 8 tiles
    a.stride = 2;
    CHECK_FALSE(unclip::detail::plan_winograd(a, plan));
    a.stride = 1;
    a.in_channels = 4;  // conv_in
    CHECK_FALSE(unclip::detail::plan_winograd(a, plan));
    a.in_channels = 32;
    a.height = a.width = 16;  // 4 x 4 tiles
    CHECK_FALSE(unclip::detail::plan_winograd(a, plan));
    a.kernel_h = a.kernel_w = 1;
    a.pad_top = a.pad_left = a.pad_bottom = a.pad_right = 0;
    a.height = a.width = 64;
    CHECK_FALSE(unclip::detail::plan_winograd(a, plan));
}

TEST_CASE("conv2d with a folded GroupNorm (+ SiLU) writes the bits of group_norm followed by conv2d") {
    struct Case {
        std::int64_t batch, channels, out_c, h, w;
        int kernel, stride, pad, groups;
    };
    // Winograd-sized, the packed GEMM's unfolding, a 1x1 and a stride-2 convolution.
    for (const Case& c : {Case{2, 32, 24, 20, 20, 3, 1, 1, 8}, Case{1, 12, 7, 9, 11, 3, 1, 1, 4},
                          Case{2, 8, 5, 6, 7, 1, 1, 0, 2}, Case{1, 16, 8, 13, 10, 3, 2, 1, 4}})
        for (const bool silu : {false, true}) {
            CAPTURE(c.channels);
            CAPTURE(c.kernel);
            CAPTURE(c.stride);
            CAPTURE(silu);
            CpuBackend::Context ctx(2);
            const std::int64_t spatial = c.h * c.w;
            std::vector<float> x = random_values(static_cast<std::size_t>(c.batch * c.channels * spatial), 21);
            for (float& v : x) v = 3.0f + 2.0f * v;  // an offset mean, as activations have
            const auto gamma = random_values(static_cast<std::size_t>(c.channels), 22);
            const auto beta = random_values(static_cast<std::size_t>(c.channels), 23);
            const auto w = random_values(static_cast<std::size_t>(c.out_c * c.channels * c.kernel * c.kernel), 24);
            const auto bias = random_values(static_cast<std::size_t>(c.out_c), 25);

            CpuBackend::Conv2dArgs args = square_conv(c.batch, c.channels, c.out_c, c.h, c.w, c.kernel, c.stride, c.pad);
            args.weight = w.data();
            args.bias = bias.data();
            const auto out_n = static_cast<std::size_t>(c.batch * c.out_c * args.out_height() * args.out_width());

            std::vector<float> normed(x.size()), expected(out_n);
            CpuBackend::group_norm(ctx, x.data(), gamma.data(), beta.data(), normed.data(), c.batch, c.channels, spatial,
                                   c.groups, 1e-5f, silu);
            args.x = normed.data();
            args.y = expected.data();
            unclip::Scratch plain_scratch(CpuBackend::conv2d_scratch_bytes(args));
            CpuBackend::conv2d(ctx, args, plain_scratch);

            // The map alone reproduces group_norm's output (to rounding: this file may contract
            // x * scale + shift into an fma where the library does not, or the other way round).
            std::vector<float> scale(static_cast<std::size_t>(c.batch * c.channels)), shift(scale.size());
            CpuBackend::group_norm_affine(ctx, x.data(), gamma.data(), beta.data(), c.batch, c.channels, spatial, c.groups,
                                          1e-5f, scale.data(), shift.data());
            std::vector<double> mapped(x.size());
            for (std::size_t i = 0; i < x.size(); ++i) {
                const std::size_t p = i / static_cast<std::size_t>(spatial);
                const double v = static_cast<double>(x[i]) * scale[p] + shift[p];
                mapped[i] = silu ? v / (1.0 + std::exp(-v)) : v;
            }
            CHECK(rel_l2(normed, mapped) <= 1e-6);

            std::vector<float> got(out_n, std::numeric_limits<float>::quiet_NaN());
            args.x = x.data();
            args.y = got.data();
            args.input_affine = unclip::backend::InputAffine{scale.data(), shift.data(), silu};
            unclip::Scratch scratch(CpuBackend::conv2d_scratch_bytes(args));
            CpuBackend::conv2d(ctx, args, scratch);
            CHECK(got == expected);

            args.input_affine = unclip::backend::InputAffine{};  // set, but without the arrays
            CHECK_THROWS_AS(CpuBackend::conv2d(ctx, args, scratch), unclip::Error);
        }
}

TEST_CASE("conv2d of an input upsampled by 2 (input_upsample) writes the bits of upsample_nearest followed by conv2d") {
    CpuBackend::Context ctx(2);
    // The UNet's and the VAE's upsampling convolutions (3x3, pad 1), Winograd-sized and not, with
    // a folded GroupNorm map on top.
    for (const bool mapped : {false, true})
        for (const auto& [batch, channels, out_c, low_h, low_w] :
             {std::array<std::int64_t, 5>{2, 16, 16, 10, 10}, std::array<std::int64_t, 5>{1, 5, 7, 3, 6}}) {
            CAPTURE(mapped);
            CAPTURE(channels);
            const std::int64_t h = 2 * low_h, w = 2 * low_w;
            const auto x = random_values(static_cast<std::size_t>(batch * channels * low_h * low_w), 31);
            const auto weights = random_values(static_cast<std::size_t>(out_c * channels * 9), 32);
            const auto bias = random_values(static_cast<std::size_t>(out_c), 33);
            const auto scale = random_values(static_cast<std::size_t>(batch * channels), 34);
            const auto shift = random_values(static_cast<std::size_t>(batch * channels), 35);
            CpuBackend::Conv2dArgs args = square_conv(batch, channels, out_c, h, w, 3, 1, 1);
            args.weight = weights.data();
            args.bias = bias.data();
            if (mapped) args.input_affine = unclip::backend::InputAffine{scale.data(), shift.data(), true};
            const auto out_n = static_cast<std::size_t>(batch * out_c * h * w);

            std::vector<float> upsampled(static_cast<std::size_t>(batch * channels * h * w)), expected(out_n);
            CpuBackend::upsample_nearest(ctx, x.data(), upsampled.data(), batch, channels, low_h, low_w, h, w);
            args.x = upsampled.data();
            args.y = expected.data();
            unclip::Scratch plain_scratch(CpuBackend::conv2d_scratch_bytes(args));
            CpuBackend::conv2d(ctx, args, plain_scratch);

            std::vector<float> got(out_n, std::numeric_limits<float>::quiet_NaN());
            args.x = x.data();
            args.y = got.data();
            args.input_upsample = 2;
            unclip::Scratch scratch(CpuBackend::conv2d_scratch_bytes(args));
            CpuBackend::conv2d(ctx, args, scratch);
            CHECK(got == expected);
        }
    // Only 2, and only to an even size: anything else is refused by name.
    CpuBackend::Conv2dArgs bad = square_conv(1, 2, 2, 6, 5, 3, 1, 1);
    std::vector<float> x(12), w(36), y(60);
    bad.x = x.data(), bad.weight = w.data(), bad.y = y.data();
    bad.input_upsample = 2;
    unclip::Scratch scratch(CpuBackend::conv2d_scratch_bytes(bad));
    CHECK_THROWS_WITH_AS(CpuBackend::conv2d(ctx, bad, scratch), doctest::Contains("upsampling by 2 to 6x5"), unclip::Error);
    bad.width = 6;
    bad.input_upsample = 3;
    CHECK_THROWS_WITH_AS(CpuBackend::conv2d(ctx, bad, scratch), doctest::Contains("upsampling by 3"), unclip::Error);
}

TEST_CASE("group_norm_affine with an addend maps x as GroupNorm maps x + addend") {
    CpuBackend::Context ctx(2);
    struct Case {
        std::int64_t batch, channels, spatial;
        int groups;
        float offset;  // a mean far from 0 against the spread, as activations have
    };
    for (const Case& c : {Case{2, 32, 64, 8, 0.0f}, Case{1, 12, 35, 4, 40.0f}, Case{2, 6, 1, 3, -5.0f}}) {
        CAPTURE(c.channels);
        CAPTURE(c.spatial);
        const std::int64_t planes = c.batch * c.channels;
        std::vector<float> x = random_values(static_cast<std::size_t>(planes * c.spatial), 41);
        for (float& v : x) v += c.offset;
        const auto gamma = random_values(static_cast<std::size_t>(c.channels), 42);
        const auto beta = random_values(static_cast<std::size_t>(c.channels), 43);
        std::vector<float> addend = random_values(static_cast<std::size_t>(planes), 44);
        for (float& v : addend) v *= 3.0f;

        std::vector<float> added(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) added[i] = x[i] + addend[i / static_cast<std::size_t>(c.spatial)];
        std::vector<float> scale(static_cast<std::size_t>(planes)), shift(scale.size());
        CpuBackend::group_norm_affine(ctx, added.data(), gamma.data(), beta.data(), c.batch, c.channels, c.spatial,
                                      c.groups, 1e-5f, scale.data(), shift.data());
        std::vector<float> scale2(scale.size()), shift2(scale.size());
        CpuBackend::group_norm_affine(ctx, x.data(), gamma.data(), beta.data(), c.batch, c.channels, c.spatial, c.groups,
                                      1e-5f, scale2.data(), shift2.data(), addend.data());
        std::vector<float> got(x.size());
        std::vector<double> want(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) {
            const std::size_t p = i / static_cast<std::size_t>(c.spatial);
            want[i] = static_cast<double>(added[i]) * scale[p] + shift[p];
            got[i] = x[i] * scale2[p] + shift2[p];
        }
        CHECK(rel_l2(got, want) <= 1e-5);
        CHECK(rel_l2(scale2, std::vector<double>(scale.begin(), scale.end())) <= 1e-6);
    }
}
