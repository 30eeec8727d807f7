#include <cmath>
#include <vector>

#include "backend/cpu_affine.hpp"
#include "unclip/backend/cpu.hpp"

namespace unclip {

namespace {

// Mean and 1 / sqrt(biased variance + eps) of a group's per_group channels of `spatial` values,
// each channel's values x + added[c] (added may be nullptr: x alone). Two passes in double, as
// PyTorch's biased variance; one-pass E[x^2]-E[x]^2 would lose digits on large activations.
void group_statistics(const float* x, std::int64_t per_group, std::int64_t spatial, const float* added, float eps,
                      double& mean, double& rstd) {
    const auto offset = [&](std::int64_t c) { return added ? static_cast<double>(added[c]) : 0.0; };
    double sum = 0.0;
    for (std::int64_t c = 0; c < per_group; ++c) {
        double channel = 0.0;
        for (std::int64_t i = 0; i < spatial; ++i) channel += x[c * spatial + i];
        sum += channel + offset(c) * static_cast<double>(spatial);
    }
    const auto count = static_cast<double>(per_group * spatial);
    mean = sum / count;
    double squares = 0.0;
    for (std::int64_t c = 0; c < per_group; ++c) {
        const double centre = mean - offset(c);
        for (std::int64_t i = 0; i < spatial; ++i) {
            const double d = x[c * spatial + i] - centre;
            squares += d * d;
        }
    }
    rstd = 1.0 / std::sqrt(squares / count + eps);
}

}  // namespace

void CpuBackend::group_norm(const Context& ctx, const float* x, const float* gamma, const float* beta, float* y,
                            std::int64_t batch, std::int64_t channels, std::int64_t spatial, int groups, float eps,
                            bool silu) {
    const std::int64_t per_group = channels / groups;
    const std::int64_t count = per_group * spatial;
    ctx.parallel_for(batch * groups, 1, [&](std::int64_t g0, std::int64_t g1) {
        std::vector<float> scale(static_cast<std::size_t>(per_group)), shift(scale.size());
        for (std::int64_t bg = g0; bg < g1; ++bg) {
            const std::int64_t offset = bg * count;  // groups are contiguous in NCHW
            double mean = 0.0, rstd = 0.0;
            group_statistics(x + offset, per_group, spatial, nullptr, eps, mean, rstd);
            detail::group_affine(mean, rstd, gamma, beta, (bg % groups) * per_group, per_group, scale.data(), shift.data());
            for (std::int64_t c = 0; c < per_group; ++c) {
                const float* in = x + offset + c * spatial;
                float* out = y + offset + c * spatial;
                const auto i = static_cast<std::size_t>(c);
                for (std::int64_t s = 0; s < spatial; ++s) out[s] = detail::affine_silu(in[s], scale[i], shift[i], silu);
            }
        }
    });
}

void CpuBackend::group_norm_affine(const Context& ctx, const float* x, const float* gamma, const float* beta,
                                   std::int64_t batch, std::int64_t channels, std::int64_t spatial, int groups, float eps,
                                   float* scale, float* shift, const float* addend) {
    const std::int64_t per_group = channels / groups;
    const std::int64_t count = per_group * spatial;
    ctx.parallel_for(batch * groups, 1, [&](std::int64_t g0, std::int64_t g1) {
        for (std::int64_t bg = g0; bg < g1; ++bg) {
            // Group bg = b * groups + g owns outputs [bg * per_group, (bg + 1) * per_group) of [batch * channels].
            const float* added = addend ? addend + bg * per_group : nullptr;
            double mean = 0.0, rstd = 0.0;
            group_statistics(x + bg * count, per_group, spatial, added, eps, mean, rstd);
            detail::group_affine(mean, rstd, gamma, beta, (bg % groups) * per_group, per_group, scale + bg * per_group,
                                 shift + bg * per_group, added);
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
