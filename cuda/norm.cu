// GroupNorm (+ SiLU) and LayerNorm with statistics in double, as the CPU backend computes them.
//
// GroupNorm runs in three launches so that the whole GPU works even with few groups (64 groups of
// 92160 elements at 768 px, against 132 SMs). group_partials_kernel: block (g, k) reads chunk k of
// group g and writes its (count, mean, M2) to the workspace; group_stats_kernel: one warp per
// group merges the chunks in a fixed order (Chan et al.) into float (mean, rstd);
// group_normalize_kernel: blocks (plane, j) normalise a (batch, channel) plane. x and y may alias:
// only the last launch writes, and each thread reads an element before writing it.
// group_norm_affine stops after the statistics, whose kernel then writes each channel's scale and
// shift for a convolution to apply while it reads (Conv2dArgs::input_affine).
//
// LayerNorm: one warp per row, three passes over the row (sum, centred squares, normalise); the
// row (up to a few thousand columns) is still in L1 for the later passes. x and y may alias.
//
// float4 paths need 16-byte aligned pointers and lengths that are multiples of 4. The affine step
// rounds every operation as the CPU does (no FMA contraction), so both backends agree to an ulp or
// two.
#include <algorithm>
#include <cstdint>
#include <string>

#include "check.cuh"
#include "context.cuh"
#include "convert.cuh"
#include "group_split.cuh"
#include "unclip/backend/cuda.hpp"
#include "unclip/error.hpp"

namespace unclip {
namespace {
using cuda::aligned16;
using cuda::aligned_to;
using cuda::first_index;
using cuda::grid_stride;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

struct Partial {
    double count, mean, m2;  // M2: sum of squared deviations from mean
};

__device__ double warp_sum(double v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Sums a and b over a block of kThreads threads; the totals are valid in thread 0. Once per block.
__device__ void block_sum(double& a, double& b) {
    __shared__ double partial[2][kWarps];
    a = warp_sum(a);
    b = warp_sum(b);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) partial[0][warp] = a, partial[1][warp] = b;
    __syncthreads();
    if (warp == 0) {
        a = warp_sum(lane < kWarps ? partial[0][lane] : 0.0);
        b = warp_sum(lane < kWarps ? partial[1][lane] : 0.0);
    }
}

// Block (g, k) covers piece k (cuda::group_piece) of group g, which starts at x + g * count
// (groups are contiguous in NCHW). Sums are taken about the piece's first element, so the one-pass
// M2 = S2 - S1^2 / n does not cancel even when the mean is large against the spread. Piece bounds
// are multiples of 4 when vectorized. With an addend (channel-aligned pieces), the values are
// x + addend[g * per_group + channel]: the partial's mean moves by the addend, its M2 does not.
__global__ void group_partials_kernel(const float* x, std::int64_t per_group, std::int64_t spatial,
                                      cuda::GroupSplit split, const float* addend, bool vectorized, Partial* partials) {
    const float* group = x + std::int64_t{blockIdx.x} * per_group * spatial;
    const cuda::GroupPiece piece = cuda::group_piece(split, per_group, spatial, blockIdx.y);
    const std::int64_t begin = piece.begin, end = piece.end;
    const double shift = group[begin];
    double s1 = 0.0, s2 = 0.0;
    if (vectorized) {
        for (std::int64_t i = begin / 4 + threadIdx.x; i < end / 4; i += kThreads) {
            const float4 v = reinterpret_cast<const float4*>(group)[i];
            const double d0 = v.x - shift, d1 = v.y - shift, d2 = v.z - shift, d3 = v.w - shift;
            s1 += (d0 + d1) + (d2 + d3);
            s2 += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
        }
    } else {
        for (std::int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
            const double d = group[i] - shift;
            s1 += d;
            s2 += d * d;
        }
    }
    block_sum(s1, s2);
    if (threadIdx.x == 0) {
        const auto n = static_cast<double>(end - begin);
        const double moved = addend ? addend[std::int64_t{blockIdx.x} * per_group + piece.channel] : 0.0;
        partials[std::int64_t{blockIdx.x} * gridDim.y + blockIdx.y] = {n, shift + s1 / n + moved, s2 - s1 * s1 / n};
    }
}

// stats[g] = (mean, 1 / sqrt(biased variance + eps)) from the splits partials of group g. Warp w
// of the grid takes groups w, w + warps in grid, ...: its lanes load 32 partials at a time into
// shared memory together, and lane 0 merges them in order from there, so the merge waits on no
// global load.
// With `affine` (group_norm_affine), the warp then also writes the per-channel map of its group's
// channels, as group_normalize_kernel computes it: scale = rstd * gamma, shift = beta - mean * scale.
struct AffineOut {
    const float* gamma = nullptr;
    const float* beta = nullptr;
    float* scale = nullptr;  // [groups_total * per_group]; nullptr: stats only
    float* shift = nullptr;
    const float* addend = nullptr;  // [groups_total * per_group]: the map takes x, not x + addend
    int per_group = 0, groups = 0;
};

__global__ void group_stats_kernel(const Partial* partials, std::int64_t groups_total, int splits, float eps,
                                   float2* stats, AffineOut affine) {
    __shared__ Partial staged[kWarps][32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (std::int64_t g = std::int64_t{blockIdx.x} * kWarps + warp; g < groups_total; g += std::int64_t{gridDim.x} * kWarps) {
        const Partial* p = partials + g * splits;
        double n = 0.0, mean = 0.0, m2 = 0.0;
        for (int base = 0; base < splits; base += 32) {
            if (base + lane < splits) staged[warp][lane] = p[base + lane];
            __syncwarp();
            if (lane == 0) {
                const int end = min(32, splits - base);
                for (int k = 0; k < end; ++k) {
                    const Partial q = staged[warp][k];
                    if (base + k == 0) {
                        n = q.count, mean = q.mean, m2 = q.m2;
                        continue;
                    }
                    const double total = n + q.count, delta = q.mean - mean;
                    mean += delta * q.count / total;
                    m2 += q.m2 + delta * delta * n * q.count / total;
                    n = total;
                }
            }
            __syncwarp();
        }
        float2 stat{};
        if (lane == 0) {
            const double rstd = 1.0 / sqrt(fmax(m2, 0.0) / n + eps);
            stat = make_float2(static_cast<float>(mean), static_cast<float>(rstd));
            stats[g] = stat;
        }
        if (affine.scale) {
            stat.x = __shfl_sync(0xffffffffu, stat.x, 0);
            stat.y = __shfl_sync(0xffffffffu, stat.y, 0);
            const std::int64_t c0 = (g % affine.groups) * affine.per_group;
            for (int c = lane; c < affine.per_group; c += 32) {
                const float scale = __fmul_rn(stat.y, affine.gamma[c0 + c]);
                // (x + a - mean) scale + beta = x scale + (beta - (mean - a) scale)
                const float centre = affine.addend ? __fsub_rn(stat.x, affine.addend[g * affine.per_group + c]) : stat.x;
                affine.scale[g * affine.per_group + c] = scale;
                affine.shift[g * affine.per_group + c] = __fsub_rn(affine.beta[c0 + c], __fmul_rn(centre, scale));
            }
        }
    }
}

template <bool Silu>
__device__ float affine(float v, float scale, float shift) {
    const float out = __fadd_rn(__fmul_rn(v, scale), shift);
    return Silu ? out / (1.0f + expf(-out)) : out;
}

// Block (p, j) handles plane p = b * channels + c (and p + gridDim.x, ...), elements j * kThreads +
// threadIdx.x strided by gridDim.y * kThreads. spatial % 4 == 0 when vectorized.
template <bool Silu>
__global__ void group_normalize_kernel(const float* x, const float* gamma, const float* beta, float* y,
                                       const float2* stats, std::int64_t planes, std::int64_t channels,
                                       std::int64_t spatial, std::int64_t per_group, int groups, bool vectorized) {
    const std::int64_t first = std::int64_t{blockIdx.y} * kThreads + threadIdx.x;
    const std::int64_t stride = std::int64_t{gridDim.y} * kThreads;
    for (std::int64_t plane = blockIdx.x; plane < planes; plane += gridDim.x) {
        const std::int64_t c = plane % channels, b = plane / channels;
        const float2 stat = stats[b * groups + c / per_group];
        const float scale = __fmul_rn(stat.y, gamma[c]);
        const float shift = __fsub_rn(beta[c], __fmul_rn(stat.x, scale));
        const float* in = x + plane * spatial;
        float* out = y + plane * spatial;
        if (vectorized) {
            for (std::int64_t i = first; i < spatial / 4; i += stride) {
                float4 v = reinterpret_cast<const float4*>(in)[i];
                v.x = affine<Silu>(v.x, scale, shift), v.y = affine<Silu>(v.y, scale, shift);
                v.z = affine<Silu>(v.z, scale, shift), v.w = affine<Silu>(v.w, scale, shift);
                reinterpret_cast<float4*>(out)[i] = v;
            }
        } else {
            for (std::int64_t i = first; i < spatial; i += stride) out[i] = affine<Silu>(in[i], scale, shift);
        }
    }
}

// Warp w of the grid handles rows w, w + warps in grid, ...; lane l takes columns (or float4s)
// l, l + 32, ... in every pass. cols % 4 == 0 when vectorized.
template <class To>
__global__ void layer_norm_kernel(const float* x, const float* gamma, const float* beta, To* y,
                                  std::int64_t rows, std::int64_t cols, float eps, bool vectorized) {
    const int lane = threadIdx.x % 32;
    const std::int64_t vectors = cols / 4;
    for (std::int64_t row = std::int64_t{blockIdx.x} * kWarps + threadIdx.x / 32; row < rows;
         row += std::int64_t{gridDim.x} * kWarps) {
        const float* in = x + row * cols;
        To* out = y + row * cols;
        const auto* in4 = reinterpret_cast<const float4*>(in);

        double sum = 0.0;
        if (vectorized) {
            for (std::int64_t i = lane; i < vectors; i += 32) {
                const float4 v = in4[i];
                sum += (static_cast<double>(v.x) + v.y) + (static_cast<double>(v.z) + v.w);
            }
        } else {
            for (std::int64_t i = lane; i < cols; i += 32) sum += in[i];
        }
        const double mean = warp_sum(sum) / static_cast<double>(cols);

        double squares = 0.0;
        if (vectorized) {
            for (std::int64_t i = lane; i < vectors; i += 32) {
                const float4 v = in4[i];
                const double d0 = v.x - mean, d1 = v.y - mean, d2 = v.z - mean, d3 = v.w - mean;
                squares += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
            }
        } else {
            for (std::int64_t i = lane; i < cols; i += 32) squares += (in[i] - mean) * (in[i] - mean);
        }
        const auto rstd = static_cast<float>(1.0 / sqrt(warp_sum(squares) / static_cast<double>(cols) + eps));
        const auto m = static_cast<float>(mean);

        // (x - m) * rstd * gamma + beta, rounded step by step as on the CPU.
        if (vectorized) {
            const auto* gamma4 = reinterpret_cast<const float4*>(gamma);
            const auto* beta4 = reinterpret_cast<const float4*>(beta);
            for (std::int64_t i = lane; i < vectors; i += 32) {
                const float4 v = in4[i], g = gamma4[i], b = beta4[i];
                cuda::store4(out, i, __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(v.x, m), rstd), g.x), b.x),
                             __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(v.y, m), rstd), g.y), b.y),
                             __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(v.z, m), rstd), g.z), b.z),
                             __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(v.w, m), rstd), g.w), b.w));
            }
        } else {
            for (std::int64_t i = lane; i < cols; i += 32)
                out[i] = cuda::from_float<To>(__fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(in[i], m), rstd), gamma[i]), beta[i]));
        }
    }
}

}  // namespace

namespace {

// group_partials_kernel and group_stats_kernel over [batch, channels, spatial]: (mean, rstd) per
// group into `stats` (in the workspace, returned) and, with affine.scale, the per-channel map.
float2* launch_group_statistics(cuda::ContextState& state, const float* x, std::int64_t batch, std::int64_t channels,
                                std::int64_t spatial, int groups, float eps, AffineOut affine) {
    const std::int64_t groups_total = batch * groups, per_group = channels / groups;
    const std::int64_t count = per_group * spatial;
    // About 8 blocks per SM in all, each piece at least 8 elements per thread.
    const cuda::GroupSplit split = cuda::split_groups(per_group, spatial, groups_total,
                                                      8 * std::int64_t{std::max(1, state.multiprocessors)},
                                                      8 * std::int64_t{kThreads}, affine.addend != nullptr);

    const std::size_t partial_bytes =
        (static_cast<std::size_t>(groups_total * split.splits) * sizeof(Partial) + 15) / 16 * 16;
    auto* workspace = static_cast<unsigned char*>(
        state.workspace(partial_bytes + static_cast<std::size_t>(groups_total) * sizeof(float2)));
    auto* partials = reinterpret_cast<Partial*>(workspace);
    auto* stats = reinterpret_cast<float2*>(workspace + partial_bytes);

    const bool vectorized_stats = (affine.addend ? spatial : count) % 4 == 0 && aligned16(x);
    group_partials_kernel<<<dim3(static_cast<unsigned>(groups_total), static_cast<unsigned>(split.splits)), kThreads,
                            0, state.stream>>>(x, per_group, spatial, split, affine.addend, vectorized_stats, partials);
    UNCLIP_CUDA_CHECK_LAUNCH();
    affine.per_group = static_cast<int>(per_group);
    affine.groups = groups;
    group_stats_kernel<<<cuda::blocks_for(groups_total, kWarps), kThreads, 0, state.stream>>>(
        partials, groups_total, static_cast<int>(split.splits), eps, stats, affine);
    UNCLIP_CUDA_CHECK_LAUNCH();
    return stats;
}

void check_groups(const char* what, std::int64_t channels, int groups) {
    if (groups <= 0 || channels % groups != 0)
        throw Error(Status::invalid_argument, std::string(what) + ": " + std::to_string(channels) +
                                                  " channels do not split into " + std::to_string(groups) + " groups");
}

}  // namespace

void CudaBackend::group_norm(const Context& ctx, const float* x, const float* gamma, const float* beta, float* y,
                             std::int64_t batch, std::int64_t channels, std::int64_t spatial, int groups, float eps,
                             bool silu) {
    check_groups("group_norm", channels, groups);
    if (batch <= 0 || channels <= 0 || spatial <= 0) return;
    cuda::ContextState& state = ctx.state();
    const std::int64_t per_group = channels / groups, planes = batch * channels;
    const float2* stats = launch_group_statistics(state, x, batch, channels, spatial, groups, eps, {});

    const bool vectorized = spatial % 4 == 0 && aligned16(x) && aligned16(y);
    const std::int64_t items = vectorized ? spatial / 4 : spatial;
    const dim3 grid(static_cast<unsigned>(std::min<std::int64_t>(planes, 1 << 30)),
                    static_cast<unsigned>(std::clamp<std::int64_t>((items + 4 * kThreads - 1) / (4 * kThreads), 1, 65535)));
    if (silu)
        group_normalize_kernel<true><<<grid, kThreads, 0, state.stream>>>(x, gamma, beta, y, stats, planes, channels,
                                                                          spatial, per_group, groups, vectorized);
    else
        group_normalize_kernel<false><<<grid, kThreads, 0, state.stream>>>(x, gamma, beta, y, stats, planes, channels,
                                                                           spatial, per_group, groups, vectorized);
    UNCLIP_CUDA_CHECK_LAUNCH();
}

void CudaBackend::group_norm_affine(const Context& ctx, const float* x, const float* gamma, const float* beta,
                                    std::int64_t batch, std::int64_t channels, std::int64_t spatial, int groups, float eps,
                                    float* scale, float* shift, const float* addend) {
    check_groups("group_norm_affine", channels, groups);
    if (batch <= 0 || channels <= 0 || spatial <= 0) return;
    AffineOut affine;
    affine.gamma = gamma;
    affine.beta = beta;
    affine.scale = scale;
    affine.shift = shift;
    affine.addend = addend;
    launch_group_statistics(ctx.state(), x, batch, channels, spatial, groups, eps, affine);
}

void CudaBackend::layer_norm(const Context& ctx, const float* x, const float* gamma, const float* beta, float* y,
                             std::int64_t rows, std::int64_t cols, float eps) {
    if (rows <= 0 || cols <= 0) return;
    const bool vectorized = cols % 4 == 0 && aligned16(x) && aligned16(y) && aligned16(gamma) && aligned16(beta);
    layer_norm_kernel<<<cuda::blocks_for(rows, kWarps), kThreads, 0, ctx.state().stream>>>(x, gamma, beta, y, rows,
                                                                                           cols, eps, vectorized);
    UNCLIP_CUDA_CHECK_LAUNCH();
}

void CudaBackend::layer_norm_rounded(const Context& ctx, const float* x, const float* gamma, const float* beta, void* y,
                                     DType y_dtype, std::int64_t rows, std::int64_t cols, float eps) {
    cuda::with_half_type(y_dtype, "CUDA layer_norm_rounded", [&](auto half) {
        using To = decltype(half);
        if (rows <= 0 || cols <= 0) return;
        const bool vectorized = cols % 4 == 0 && aligned16(x) && aligned_to(y, 8) && aligned16(gamma) && aligned16(beta);
        layer_norm_kernel<<<cuda::blocks_for(rows, kWarps), kThreads, 0, ctx.state().stream>>>(
            x, gamma, beta, static_cast<To*>(y), rows, cols, eps, vectorized);
        UNCLIP_CUDA_CHECK_LAUNCH();
    });
}

}  // namespace unclip
