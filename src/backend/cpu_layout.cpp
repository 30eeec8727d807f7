// Data movement between the channels-first layout of convolutions and the token layout of
// transformer blocks, and nearest-neighbour upsampling. Transposes go through 32x32 blocks so that
// both the reads and the writes stay within a few cache lines.
#include <algorithm>
#include <cstring>

#include "unclip/backend/cpu.hpp"
#include "unclip/nn/timestep_embedding.hpp"

namespace unclip {
namespace {
constexpr std::int64_t kTile = 32;

template <bool Accumulate>
void transpose_blocks(const CpuBackend::Context& ctx, const float* x, float* y, std::int64_t batch, std::int64_t rows,
                      std::int64_t cols) {
    // x: [batch, rows, cols] -> y: [batch, cols, rows]
    const std::int64_t row_tiles = (rows + kTile - 1) / kTile;
    ctx.parallel_for(batch * row_tiles, 1, [&](std::int64_t t0, std::int64_t t1) {
        for (std::int64_t t = t0; t < t1; ++t) {
            const std::int64_t b = t / row_tiles, r0 = (t % row_tiles) * kTile, r1 = std::min(rows, r0 + kTile);
            const float* in = x + b * rows * cols;
            float* out = y + b * rows * cols;
            for (std::int64_t c0 = 0; c0 < cols; c0 += kTile) {
                const std::int64_t c1 = std::min(cols, c0 + kTile);
                for (std::int64_t c = c0; c < c1; ++c)
                    for (std::int64_t r = r0; r < r1; ++r) {
                        if constexpr (Accumulate) out[c * rows + r] += in[r * cols + c];
                        else out[c * rows + r] = in[r * cols + c];
                    }
            }
        }
    });
}
}  // namespace

void CpuBackend::channels_to_tokens(const Context& ctx, const float* x, float* y, std::int64_t batch,
                                    std::int64_t channels, std::int64_t spatial) {
    transpose_blocks<false>(ctx, x, y, batch, channels, spatial);
}

void CpuBackend::tokens_to_channels(const Context& ctx, const float* x, float* y, std::int64_t batch,
                                    std::int64_t channels, std::int64_t spatial, bool accumulate) {
    if (accumulate) transpose_blocks<true>(ctx, x, y, batch, spatial, channels);
    else transpose_blocks<false>(ctx, x, y, batch, spatial, channels);
}

void CpuBackend::upsample_nearest(const Context& ctx, const float* x, float* y, std::int64_t batch,
                                  std::int64_t channels, std::int64_t h, std::int64_t w, std::int64_t out_h,
                                  std::int64_t out_w) {
    ctx.parallel_for(batch * channels, 1 + 16384 / std::max<std::int64_t>(1, out_h * out_w),
                     [&](std::int64_t p0, std::int64_t p1) {
                         for (std::int64_t p = p0; p < p1; ++p) {
                             const float* in = x + p * h * w;
                             float* out = y + p * out_h * out_w;
                             for (std::int64_t oy = 0; oy < out_h; ++oy) {
                                 const float* row = in + std::min(h - 1, oy * h / out_h) * w;
                                 for (std::int64_t ox = 0; ox < out_w; ++ox)
                                     out[oy * out_w + ox] = row[std::min(w - 1, ox * w / out_w)];
                             }
                         }
                     });
}

void CpuBackend::upload(const Context& ctx, const float* host, float* y, std::int64_t n) { copy(ctx, host, y, n); }
void CpuBackend::download(const Context& ctx, const float* x, float* host, std::int64_t n) { copy(ctx, x, host, n); }

void CpuBackend::copy(const Context&, const float* x, float* y, std::int64_t n) {
    if (n > 0 && x != y) std::memmove(y, x, sizeof(float) * static_cast<std::size_t>(n));
}

void CpuBackend::concat_channels(const Context&, const float* a, std::int64_t c1, const float* b, std::int64_t c2,
                                 float* y, std::int64_t batch, std::int64_t spatial) {
    for (std::int64_t i = 0; i < batch; ++i) {
        std::memcpy(y + i * (c1 + c2) * spatial, a + i * c1 * spatial, sizeof(float) * static_cast<std::size_t>(c1 * spatial));
        std::memcpy(y + (i * (c1 + c2) + c1) * spatial, b + i * c2 * spatial,
                    sizeof(float) * static_cast<std::size_t>(c2 * spatial));
    }
}

void CpuBackend::timestep_embedding(const Context&, const float* timesteps, std::int64_t batch, std::int64_t dim,
                                    float* out) {
    nn::timestep_embedding(timesteps, batch, dim, out);
}

}  // namespace unclip
