#include <cmath>

#include "unclip/backend/cpu.hpp"

namespace unclip {

void CpuBackend::group_norm(const Context& ctx, const float* x, const float* gamma, const float* beta, float* y,
                            std::int64_t batch, std::int64_t channels, std::int64_t spatial, int groups, float eps,
                            bool silu) {
    const std::int64_t per_group = channels / groups;
    const std::int64_t count = per_group * spatial;
    ctx.parallel_for(batch * groups, 1, [&](std::int64_t g0, std::int64_t g1) {
        for (std::int64_t bg = g0; bg < g1; ++bg) {
            const std::int64_t offset = bg * count;  // groups are contiguous in NCHW
            // Two passes in double: the mean first, then the centred sum of squares, as PyTorch's
            // biased variance; one-pass E[x^2]-E[x]^2 would lose digits on large activations.
            double sum = 0.0;
            for (std::int64_t i = 0; i < count; ++i) sum += x[offset + i];
            const double mean = sum / static_cast<double>(count);
            double squares = 0.0;
            for (std::int64_t i = 0; i < count; ++i) {
                const double d = x[offset + i] - mean;
                squares += d * d;
            }
            const double rstd = 1.0 / std::sqrt(squares / static_cast<double>(count) + eps);
            const std::int64_t c0 = (bg % groups) * per_group;
            for (std::int64_t c = 0; c < per_group; ++c) {
                const float scale = static_cast<float>(rstd) * gamma[c0 + c];
                const float shift = beta[c0 + c] - static_cast<float>(mean) * scale;
                const float* in = x + offset + c * spatial;
                float* out = y + offset + c * spatial;
                for (std::int64_t s = 0; s < spatial; ++s) {
                    const float v = in[s] * scale + shift;
                    out[s] = silu ? v / (1.0f + std::exp(-v)) : v;
                }
            }
        }
    });
}

}  // namespace unclip

namespace unclip {

void CpuBackend::layer_norm(const Context& ctx, const float* x, const float* gamma, const float* beta, float* y,
                            std::int64_t rows, std::int64_t cols, float eps) {
    ctx.parallel_for(rows, 1 + 4096 / std::max<std::int64_t>(1, cols), [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
            const float* in = x + r * cols;
            float* out = y + r * cols;
            double sum = 0.0;
            for (std::int64_t c = 0; c < cols; ++c) sum += in[c];
            const double mean = sum / static_cast<double>(cols);
            double squares = 0.0;
            for (std::int64_t c = 0; c < cols; ++c) squares += (in[c] - mean) * (in[c] - mean);
            const auto rstd = static_cast<float>(1.0 / std::sqrt(squares / static_cast<double>(cols) + eps));
            const auto m = static_cast<float>(mean);
            for (std::int64_t c = 0; c < cols; ++c) out[c] = (in[c] - m) * rstd * gamma[c] + beta[c];
        }
    });
}

}  // namespace unclip
