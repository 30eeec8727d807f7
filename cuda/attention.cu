// CudaBackend::attention: flash attention. Tiles of queries meet tiles of keys with an online
// softmax in fp32 (running row maximum m, denominator l, unnormalised output O, as the CPU's
// attend_block in src/backend/isa/kernels.cpp); the q_len x kv_len matrix is never stored.
//
//   head_dim 16, 32, ..., 128 (steps of 16)   flash_kernel: fp16 mma.sync, 128 or 256 queries per
//                                             block, 16 or 32 per warp (CudaBackend::FlashTile)
//   head_dim 256, 512 (the VAE's one head)    wide_head_kernel: fp16 mma.sync, 64 queries per block
//   any other head_dim                        fp32_kernel: plain fp32 arithmetic, also on GPUs
//                                             before sm_80 and where shared memory is short
//
// The tensor-core paths first round K and V to fp16 in the context's workspace, head-major and
// zero-padded to whole key tiles ([B*H, L_pad, D]): every query block reads all keys of its head,
// so rounding them once halves that traffic, and the padded copy lets tiles arrive by cp.async
// without bounds checks. Q is scaled by scale * log2(e) before rounding, so the softmax runs on
// exp2. Scores and P are rounded to fp16 for the products only; sums, maxima and O stay fp32.
//
// Measured (K/V rounding included): the 768 px UNet's self-attention, 2 x 9216 tokens x 5 heads
// of 64, 0.87 ms (249 TFLOP/s) on an H100 with the default 4x32 tile (8x16: 1.16 ms); on an H200
// with 8x16, 0.95 ms, 2 x 16384 tokens 2.7 ms, and the VAE's one head of 512 over 9216 tokens
// 2.1 ms (84 TFLOP/s). The fp32 path is for odd test dims only:
// 2 x 4096 tokens x 4 heads of 40 take 28 ms.
#include <cuda_fp16.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "check.cuh"
#include "context.cuh"
#include "unclip/backend/cuda.hpp"
#include "unclip/error.hpp"

namespace unclip::cuda {
namespace {

using Args = CudaBackend::AttentionArgs;
using std::int64_t;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kMinusInf = -INFINITY;
// Key tiles of both tensor-core kernels divide this, so one padding serves both.
constexpr int kKeyPadding = 64;

// ---- Which block does what -----------------------------------------------------------------
struct QueryBlock {
    int64_t batch;
    int head;
    int64_t q0;  // first query row
};

// Blocks of one head are adjacent (they share its keys in L2); within a head the last query
// blocks come first, since under a causal mask they see the most keys.
__device__ QueryBlock query_block_of(const Args& a, int rows) {
    const int64_t q_blocks = (a.q_len + rows - 1) / rows;
    const int64_t head_index = blockIdx.x / q_blocks;
    const int64_t block = q_blocks - 1 - static_cast<int64_t>(blockIdx.x) % q_blocks;
    return {head_index / a.heads, static_cast<int>(head_index % a.heads), block * rows};
}

__device__ int64_t causal_key_end(const Args& a, int64_t q0, int rows) {
    return a.causal ? min(a.kv_len, q0 + rows) : a.kv_len;
}

// ---- PTX wrappers ----------------------------------------------------------------------------
// cp.async and the m16n8k16 mma need sm_80. A build for older GPUs as well compiles them to
// nothing there, and the launcher never picks a tensor-core kernel on such a device.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define UNCLIP_ATTENTION_SM80 1
#else
#define UNCLIP_ATTENTION_SM80 0
#endif

#if UNCLIP_ATTENTION_SM80
__device__ __forceinline__ unsigned shared_address(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
#endif

__device__ __forceinline__ void cp_async_16(void* shared_dst, const void* global_src) {
#if UNCLIP_ATTENTION_SM80
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(shared_address(shared_dst)), "l"(global_src)
                 : "memory");
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if UNCLIP_ATTENTION_SM80
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
// Waits until at most `pending` of this thread's committed groups are still in flight.
template <int pending>
__device__ __forceinline__ void cp_async_wait() {
#if UNCLIP_ATTENTION_SM80
    asm volatile("cp.async.wait_group %0;\n" ::"n"(pending) : "memory");
#endif
}

// Four 8x8 fp16 matrices; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const __half* p) {
#if UNCLIP_ATTENTION_SM80
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(p))
                 : "memory");
#else
    r[0] = r[1] = r[2] = r[3] = 0u;
#endif
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const __half* p) {
#if UNCLIP_ATTENTION_SM80
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(p))
                 : "memory");
#else
    r[0] = r[1] = r[2] = r[3] = 0u;
#endif
}

// c[16x8] += a[16x16] b[16x8]. Lane (group g = lane / 4, quad t = lane % 4) holds
// a: {(g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)}, b: {(2t..2t+1, g), (2t+8.., g)},
// c: {(g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)}.
__device__ __forceinline__ void mma_16816(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
#if UNCLIP_ATTENTION_SM80
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

__device__ __forceinline__ unsigned pack_half2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&h);
}

// Lane offsets (in elements of a row-major tile with `stride`) for ldmatrix_x4 reading a 16x16
// block: as an mma A operand (or, transposed, as the B operand of rows = keys), matrices are
// ordered (rows 0-7, cols 0-7), (rows 8-15, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols 8-15).
__device__ __forceinline__ int a_operand_offset(int lane, int stride) {
    return (((lane >> 3) & 1) * 8 + (lane & 7)) * stride + (lane >> 4) * 8;
}
// As the B operand of K^T (rows = keys, cols = head dim): (keys 0-7, dims 0-7), (keys 0-7,
// dims 8-15), (keys 8-15, dims 0-7), (keys 8-15, dims 8-15): registers {b0b1, b2b3} of key
// tile 0, then of key tile 1.
__device__ __forceinline__ int key_operand_offset(int lane, int stride) {
    return ((lane >> 4) * 8 + (lane & 7)) * stride + ((lane >> 3) & 1) * 8;
}

// ---- K and V rounded to fp16 ---------------------------------------------------------------
// Thread per 4 consecutive elements of the destination [B*H, padded_len, D]; rows past len are 0.
__global__ void round_heads_kernel(const float* __restrict__ src, int64_t stride, int64_t batch_stride, int64_t len,
                                   int64_t padded_len, int heads, int head_dim, int64_t quads,
                                   __half* __restrict__ dst) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < quads;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t e = i * 4;
        const int d = static_cast<int>(e % head_dim);
        const int64_t row = e / head_dim;
        const int64_t token = row % padded_len, head_index = row / padded_len;
        float x0 = 0.0f, x1 = 0.0f, x2 = 0.0f, x3 = 0.0f;
        if (token < len) {
            const float* s =
                src + (head_index / heads) * batch_stride + token * stride + (head_index % heads) * head_dim + d;
            x0 = s[0], x1 = s[1], x2 = s[2], x3 = s[3];
        }
        __half2* out = reinterpret_cast<__half2*>(dst + e);
        out[0] = __floats2half2_rn(x0, x1);
        out[1] = __floats2half2_rn(x2, x3);
    }
}

struct HalfKeysValues {
    const __half* k;  // [B*H, padded_len, D]
    const __half* v;
    int64_t padded_len;
};

HalfKeysValues round_keys_values(const CudaBackend::Context& ctx, const Args& a) {
    const int64_t padded_len = (a.kv_len + kKeyPadding - 1) / kKeyPadding * kKeyPadding;
    const int64_t n = a.batch * a.heads * padded_len * a.head_dim;
    auto* k = static_cast<__half*>(ctx.state().workspace(2 * static_cast<std::size_t>(n) * sizeof(__half)));
    __half* v = k + n;
    const cudaStream_t stream = ctx.state().stream;
    constexpr int kThreads = 256;
    const unsigned blocks = blocks_for(n / 4, kThreads);
    round_heads_kernel<<<blocks, kThreads, 0, stream>>>(a.k, a.k_stride, a.k_batch_stride, a.kv_len, padded_len,
                                                        a.heads, a.head_dim, n / 4, k);
    UNCLIP_CUDA_CHECK_LAUNCH();
    round_heads_kernel<<<blocks, kThreads, 0, stream>>>(a.v, a.v_stride, a.v_batch_stride, a.kv_len, padded_len,
                                                        a.heads, a.head_dim, n / 4, v);
    UNCLIP_CUDA_CHECK_LAUNCH();
    return {k, v, padded_len};
}

// ---- head_dim 16..128: flash_kernel ---------------------------------------------------------
// kWarps warps of kMTiles x 16 query rows each: warp w owns query rows q0 + 16 kMTiles w onwards,
// whose Q fragments (scaled, fp16) it loads once from global memory into registers, with O
// [16 kMTiles, D] and the row statistics. K and V tiles of 64 keys stream through shared memory in
// two cp.async stages, each tile [64, D + 8] (the 8-half pad makes ldmatrix rows fall in distinct
// banks). Per tile a warp computes S = Q K^T [16 kMTiles, 64] in registers, masks it, updates m
// and l, and multiplies P (the score registers repacked as fp16 A fragments, no trip through
// shared memory) by V. With two m-tiles each K and V fragment read from shared memory feeds two
// MMAs: half the shared-memory traffic per product, for twice the registers (head_dim <= 64).
// kMinBlocks 2 holds the 8-warp kernel to 128 registers, so that two blocks share an SM (up to
// head_dim 80; above that it would spill).
constexpr int kFlashKeys = 64;

template <int D>
constexpr std::size_t flash_shared_bytes() {
    return 2 /*stages*/ * 2 /*K, V*/ * kFlashKeys * (D + 8) * sizeof(__half);
}

template <int D, int kWarps, int kMTiles, int kMinBlocks>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks) flash_kernel(const Args a, const __half* __restrict__ k_half,
                                                            const __half* __restrict__ v_half, int64_t padded_len,
                                                            float q_scale) {
    static_assert(D % 16 == 0 && D <= 128, "flash_kernel takes head_dim 16..128 in steps of 16");
    static_assert(kMTiles == 1 || (kMTiles == 2 && D <= 64), "two m-tiles per warp only up to head_dim 64");
    constexpr int kThreads = kWarps * 32;
    constexpr int kWarpRows = 16 * kMTiles;
    constexpr int kStride = D + 8;
    constexpr int kTileElements = kFlashKeys * kStride;
    constexpr int kDimSteps = D / 16;         // k-steps of Q K^T
    constexpr int kKeyTiles = kFlashKeys / 8;  // n-tiles of S
    extern __shared__ __align__(16) unsigned char flash_shared[];
    __half* k_tiles = reinterpret_cast<__half*>(flash_shared);  // [2][kFlashKeys][kStride]
    __half* v_tiles = k_tiles + 2 * kTileElements;              // [2][kFlashKeys][kStride]

    const QueryBlock qb = query_block_of(a, kWarps * kWarpRows);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane / 4, quad = lane % 4;
    const int64_t head_index = qb.batch * a.heads + qb.head;
    const __half* k_head = k_half + head_index * padded_len * D;
    const __half* v_head = v_half + head_index * padded_len * D;
    const int64_t key_end = causal_key_end(a, qb.q0, kWarps * kWarpRows);
    const int64_t key_tiles = (key_end + kFlashKeys - 1) / kFlashKeys;

    auto load_tile = [&](int64_t tile, int stage) {
        constexpr int kChunksPerRow = D / 8;  // 16 bytes each
        const int64_t first = tile * kFlashKeys * D;
        for (int c = threadIdx.x; c < kFlashKeys * kChunksPerRow; c += kThreads) {
            const int row = c / kChunksPerRow, col = c % kChunksPerRow * 8;
            const int dst = stage * kTileElements + row * kStride + col;
            cp_async_16(k_tiles + dst, k_head + first + row * D + col);
            cp_async_16(v_tiles + dst, v_head + first + row * D + col);
        }
        cp_async_commit();
    };
    load_tile(0, 0);

    const int64_t warp_row0 = qb.q0 + warp * kWarpRows;
    // This lane's query rows: row_of(m, 0) and row_of(m, 1) = row_of(m, 0) + 8 in m-tile m.
    auto row_of = [&](int m, int i) { return warp_row0 + 16 * m + group + 8 * i; };
    const bool warp_has_rows = warp_row0 < a.q_len;

    unsigned q_frag[kMTiles][kDimSteps][4];
    {
        const float* q_head = a.q + qb.batch * a.q_batch_stride + qb.head * D;
        auto q_at = [&](int64_t row, int col) {
            return row < a.q_len ? q_head[row * a.q_stride + col] * q_scale : 0.0f;
        };
#pragma unroll
        for (int m = 0; m < kMTiles; ++m)
#pragma unroll
            for (int kk = 0; kk < kDimSteps; ++kk) {
                const int c = kk * 16 + 2 * quad;
                const int64_t row_a = row_of(m, 0), row_b = row_of(m, 1);
                q_frag[m][kk][0] = pack_half2(q_at(row_a, c), q_at(row_a, c + 1));
                q_frag[m][kk][1] = pack_half2(q_at(row_b, c), q_at(row_b, c + 1));
                q_frag[m][kk][2] = pack_half2(q_at(row_a, c + 8), q_at(row_a, c + 9));
                q_frag[m][kk][3] = pack_half2(q_at(row_b, c + 8), q_at(row_b, c + 9));
            }
    }

    float o[kMTiles][D / 8][4];
#pragma unroll
    for (int m = 0; m < kMTiles; ++m)
#pragma unroll
        for (int n = 0; n < D / 8; ++n) o[m][n][0] = o[m][n][1] = o[m][n][2] = o[m][n][3] = 0.0f;
    float row_max[kMTiles][2], row_sum[kMTiles][2];  // row_sum: this lane's share; the quad's four add up at the end
#pragma unroll
    for (int m = 0; m < kMTiles; ++m) row_max[m][0] = row_max[m][1] = kMinusInf, row_sum[m][0] = row_sum[m][1] = 0.0f;
    const int k_lane = key_operand_offset(lane, kStride);
    const int v_lane = a_operand_offset(lane, kStride);

    for (int64_t tile = 0; tile < key_tiles; ++tile) {
        const int stage = static_cast<int>(tile & 1);
        // The other stage was last read in the previous iteration, which ended with a barrier.
        if (tile + 1 < key_tiles) {
            load_tile(tile + 1, stage ^ 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();  // every thread's copies of this tile have landed

        const int64_t k0 = tile * kFlashKeys;
        // Under the causal mask a tile wholly after this warp's last row adds nothing.
        if (warp_has_rows && !(a.causal && k0 > warp_row0 + kWarpRows - 1)) {
            const __half* ks = k_tiles + stage * kTileElements;
            const __half* vs = v_tiles + stage * kTileElements;

            float s[kMTiles][kKeyTiles][4];
#pragma unroll
            for (int m = 0; m < kMTiles; ++m)
#pragma unroll
                for (int n = 0; n < kKeyTiles; ++n) s[m][n][0] = s[m][n][1] = s[m][n][2] = s[m][n][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < kDimSteps; ++kk) {
#pragma unroll
                for (int np = 0; np < kKeyTiles / 2; ++np) {
                    unsigned b[4];
                    ldmatrix_x4(b, ks + k_lane + np * 16 * kStride + kk * 16);
#pragma unroll
                    for (int m = 0; m < kMTiles; ++m) {
                        mma_16816(s[m][2 * np], q_frag[m][kk], b[0], b[1]);
                        mma_16816(s[m][2 * np + 1], q_frag[m][kk], b[2], b[3]);
                    }
                }
            }

            if (k0 + kFlashKeys > a.kv_len || (a.causal && k0 + kFlashKeys - 1 > warp_row0)) {
#pragma unroll
                for (int m = 0; m < kMTiles; ++m)
#pragma unroll
                    for (int n = 0; n < kKeyTiles; ++n)
#pragma unroll
                        for (int e = 0; e < 4; ++e) {
                            const int64_t key = k0 + n * 8 + 2 * quad + (e & 1);
                            const int64_t row = row_of(m, e / 2);
                            if (key >= a.kv_len || (a.causal && key > row)) s[m][n][e] = kMinusInf;
                        }
            }

#pragma unroll
            for (int m = 0; m < kMTiles; ++m)
#pragma unroll
                for (int i = 0; i < 2; ++i) {  // i = 0: row_of(m, 0) (elements 0, 1); i = 1: row_of(m, 1) (2, 3)
                    float tile_max = kMinusInf;
#pragma unroll
                    for (int n = 0; n < kKeyTiles; ++n)
                        tile_max = fmaxf(tile_max, fmaxf(s[m][n][2 * i], s[m][n][2 * i + 1]));
                    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
                    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
                    const float new_max = fmaxf(row_max[m][i], tile_max);
                    // A row with every key so far masked keeps max -inf; exp2(-inf - -inf) would be NaN.
                    const float shift = new_max == kMinusInf ? 0.0f : new_max;
                    const float correction = exp2f(row_max[m][i] - shift);
                    row_max[m][i] = new_max;
                    row_sum[m][i] *= correction;
#pragma unroll
                    for (int n = 0; n < D / 8; ++n) o[m][n][2 * i] *= correction, o[m][n][2 * i + 1] *= correction;
#pragma unroll
                    for (int n = 0; n < kKeyTiles; ++n) {
                        s[m][n][2 * i] = exp2f(s[m][n][2 * i] - shift);
                        s[m][n][2 * i + 1] = exp2f(s[m][n][2 * i + 1] - shift);
                        row_sum[m][i] += s[m][n][2 * i] + s[m][n][2 * i + 1];
                    }
                }

#pragma unroll
            for (int kk = 0; kk < kFlashKeys / 16; ++kk) {
                unsigned p[kMTiles][4];
#pragma unroll
                for (int m = 0; m < kMTiles; ++m) {
                    p[m][0] = pack_half2(s[m][2 * kk][0], s[m][2 * kk][1]);
                    p[m][1] = pack_half2(s[m][2 * kk][2], s[m][2 * kk][3]);
                    p[m][2] = pack_half2(s[m][2 * kk + 1][0], s[m][2 * kk + 1][1]);
                    p[m][3] = pack_half2(s[m][2 * kk + 1][2], s[m][2 * kk + 1][3]);
                }
#pragma unroll
                for (int dp = 0; dp < D / 16; ++dp) {
                    unsigned b[4];
                    ldmatrix_x4_trans(b, vs + v_lane + kk * 16 * kStride + dp * 16);
#pragma unroll
                    for (int m = 0; m < kMTiles; ++m) {
                        mma_16816(o[m][2 * dp], p[m], b[0], b[1]);
                        mma_16816(o[m][2 * dp + 1], p[m], b[2], b[3]);
                    }
                }
            }
        }
        __syncthreads();  // this stage may be refilled next iteration
    }

    if (!warp_has_rows) return;
    float* out_head = a.out + qb.batch * a.out_batch_stride + qb.head * D;
#pragma unroll
    for (int m = 0; m < kMTiles; ++m) {
        float inv_sum[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float total = row_sum[m][i];
            total += __shfl_xor_sync(0xffffffffu, total, 1);
            total += __shfl_xor_sync(0xffffffffu, total, 2);
            inv_sum[i] = 1.0f / total;
        }
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int64_t row = row_of(m, i);
            if (row >= a.q_len) continue;
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                const int col = n * 8 + 2 * quad;
                out_head[row * a.out_stride + col] = o[m][n][2 * i] * inv_sum[i];
                out_head[row * a.out_stride + col + 1] = o[m][n][2 * i + 1] * inv_sum[i];
            }
        }
    }
}

// ---- head_dim 256 and 512: wide_head_kernel --------------------------------------------------
// O [16, D] would not fit one warp's registers, so 8 warps share 64 query rows: warp w works on
// rows 16 (w % 4) .. +15 and, for S, keys 16 (w / 4) .. +15 of each 32-key tile, for O, head
// dims (w / 4) D/2 .. +D/2 - 1 (O in registers: D/4 floats per lane). Shared memory holds Q
// [64, D + 8] fp16 for the whole loop, one K and one V tile [32, D + 8], S [64, 36] fp32 and
// P [64, 40] fp16. Per tile: V's copy starts; S = Q K^T to shared memory; K's next copy starts;
// four lanes per row run the online softmax and write P and the row correction; then O = O c + P V.
// D = 512 takes 148 KB of shared memory, inside sm_80's 163 KB.
constexpr int kWideWarps = 8;
constexpr int kWideThreads = kWideWarps * 32;
constexpr int kWideRows = 64;
constexpr int kWideKeys = 32;
constexpr int kScoreStride = kWideKeys + 4;
constexpr int kProbStride = kWideKeys + 8;

template <int D>
struct WideLayout {
    static constexpr int kStride = D + 8;
    static constexpr std::size_t kQ = 0;
    static constexpr std::size_t kK = kQ + kWideRows * kStride * sizeof(__half);
    static constexpr std::size_t kV = kK + kWideKeys * kStride * sizeof(__half);
    static constexpr std::size_t kScores = kV + kWideKeys * kStride * sizeof(__half);
    static constexpr std::size_t kProbs = kScores + kWideRows * kScoreStride * sizeof(float);
    static constexpr std::size_t kCorrection = kProbs + kWideRows * kProbStride * sizeof(__half);
    static constexpr std::size_t kSum = kCorrection + kWideRows * sizeof(float);
    static constexpr std::size_t kBytes = kSum + kWideRows * sizeof(float);
};

template <int D>
__global__ void __launch_bounds__(kWideThreads) wide_head_kernel(const Args a, const __half* __restrict__ k_half,
                                                                 const __half* __restrict__ v_half,
                                                                 int64_t padded_len, float q_scale) {
    static_assert(D % 32 == 0, "each half of the head dim must be whole 16-column blocks");
    using L = WideLayout<D>;
    constexpr int kStride = L::kStride;
    extern __shared__ __align__(16) unsigned char wide_shared[];
    __half* q_tile = reinterpret_cast<__half*>(wide_shared + L::kQ);         // [kWideRows][kStride]
    __half* k_tile = reinterpret_cast<__half*>(wide_shared + L::kK);         // [kWideKeys][kStride]
    __half* v_tile = reinterpret_cast<__half*>(wide_shared + L::kV);         // [kWideKeys][kStride]
    float* scores = reinterpret_cast<float*>(wide_shared + L::kScores);      // [kWideRows][kScoreStride]
    __half* probs = reinterpret_cast<__half*>(wide_shared + L::kProbs);      // [kWideRows][kProbStride]
    float* correction = reinterpret_cast<float*>(wide_shared + L::kCorrection);  // [kWideRows]
    float* sums = reinterpret_cast<float*>(wide_shared + L::kSum);           // [kWideRows]

    const QueryBlock qb = query_block_of(a, kWideRows);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane / 4, quad = lane % 4;
    const int row_slab = (warp % 4) * 16, warp_half = warp / 4;
    const int64_t head_index = qb.batch * a.heads + qb.head;
    const __half* k_head = k_half + head_index * padded_len * D;
    const __half* v_head = v_half + head_index * padded_len * D;
    const int64_t key_end = causal_key_end(a, qb.q0, kWideRows);
    const int64_t key_tiles = (key_end + kWideKeys - 1) / kWideKeys;

    auto load_tile = [&](__half* dst, const __half* head, int64_t tile) {
        constexpr int kChunksPerRow = D / 8;
        const int64_t first = tile * kWideKeys * D;
        for (int c = threadIdx.x; c < kWideKeys * kChunksPerRow; c += kWideThreads) {
            const int row = c / kChunksPerRow, col = c % kChunksPerRow * 8;
            cp_async_16(dst + row * kStride + col, head + first + row * D + col);
        }
        cp_async_commit();
    };
    load_tile(k_tile, k_head, 0);

    {
        const float* q_head = a.q + qb.batch * a.q_batch_stride + qb.head * D;
        for (int i = threadIdx.x; i < kWideRows * D; i += kWideThreads) {
            const int r = i / D, c = i % D;
            const int64_t row = qb.q0 + r;
            q_tile[r * kStride + c] = __float2half_rn(row < a.q_len ? q_head[row * a.q_stride + c] * q_scale : 0.0f);
        }
    }

    // Softmax role: four lanes per row, 8 keys each; the statistics live in their registers.
    const int softmax_row = threadIdx.x / 4, softmax_part = threadIdx.x % 4;
    const int64_t softmax_query = qb.q0 + softmax_row;
    float row_max = kMinusInf, row_sum = 0.0f;

    constexpr int kOutTiles = D / 16;  // n-tiles of 8 dims in this warp's half of the head dim
    float o[kOutTiles][4];
#pragma unroll
    for (int n = 0; n < kOutTiles; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    const int a_lane = a_operand_offset(lane, kStride);
    const int k_lane = key_operand_offset(lane, kStride);
    const int p_lane = a_operand_offset(lane, kProbStride);

    for (int64_t tile = 0; tile < key_tiles; ++tile) {
        const int64_t k0 = tile * kWideKeys;
        load_tile(v_tile, v_head, tile);  // V was last read before the previous iteration's final barrier
        cp_async_wait<1>();               // K of this tile has landed (V may still be in flight)
        __syncthreads();                  // K and, on the first tile, Q are visible to all

        {
            float s[2][4] = {};
            const __half* q_rows = q_tile + a_lane + row_slab * kStride;
            const __half* k_rows = k_tile + k_lane + warp_half * 16 * kStride;
#pragma unroll 8
            for (int kk = 0; kk < D / 16; ++kk) {
                unsigned qa[4], kb[4];
                ldmatrix_x4(qa, q_rows + kk * 16);
                ldmatrix_x4(kb, k_rows + kk * 16);
                mma_16816(s[0], qa, kb[0], kb[1]);
                mma_16816(s[1], qa, kb[2], kb[3]);
            }
#pragma unroll
            for (int n = 0; n < 2; ++n) {
                const int col = warp_half * 16 + n * 8 + 2 * quad;
                float* row_a = scores + (row_slab + group) * kScoreStride + col;
                float* row_b = row_a + 8 * kScoreStride;
                row_a[0] = s[n][0], row_a[1] = s[n][1];
                row_b[0] = s[n][2], row_b[1] = s[n][3];
            }
        }
        __syncthreads();  // S is complete, K is free
        if (tile + 1 < key_tiles) load_tile(k_tile, k_head, tile + 1);

        {
            float p[8];
            float tile_max = kMinusInf;
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const int col = softmax_part * 8 + j;
                const int64_t key = k0 + col;
                const bool masked = key >= a.kv_len || (a.causal && key > softmax_query);
                p[j] = masked ? kMinusInf : scores[softmax_row * kScoreStride + col];
                tile_max = fmaxf(tile_max, p[j]);
            }
            tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
            tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
            const float new_max = fmaxf(row_max, tile_max);
            const float shift = new_max == kMinusInf ? 0.0f : new_max;  // see flash_kernel
            const float row_correction = exp2f(row_max - shift);
            float tile_sum = 0.0f;
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                p[j] = exp2f(p[j] - shift);
                tile_sum += p[j];
            }
#pragma unroll
            for (int j = 0; j < 8; j += 2)
                *reinterpret_cast<__half2*>(probs + softmax_row * kProbStride + softmax_part * 8 + j) =
                    __floats2half2_rn(p[j], p[j + 1]);
            tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 1);
            tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 2);
            row_sum = row_sum * row_correction + tile_sum;
            row_max = new_max;
            if (softmax_part == 0) correction[softmax_row] = row_correction;
        }
        if (tile + 1 < key_tiles) cp_async_wait<1>();  // V of this tile has landed
        else cp_async_wait<0>();
        __syncthreads();  // P, the corrections and V are visible to all

        {
            const float c_a = correction[row_slab + group], c_b = correction[row_slab + group + 8];
#pragma unroll
            for (int n = 0; n < kOutTiles; ++n) o[n][0] *= c_a, o[n][1] *= c_a, o[n][2] *= c_b, o[n][3] *= c_b;
#pragma unroll
            for (int kk = 0; kk < kWideKeys / 16; ++kk) {
                unsigned pa[4];
                ldmatrix_x4(pa, probs + p_lane + row_slab * kProbStride + kk * 16);
                const __half* v_rows = v_tile + a_lane + kk * 16 * kStride + warp_half * (D / 2);
#pragma unroll
                for (int dp = 0; dp < D / 32; ++dp) {
                    unsigned vb[4];
                    ldmatrix_x4_trans(vb, v_rows + dp * 16);
                    mma_16816(o[2 * dp], pa, vb[0], vb[1]);
                    mma_16816(o[2 * dp + 1], pa, vb[2], vb[3]);
                }
            }
        }
        __syncthreads();  // P, the corrections and V may be overwritten
    }

    if (softmax_part == 0) sums[softmax_row] = row_sum;
    __syncthreads();
    const int r_a = row_slab + group, r_b = r_a + 8;
    const float inv_a = 1.0f / sums[r_a], inv_b = 1.0f / sums[r_b];
    float* out_head = a.out + qb.batch * a.out_batch_stride + qb.head * D;
    const int64_t row_a = qb.q0 + r_a, row_b = qb.q0 + r_b;
#pragma unroll
    for (int n = 0; n < kOutTiles; ++n) {
        const int col = warp_half * (D / 2) + n * 8 + 2 * quad;
        if (row_a < a.q_len) {
            out_head[row_a * a.out_stride + col] = o[n][0] * inv_a;
            out_head[row_a * a.out_stride + col + 1] = o[n][1] * inv_a;
        }
        if (row_b < a.q_len) {
            out_head[row_b * a.out_stride + col] = o[n][2] * inv_b;
            out_head[row_b * a.out_stride + col + 1] = o[n][3] * inv_b;
        }
    }
}

// ---- any head_dim: fp32_kernel ---------------------------------------------------------------
// 16 queries and 4 warps per block, 64-key tiles. Thread per score (a dot product over D read
// straight from global memory) into shared memory; eight lanes per row update its statistics;
// then thread per output element. O accumulates in `out` itself, which
// this block alone owns, so any head_dim works without shared memory growing with it. The tiny
// test models' odd head dims (8, 24) come here; no SD 2.1 shape does.
constexpr int kFp32Threads = 128;
constexpr int kFp32Rows = 16;
constexpr int kFp32Keys = 64;

__global__ void __launch_bounds__(kFp32Threads) fp32_kernel(const Args a, float scale) {
    __shared__ float p[kFp32Rows][kFp32Keys + 1];
    __shared__ float correction[kFp32Rows];
    __shared__ float sums[kFp32Rows];

    const QueryBlock qb = query_block_of(a, kFp32Rows);
    const int d_head = a.head_dim;
    const float* q_head = a.q + qb.batch * a.q_batch_stride + qb.head * d_head + qb.q0 * a.q_stride;
    const float* k_head = a.k + qb.batch * a.k_batch_stride + qb.head * d_head;
    const float* v_head = a.v + qb.batch * a.v_batch_stride + qb.head * d_head;
    float* out_head = a.out + qb.batch * a.out_batch_stride + qb.head * d_head + qb.q0 * a.out_stride;
    const int rows = static_cast<int>(min(static_cast<int64_t>(kFp32Rows), a.q_len - qb.q0));
    const int64_t key_end = causal_key_end(a, qb.q0, kFp32Rows);
    const int64_t elements = static_cast<int64_t>(rows) * d_head;

    for (int64_t i = threadIdx.x; i < elements; i += kFp32Threads) out_head[i / d_head * a.out_stride + i % d_head] = 0.0f;

    // Softmax role: eight lanes per row, 8 keys each; the statistics live in their registers.
    const int softmax_row = threadIdx.x / 8, softmax_part = threadIdx.x % 8;
    float row_max = kMinusInf, row_sum = 0.0f;

    for (int64_t k0 = 0; k0 < key_end; k0 += kFp32Keys) {
        const int cols = static_cast<int>(min(static_cast<int64_t>(kFp32Keys), key_end - k0));
        for (int i = threadIdx.x; i < kFp32Rows * kFp32Keys; i += kFp32Threads) {
            const int r = i / kFp32Keys, c = i % kFp32Keys;
            const int64_t key = k0 + c;
            float s = kMinusInf;
            if (r < rows && c < cols && !(a.causal && key > qb.q0 + r)) {
                const float* q_row = q_head + r * a.q_stride;
                const float* k_row = k_head + key * a.k_stride;
                float dot = 0.0f;
                for (int d = 0; d < d_head; ++d) dot += q_row[d] * k_row[d];
                s = dot * scale;
            }
            p[r][c] = s;
        }
        __syncthreads();  // scores complete

        {
            float* row = p[softmax_row] + softmax_part * 8;
            float tile_max = kMinusInf;
#pragma unroll
            for (int j = 0; j < 8; ++j) tile_max = fmaxf(tile_max, row[j]);
#pragma unroll
            for (int offset = 1; offset < 8; offset *= 2)
                tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
            const float new_max = fmaxf(row_max, tile_max);
            const float shift = new_max == kMinusInf ? 0.0f : new_max;  // see flash_kernel
            const float row_correction = expf(row_max - shift);
            float tile_sum = 0.0f;
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                row[j] = expf(row[j] - shift);
                tile_sum += row[j];
            }
#pragma unroll
            for (int offset = 1; offset < 8; offset *= 2) tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, offset);
            row_sum = row_sum * row_correction + tile_sum;
            row_max = new_max;
            if (softmax_part == 0) correction[softmax_row] = row_correction;
        }
        __syncthreads();  // probabilities and corrections complete

        for (int64_t i = threadIdx.x; i < elements; i += kFp32Threads) {
            const int r = static_cast<int>(i / d_head), d = static_cast<int>(i % d_head);
            const float* v_col = v_head + k0 * a.v_stride + d;
            float acc = out_head[r * a.out_stride + d] * correction[r];
            for (int c = 0; c < cols; ++c) acc += p[r][c] * v_col[c * a.v_stride];
            out_head[r * a.out_stride + d] = acc;
        }
        __syncthreads();  // p and the corrections may be overwritten
    }

    if (softmax_part == 0) sums[softmax_row] = row_sum;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < elements; i += kFp32Threads) {
        const int r = static_cast<int>(i / d_head), d = static_cast<int>(i % d_head);
        out_head[r * a.out_stride + d] /= sums[r];
    }
}

// ---- Launchers -------------------------------------------------------------------------------
unsigned grid_for(const Args& a, int rows) {
    const int64_t blocks = a.batch * a.heads * ((a.q_len + rows - 1) / rows);
    if (blocks > INT_MAX)
        throw Error(Status::invalid_argument, "attention: batch " + std::to_string(a.batch) + " x heads " +
                                                  std::to_string(a.heads) + " x q_len " + std::to_string(a.q_len) +
                                                  " is too large for one launch");
    return static_cast<unsigned>(blocks);
}

// What the tensor-core kernels need of the device: sm_80 instructions, and their shared memory
// (wide_head_kernel<512> takes 148 KB: sm_80 and sm_90 give that, sm_86 and sm_89 only 99 KB).
struct DeviceLimits {
    bool sm80 = false;
    std::size_t shared_per_block = 0;  // with the opt-in above 48 KB
    bool fits(std::size_t shared) const { return sm80 && shared <= shared_per_block; }
};

DeviceLimits device_limits(const CudaBackend::Context& ctx) {
    return {ctx.state().compute_major >= 8, ctx.state().shared_per_block};
}

template <int D, int kWarps, int kMTiles, int kMinBlocks = 1>
void launch_flash(const CudaBackend::Context& ctx, const Args& a, float scale, const HalfKeysValues& kv) {
    constexpr std::size_t kShared = flash_shared_bytes<D>();
    const unsigned grid = grid_for(a, kWarps * 16 * kMTiles);
    const auto kernel = flash_kernel<D, kWarps, kMTiles, kMinBlocks>;
    ctx.state().allow_shared_memory(reinterpret_cast<const void*>(kernel), kShared);
    kernel<<<grid, kWarps * 32, kShared, ctx.state().stream>>>(a, kv.k, kv.v, kv.padded_len, scale * kLog2e);
    UNCLIP_CUDA_CHECK_LAUNCH();
}

template <int D>
bool run_flash(const CudaBackend::Context& ctx, const Args& a, float scale, const DeviceLimits& limits) {
    if (!limits.fits(flash_shared_bytes<D>())) return false;
    const HalfKeysValues kv = round_keys_values(ctx, a);
    const CudaBackend::FlashTile tile = ctx.flash_tile();
    if constexpr (D <= 64) {
        if (tile.warp_rows == 32) {
            if (tile.warps == 4) launch_flash<D, 4, 2>(ctx, a, scale, kv);
            else launch_flash<D, 8, 2>(ctx, a, scale, kv);
            return true;
        }
    }
    if constexpr (D <= 80) {
        if (tile.blocks_per_sm == 2) {
            launch_flash<D, 8, 1, 2>(ctx, a, scale, kv);
            return true;
        }
    }
    launch_flash<D, 8, 1>(ctx, a, scale, kv);
    return true;
}

template <int D>
bool run_wide(const CudaBackend::Context& ctx, const Args& a, float scale, const DeviceLimits& limits) {
    constexpr std::size_t kShared = WideLayout<D>::kBytes;
    if (!limits.fits(kShared)) return false;
    const unsigned grid = grid_for(a, kWideRows);
    const HalfKeysValues kv = round_keys_values(ctx, a);
    ctx.state().allow_shared_memory(reinterpret_cast<const void*>(wide_head_kernel<D>), kShared);
    wide_head_kernel<D><<<grid, kWideThreads, kShared, ctx.state().stream>>>(a, kv.k, kv.v, kv.padded_len,
                                                                             scale * kLog2e);
    UNCLIP_CUDA_CHECK_LAUNCH();
    return true;
}

// False when this head_dim or this device has no tensor-core kernel.
bool run_tensor_cores(const CudaBackend::Context& ctx, const Args& a, float scale) {
    const DeviceLimits limits = device_limits(ctx);
    switch (a.head_dim) {
        case 16: return run_flash<16>(ctx, a, scale, limits);
        case 32: return run_flash<32>(ctx, a, scale, limits);
        case 48: return run_flash<48>(ctx, a, scale, limits);
        case 64: return run_flash<64>(ctx, a, scale, limits);
        case 80: return run_flash<80>(ctx, a, scale, limits);
        case 96: return run_flash<96>(ctx, a, scale, limits);
        case 112: return run_flash<112>(ctx, a, scale, limits);
        case 128: return run_flash<128>(ctx, a, scale, limits);
        case 256: return run_wide<256>(ctx, a, scale, limits);
        case 512: return run_wide<512>(ctx, a, scale, limits);
        default: return false;
    }
}

void run_fp32(const CudaBackend::Context& ctx, const Args& a, float scale) {
    fp32_kernel<<<grid_for(a, kFp32Rows), kFp32Threads, 0, ctx.state().stream>>>(a, scale);
    UNCLIP_CUDA_CHECK_LAUNCH();
}

}  // namespace
}  // namespace unclip::cuda

namespace unclip {

void CudaBackend::attention(const Context& ctx, const AttentionArgs& a) {
    if (a.head_dim <= 0 || a.heads <= 0)
        throw Error(Status::invalid_argument, "attention: head_dim " + std::to_string(a.head_dim) + " and heads " +
                                                  std::to_string(a.heads) + " must be positive");
    if (a.kv_len <= 0) throw Error(Status::invalid_argument, "attention: no keys");
    if (a.batch <= 0 || a.q_len <= 0) return;
    if (!a.q || !a.k || !a.v || !a.out) throw Error(Status::invalid_argument, "attention: q, k, v or out is null");
    const float scale = a.scale != 0.0f ? a.scale : 1.0f / std::sqrt(static_cast<float>(a.head_dim));
    if (!cuda::run_tensor_cores(ctx, a, scale)) cuda::run_fp32(ctx, a, scale);
}

}  // namespace unclip
