#pragma once
// How a 3x3 stride-1 convolution runs as Winograd F(4x4, 3x3): each 4x4 block of output ("tile")
// comes from a 6x6 input patch, and the 36 points of the transformed patch and weights multiply
// as 36 independent GEMMs [C_out x C_in] x [C_in x tiles], which take 4x fewer multiplications
// than the direct convolution. Tiles go through in chunks of whole tile rows and output channels
// in blocks, so the scratch stays bounded whatever the image and channel counts.
#include <algorithm>
#include <cstdint>

#include "unclip/backend/args.hpp"

namespace unclip::detail {

inline constexpr int kWinogradPoints = 36;  // 6 x 6 transformed points per tile

struct WinogradPlan {
    std::int64_t tiles_y = 0, tiles_x = 0;  // per image
    std::int64_t chunk_rows = 0;            // tile rows (counted over batch * tiles_y) per chunk
    std::int64_t out_block = 0;             // output channels per transformed-weight block
    std::int64_t scratch_floats = 0;        // weights U, inputs V and products M of one chunk and block
};

// Scratch budgets (floats): the transformed weights of one output-channel block, and the
// transformed inputs plus products of one chunk.
inline constexpr std::int64_t kWinogradWeightFloats = std::int64_t{1} << 25;  // 128 MiB
inline constexpr std::int64_t kWinogradChunkFloats = std::int64_t{1} << 25;   // 128 MiB
// Below these the transforms cost more than the multiplications they save (bench_cpu_ops).
inline constexpr std::int64_t kWinogradMinTiles = 64;
inline constexpr std::int64_t kWinogradMinChannels = 16;

// Whether Winograd serves this convolution, and how (smaller budgets only in tests).
inline bool plan_winograd(const backend::Conv2dArgs& a, WinogradPlan& plan,
                          std::int64_t weight_budget = kWinogradWeightFloats,
                          std::int64_t chunk_budget = kWinogradChunkFloats) {
    if (a.kernel_h != 3 || a.kernel_w != 3 || a.stride != 1) return false;
    if (a.in_channels < kWinogradMinChannels || a.out_channels < kWinogradMinChannels || a.batch <= 0) return false;
    const std::int64_t ho = a.out_height(), wo = a.out_width();
    if (ho <= 0 || wo <= 0) return false;
    plan.tiles_y = (ho + 3) / 4;
    plan.tiles_x = (wo + 3) / 4;
    const std::int64_t tile_rows = a.batch * plan.tiles_y;
    if (tile_rows * plan.tiles_x < kWinogradMinTiles) return false;
    const std::int64_t per_channel = kWinogradPoints * a.in_channels;
    plan.out_block = std::min(a.out_channels, std::max<std::int64_t>(14, weight_budget / per_channel / 14 * 14));
    const std::int64_t per_row = kWinogradPoints * plan.tiles_x * (a.in_channels + plan.out_block);
    plan.chunk_rows = std::clamp<std::int64_t>(chunk_budget / per_row, 1, tile_rows);
    plan.scratch_floats = per_channel * plan.out_block + per_row * plan.chunk_rows;
    return true;
}

}  // namespace unclip::detail
