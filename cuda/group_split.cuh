#pragma once
// How GroupNorm's statistics split a group over blocks, as host-and-device code so that a host
// test can check that the pieces cover every element of the group once.
#include <cstdint>

namespace unclip::cuda {

// A group of per_group channels of `spatial` values (contiguous in NCHW) in `splits` pieces.
// Without channel alignment, piece k is elements [k chunk, (k + 1) chunk) of the group; with it
// (an addend per channel: each piece must lie in one channel), piece k is part k % pieces_per_channel
// of channel k / pieces_per_channel.
struct GroupSplit {
    std::int64_t splits = 1, chunk = 1;
    std::int64_t pieces_per_channel = 0;  // 0: not channel-aligned
};

struct GroupPiece {
    std::int64_t begin, end;  // element range within the group
    std::int64_t channel;     // within the group; -1 when not channel-aligned
};

__host__ __device__ inline GroupPiece group_piece(const GroupSplit& s, std::int64_t per_group, std::int64_t spatial,
                                                  std::int64_t k) {
    if (s.pieces_per_channel == 0) {
        const std::int64_t begin = k * s.chunk, count = per_group * spatial;
        return {begin, begin + s.chunk < count ? begin + s.chunk : count, -1};
    }
    const std::int64_t channel = k / s.pieces_per_channel, part = k % s.pieces_per_channel;
    const std::int64_t begin = channel * spatial + part * s.chunk, channel_end = (channel + 1) * spatial;
    return {begin, begin + s.chunk < channel_end ? begin + s.chunk : channel_end, channel};
}

// About target_blocks blocks over groups_total groups, each piece at least min_chunk elements
// where the group allows, chunks a multiple of 4 (the float4 path); no piece is empty.
inline GroupSplit split_groups(std::int64_t per_group, std::int64_t spatial, std::int64_t groups_total,
                               std::int64_t target_blocks, std::int64_t min_chunk, bool channel_aligned) {
    auto clamp = [](std::int64_t v, std::int64_t lo, std::int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); };
    auto round4 = [](std::int64_t v) { return (v + 3) / 4 * 4; };
    GroupSplit s;
    if (!channel_aligned) {
        const std::int64_t count = per_group * spatial;
        const std::int64_t splits =
            clamp((target_blocks + groups_total - 1) / groups_total, 1, (count + min_chunk - 1) / min_chunk);
        s.chunk = round4((count + splits - 1) / splits);
        s.splits = (count + s.chunk - 1) / s.chunk;
        return s;
    }
    const std::int64_t channels_total = groups_total * per_group;
    const std::int64_t pieces =
        clamp((target_blocks + channels_total - 1) / channels_total, 1, (spatial + min_chunk - 1) / min_chunk);
    s.chunk = round4((spatial + pieces - 1) / pieces);
    s.pieces_per_channel = (spatial + s.chunk - 1) / s.chunk;
    s.splits = per_group * s.pieces_per_channel;
    return s;
}

}  // namespace unclip::cuda
