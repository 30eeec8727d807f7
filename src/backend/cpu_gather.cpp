// Data movement for the CLIP towers: embedding lookup and ViT patch extraction.
#include <algorithm>
#include <cstring>

#include "unclip/backend/cpu.hpp"

namespace unclip {

void CpuBackend::gather_rows(const Context& ctx, const float* table, const std::int32_t* ids, std::int64_t n,
                             std::int64_t cols, float* y) {
    ctx.parallel_for(n, std::max<std::int64_t>(1, 4096 / std::max<std::int64_t>(1, cols)),
                     [&](std::int64_t i0, std::int64_t i1) {
                         for (std::int64_t i = i0; i < i1; ++i)
                             std::memcpy(y + i * cols, table + static_cast<std::int64_t>(ids[i]) * cols,
                                         static_cast<std::size_t>(cols) * sizeof(float));
                     });
}

void CpuBackend::extract_patches(const Context& ctx, const float* x, std::int64_t batch, std::int64_t channels,
                                 std::int64_t height, std::int64_t width, int patch, float* y) {
    const std::int64_t grid_w = width / patch, grid_h = height / patch, k = patch;
    const std::int64_t row_len = channels * k * k, patches = grid_h * grid_w;
    ctx.parallel_for(batch * patches, 16, [&](std::int64_t p0, std::int64_t p1) {
        for (std::int64_t p = p0; p < p1; ++p) {
            const std::int64_t b = p / patches, py = (p % patches) / grid_w, px = p % grid_w;
            float* row = y + p * row_len;
            for (std::int64_t c = 0; c < channels; ++c)
                for (std::int64_t ky = 0; ky < k; ++ky)
                    std::memcpy(row + (c * k + ky) * k,
                                x + ((b * channels + c) * height + py * k + ky) * width + px * k,
                                static_cast<std::size_t>(k) * sizeof(float));
        }
    });
}

}  // namespace unclip
