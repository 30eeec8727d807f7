#include <algorithm>
#include <cmath>

#include "unclip/backend/cpu.hpp"

namespace unclip {
namespace {
constexpr std::int64_t kGrain = 1 << 14;
}

void CpuBackend::silu(const Context& ctx, const float* x, float* y, std::int64_t n) {
    ctx.parallel_for(n, kGrain, [&](std::int64_t i0, std::int64_t i1) {
        for (std::int64_t i = i0; i < i1; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i]));
    });
}

void CpuBackend::add_channel_bias(const Context& ctx, const float* x, const float* bias, float* y, std::int64_t batch,
                                  std::int64_t channels, std::int64_t spatial) {
    ctx.parallel_for(batch * channels, 1 + kGrain / std::max<std::int64_t>(1, spatial),
                     [&](std::int64_t p0, std::int64_t p1) {
                         for (std::int64_t p = p0; p < p1; ++p) {
                             const float* in = x + p * spatial;
                             float* out = y + p * spatial;
                             const float value = bias[p % channels];
                             for (std::int64_t s = 0; s < spatial; ++s) out[s] = in[s] + value;
                         }
                     });
}

void CpuBackend::add_row_bias(const Context& ctx, float* y, const float* bias, std::int64_t rows, std::int64_t cols) {
    ctx.parallel_for(rows, 1 + kGrain / std::max<std::int64_t>(1, cols), [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r)
            for (std::int64_t c = 0; c < cols; ++c) y[r * cols + c] += bias[c];
    });
}

void CpuBackend::add(const Context& ctx, const float* x, float* y, std::int64_t n) {
    ctx.parallel_for(n, kGrain, [&](std::int64_t i0, std::int64_t i1) {
        for (std::int64_t i = i0; i < i1; ++i) y[i] += x[i];
    });
}

}  // namespace unclip
