// Winograd F(4x4, 3x3) against a direct convolution in double, with the chunking and weight
// blocking forced by small budgets (the real budgets only split images far larger than a test's).
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <doctest/doctest.h>

#include "backend/kernel_table.hpp"
#include "backend/winograd.hpp"
#include "unclip/backend/cpu.hpp"

using unclip::CpuBackend;

namespace {

std::vector<float> normal_values(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

std::vector<double> direct_conv3x3(const CpuBackend::Conv2dArgs& a, const std::vector<float>& x,
                                   const std::vector<float>& w, const std::vector<float>& bias) {
    const std::int64_t ho = a.out_height(), wo = a.out_width();
    std::vector<double> y(static_cast<std::size_t>(a.batch * a.out_channels * ho * wo));
    for (std::int64_t b = 0; b < a.batch; ++b)
        for (std::int64_t o = 0; o < a.out_channels; ++o)
            for (std::int64_t oy = 0; oy < ho; ++oy)
                for (std::int64_t ox = 0; ox < wo; ++ox) {
                    double sum = bias[o];
                    for (std::int64_t c = 0; c < a.in_channels; ++c)
                        for (int ky = 0; ky < 3; ++ky)
                            for (int kx = 0; kx < 3; ++kx) {
                                const std::int64_t iy = oy - a.pad_top + ky, ix = ox - a.pad_left + kx;
                                if (iy < 0 || iy >= a.height || ix < 0 || ix >= a.width) continue;
                                sum += static_cast<double>(x[((b * a.in_channels + c) * a.height + iy) * a.width + ix]) *
                                       w[((o * a.in_channels + c) * 3 + ky) * 3 + kx];
                            }
                    y[((b * a.out_channels + o) * ho + oy) * wo + ox] = sum;
                }
    return y;
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

}  // namespace

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
    const auto x = normal_values(static_cast<std::size_t>(a.batch * a.in_channels * a.height * a.width), 1);
    const auto w = normal_values(static_cast<std::size_t>(a.out_channels * a.in_channels * 9), 2);
    const auto bias = normal_values(static_cast<std::size_t>(a.out_channels), 3);
    a.x = x.data();
    a.weight = w.data();
    a.bias = bias.data();
    const std::vector<double> expected = direct_conv3x3(a, x, w, bias);

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
