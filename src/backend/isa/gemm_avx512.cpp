// AVX-512 fp32 GEMM: C = alpha op(A) op(B) + beta C (+ row or column bias), in 14x32 register
// tiles. Only B is packed (into per-thread panels of kDepthBlock x kColumnBlock); A is read in
// place, 14 rows at a time, since one 14-row slice of a depth block stays in L1 while it sweeps the
// whole packed B panel. B can also be the implicit im2col unfolding of a convolution input, packed
// straight from the image, so a 3x3 convolution never materialises its column matrix.
//
// Every element of C is one chain of FMAs over k in a fixed order (blocks of kDepthBlock, each
// added to C in turn), whatever the tiling of m and n or the number of threads: results are
// bit-identical across thread counts.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "backend/isa/avx512_lanes.hpp"
#include "backend/isa/bf16_pairs.hpp"
#include "backend/kernel_table.hpp"
#include "unclip/error.hpp"

namespace unclip::detail {
namespace {
constexpr int kTileRows = 14;                 // MR: 28 accumulators + 2 B vectors + a broadcast
constexpr int kTileCols = 32;                 // NR: two zmm
constexpr std::int64_t kDepthBlock = 256;     // KC
constexpr std::int64_t kColumnBlock = 2048;   // NC: a 2 MiB packed B panel, read from L2/L3 at 4.5 B/cycle
constexpr std::int64_t kRowBlock = kTileRows * 24;  // rows per task

struct Epilogue {
    float alpha = 1.0f, beta = 0.0f;
    bool first = true;  // first depth block: apply beta and the biases; later ones add to C
    const float* row_bias = nullptr;
    const float* col_bias = nullptr;
};

// acc (14 x 32) = A[14 x kc] * Bp[kc x 32], A packed as ap[p * 14 + r].
inline __attribute__((always_inline)) void tile_kernel(std::int64_t kc, const float* ap, const float* bp,
                                                       __m512 (&acc)[28]) {
#pragma GCC unroll 28
    for (int i = 0; i < 28; ++i) acc[i] = _mm512_setzero_ps();
    for (std::int64_t p = 0; p < kc; ++p, ap += kTileRows, bp += kTileCols) {
        const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
#pragma GCC unroll 14
        for (int r = 0; r < kTileRows; ++r) {
            const __m512 av = _mm512_set1_ps(ap[r]);
            acc[2 * r] = _mm512_fmadd_ps(av, b0, acc[2 * r]);
            acc[2 * r + 1] = _mm512_fmadd_ps(av, b1, acc[2 * r + 1]);
        }
    }
}

// In-register transpose of a 16 x 16 block: v[r][c] -> v[c][r].
inline void transpose16(__m512 (&v)[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);      // r0c0 r1c0 r0c1 r1c1 per 128-bit lane
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);  // r0c2 r1c2 r0c3 r1c3
    }
    for (int i = 0; i < 4; ++i) {  // rows 4i..4i+3: columns 4l + j in lane l of u[4i + j]
        u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {  // gather the four row groups of columns j, j + 4, j + 8, j + 12
        const __m512 lo_even = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);       // c j, j+8 of rows 0-7
        const __m512 lo_odd = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);        // c j+4, j+12 of rows 0-7
        const __m512 hi_even = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);  // rows 8-15
        const __m512 hi_odd = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        v[j] = _mm512_shuffle_f32x4(lo_even, hi_even, 0x88);
        v[j + 8] = _mm512_shuffle_f32x4(lo_even, hi_even, 0xDD);
        v[j + 4] = _mm512_shuffle_f32x4(lo_odd, hi_odd, 0x88);
        v[j + 12] = _mm512_shuffle_f32x4(lo_odd, hi_odd, 0xDD);
    }
}

// Rows [i, i + rows) x depth [p0, p0 + kc) of op(A) as ap[p * 14 + r], zero past `rows`. A slice read
// in place would put 14 rows a leading dimension apart in L1, which aliases when lda is a multiple of 4 KiB.
void pack_a_slice(const void* a, DType dtype, std::int64_t lda, bool trans_a, std::int64_t i, int rows, std::int64_t p0,
                  std::int64_t kc, float* ap) {
    if (trans_a) {
        const __mmask16 m = lanes(rows);
        for (std::int64_t p = 0; p < kc; ++p)
            _mm512_mask_storeu_ps(ap + p * kTileRows, 0x3fff, load_widened(a, dtype, (p0 + p) * lda + i, m));
        return;
    }
    // 16 depth steps at a time: 14 rows of 16 values in registers, transposed so that each step's
    // 14 row values are one contiguous store.
    for (std::int64_t p = 0; p < kc; p += 16) {
        const std::int64_t count = std::min<std::int64_t>(16, kc - p);
        __m512 v[16];
        for (int r = 0; r < 16; ++r)
            v[r] = r < rows ? load_widened(a, dtype, (i + r) * lda + p0 + p, lanes(count)) : _mm512_setzero_ps();
        transpose16(v);
        for (std::int64_t q = 0; q < count; ++q) _mm512_mask_storeu_ps(ap + (p + q) * kTileRows, 0x3fff, v[q]);
    }
}

inline void store_tile(const __m512 (&acc)[28], float* c, std::int64_t ldc, int rows, std::int64_t cols,
                       const Epilogue& e, std::int64_t row0, std::int64_t col0) {
    const __mmask16 m0 = lanes(cols), m1 = lanes(cols - 16);
    const __m512 alpha = _mm512_set1_ps(e.alpha), beta = _mm512_set1_ps(e.beta);
    __m512 col_bias0 = _mm512_setzero_ps(), col_bias1 = _mm512_setzero_ps();
    if (e.first && e.col_bias) {
        col_bias0 = _mm512_maskz_loadu_ps(m0, e.col_bias + col0);
        col_bias1 = _mm512_maskz_loadu_ps(m1, e.col_bias + col0 + 16);
    }
    for (int r = 0; r < rows; ++r) {
        float* row = c + r * ldc;
        __m512 v0 = acc[2 * r], v1 = acc[2 * r + 1];
        if (e.alpha != 1.0f) {
            v0 = _mm512_mul_ps(v0, alpha);
            v1 = _mm512_mul_ps(v1, alpha);
        }
        if (e.first) {
            if (e.beta != 0.0f) {
                v0 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m0, row), v0);
                v1 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m1, row + 16), v1);
            }
            if (e.row_bias) {
                const __m512 rb = _mm512_set1_ps(e.row_bias[row0 + r]);
                v0 = _mm512_add_ps(v0, rb);
                v1 = _mm512_add_ps(v1, rb);
            }
            if (e.col_bias) {
                v0 = _mm512_add_ps(v0, col_bias0);
                v1 = _mm512_add_ps(v1, col_bias1);
            }
        } else {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row + 16));
        }
        _mm512_mask_storeu_ps(row, m0, v0);
        _mm512_mask_storeu_ps(row + 16, m1, v1);
    }
}

// ---- Packing B into panels: bp[panel][p][32], zero-padded past n ------------------------------
void pack_b_rows(const void* b, DType dtype, std::int64_t ldb, std::int64_t p0, std::int64_t kc, std::int64_t j0,
                 std::int64_t nc, float* bp) {
    for (std::int64_t jp = 0; jp < nc; jp += kTileCols) {
        const std::int64_t cols = std::min<std::int64_t>(kTileCols, nc - jp);
        const __mmask16 m0 = lanes(cols), m1 = lanes(cols - 16);
        for (std::int64_t p = 0; p < kc; ++p, bp += kTileCols) {
            const std::int64_t at = (p0 + p) * ldb + j0 + jp;
            _mm512_store_ps(bp, load_widened(b, dtype, at, m0));
            _mm512_store_ps(bp + 16, load_widened(b, dtype, at + 16, m1));
        }
    }
}

// B stored transposed ([n, k] with leading dimension ldb): 16 x 16 blocks through a transpose.
void pack_b_transposed(const void* b, DType dtype, std::int64_t ldb, std::int64_t p0, std::int64_t kc,
                       std::int64_t j0, std::int64_t nc, float* bp) {
    for (std::int64_t jp = 0; jp < nc; jp += kTileCols) {
        float* panel = bp + jp * kc;
        for (int half = 0; half < 2; ++half) {
            const std::int64_t cols = std::min<std::int64_t>(16, nc - jp - 16 * half);
            for (std::int64_t pb = 0; pb < kc; pb += 16) {
                const std::int64_t depth = std::min<std::int64_t>(16, kc - pb);
                __m512 v[16];  // 16 columns of B as rows, transposed into 16 depth steps
                for (int j = 0; j < 16; ++j)
                    v[j] = j < cols ? load_widened(b, dtype, (j0 + jp + 16 * half + j) * ldb + p0 + pb, lanes(depth))
                                    : _mm512_setzero_ps();
                transpose16(v);
                for (std::int64_t p = 0; p < depth; ++p) _mm512_store_ps(panel + (pb + p) * kTileCols + 16 * half, v[p]);
            }
        }
    }
}

// Implicit im2col of one image: B[(c*kh + ky)*kw + kx][oy*W_out + ox] = x[c][oy*s - pad_top + ky][ox*s - pad_left + kx].
// Each 16-lane half of a panel is cut into runs of consecutive output columns on one output row;
// with stride 1 a run is one masked load (lanes over the padding stay zero).
void pack_b_conv(const CpuBackend::Conv2dArgs& a, const float* x, std::int64_t p0, std::int64_t kc, std::int64_t j0,
                 std::int64_t nc, float* bp) {
    struct Tap {
        const float* plane;
        int ky, kx;
    };
    Tap taps[kDepthBlock];
    {
        std::int64_t r = p0;
        int kx = static_cast<int>(r % a.kernel_w), ky = static_cast<int>((r / a.kernel_w) % a.kernel_h);
        std::int64_t c = r / (a.kernel_w * a.kernel_h);
        for (std::int64_t p = 0; p < kc; ++p) {
            taps[p] = {x + c * a.height * a.width, ky, kx};
            if (++kx == a.kernel_w) {
                kx = 0;
                if (++ky == a.kernel_h) {
                    ky = 0;
                    ++c;
                }
            }
        }
    }
    struct Run {
        int lane0, lanes;
        std::int64_t oy, ox;
    };
    const std::int64_t wo = a.out_width();
    for (std::int64_t jp = 0; jp < nc; jp += kTileCols) {
        float* panel = bp + jp * kc;
        for (int half = 0; half < 2; ++half) {
            const std::int64_t j = j0 + jp + 16 * half;
            const int count = static_cast<int>(std::clamp<std::int64_t>(nc - jp - 16 * half, 0, 16));
            Run runs[16];
            int run_count = 0;
            for (int l = 0; l < count;) {
                const std::int64_t oy = (j + l) / wo, ox = (j + l) % wo;
                const int len = static_cast<int>(std::min<std::int64_t>(count - l, wo - ox));
                runs[run_count++] = {l, len, oy, ox};
                l += len;
            }
            for (std::int64_t p = 0; p < kc; ++p) {
                const Tap& t = taps[p];
                float* out = panel + p * kTileCols + 16 * half;
                if (a.stride != 1) {
                    for (int l = 0; l < 16; ++l) out[l] = 0.0f;
                    for (int q = 0; q < run_count; ++q) {
                        const Run& run = runs[q];
                        const std::int64_t iy = run.oy * a.stride - a.pad_top + t.ky;
                        if (iy < 0 || iy >= a.height) continue;
                        const float* row = t.plane + iy * a.width;
                        for (int l = 0; l < run.lanes; ++l) {
                            const std::int64_t ix = (run.ox + l) * a.stride - a.pad_left + t.kx;
                            if (ix >= 0 && ix < a.width) out[run.lane0 + l] = row[ix];
                        }
                    }
                    continue;
                }
                __m512 v = _mm512_setzero_ps();
                for (int q = 0; q < run_count; ++q) {
                    const Run& run = runs[q];
                    const std::int64_t iy = run.oy - a.pad_top + t.ky;
                    if (iy < 0 || iy >= a.height) continue;
                    // lane l reads column ix0 + (l - lane0); keep 0 <= column < width
                    const std::int64_t ix0 = run.ox - a.pad_left + t.kx;
                    const std::int64_t lo = std::max<std::int64_t>(run.lane0, run.lane0 - ix0);
                    const std::int64_t hi = std::min<std::int64_t>(run.lane0 + run.lanes, run.lane0 + a.width - ix0);
                    if (lo >= hi) continue;
                    const __mmask16 m = static_cast<__mmask16>(lanes(hi) & ~lanes(lo));
                    // Lane 0's address may lie before the row; masked-off lanes are never read.
                    const auto base = reinterpret_cast<std::uintptr_t>(t.plane + iy * a.width) +
                                      static_cast<std::uintptr_t>((ix0 - run.lane0) * static_cast<std::int64_t>(sizeof(float)));
                    v = _mm512_mask_loadu_ps(v, m, reinterpret_cast<const void*>(base));
                }
                _mm512_store_ps(out, v);
            }
        }
    }
}

// ---- bf16 inputs, fp32 sums (AVX-512 BF16) ----------------------------------------------------
// vdpbf16ps adds a[2i] b[2i] + a[2i+1] b[2i+1] into fp32 lane i, so both operands hold k in pairs:
// a 32-bit word per (row or column, k pair), packed from the fp32 panels above with rounding to nearest even.
// bp[panel][p][32] (fp32) -> bq[panel][p / 2][32] (pairs); an odd last p pairs with zero.
UNCLIP_BF16_TARGET void pair_b_panels(const float* bp, std::int64_t kc, std::int64_t nc, std::uint32_t* bq) {
    const std::int64_t pairs = (kc + 1) / 2;
    for (std::int64_t jp = 0; jp < nc; jp += kTileCols) {
        const float* src = bp + jp * kc;
        std::uint32_t* dst = bq + jp * pairs;
        for (std::int64_t q = 0; q < pairs; ++q)
            for (int half = 0; half < 2; ++half) {
                const __m512 even = _mm512_load_ps(src + 2 * q * kTileCols + 16 * half);
                const __m512 odd = 2 * q + 1 < kc ? _mm512_load_ps(src + (2 * q + 1) * kTileCols + 16 * half) : _mm512_setzero_ps();
                _mm512_store_si512(dst + q * kTileCols + 16 * half, bf16_pairs(even, odd));
            }
    }
}

// ap[p * 14 + r] (fp32) -> aq[(p / 2) * 14 + r] (pairs).
UNCLIP_BF16_TARGET void pair_a_slice(const float* ap, std::int64_t kc, std::uint32_t* aq) {
    for (std::int64_t q = 0; q < (kc + 1) / 2; ++q) {
        const __m512 even = _mm512_maskz_loadu_ps(0x3fff, ap + 2 * q * kTileRows);
        const __m512 odd = 2 * q + 1 < kc ? _mm512_maskz_loadu_ps(0x3fff, ap + (2 * q + 1) * kTileRows) : _mm512_setzero_ps();
        _mm512_mask_storeu_epi32(aq + q * kTileRows, 0x3fff, bf16_pairs(even, odd));
    }
}

// One 14-row slice against every panel: C[rows, nc] (+)= Aq * Bq.
UNCLIP_BF16_TARGET void sweep_bf16(std::int64_t pairs, const std::uint32_t* aq, const std::uint32_t* bq, std::int64_t nc,
                                   float* crow, std::int64_t ldc, int rows, const Epilogue& e, std::int64_t i,
                                   std::int64_t j0) {
    for (std::int64_t jp = 0; jp < nc; jp += kTileCols) {
        __m512 acc[28];
#pragma GCC unroll 28
        for (int t = 0; t < 28; ++t) acc[t] = _mm512_setzero_ps();
        const std::uint32_t* a = aq;
        const std::uint32_t* b = bq + jp * pairs;
        for (std::int64_t q = 0; q < pairs; ++q, a += kTileRows, b += kTileCols) {
            const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_load_si512(b));
            const __m512bh b1 = reinterpret_cast<__m512bh>(_mm512_load_si512(b + 16));
#pragma GCC unroll 14
            for (int r = 0; r < kTileRows; ++r) {
                const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(a[r])));
                acc[2 * r] = _mm512_dpbf16_ps(acc[2 * r], av, b0);
                acc[2 * r + 1] = _mm512_dpbf16_ps(acc[2 * r + 1], av, b1);
            }
        }
        store_tile(acc, crow + j0 + jp, ldc, rows, std::min<std::int64_t>(kTileCols, nc - jp), e, i, j0 + jp);
    }
}

struct PackBuffer {
    float* data = nullptr;
    ~PackBuffer() { std::free(data); }
};

// The fp32 B panel, its bf16 pairs (half its size), the fp32 A row block and its pairs.
float* pack_buffer() {
    thread_local PackBuffer buffer;
    if (!buffer.data) {
        const std::size_t floats = kDepthBlock * kColumnBlock * 3 / 2 + kRowBlock * kDepthBlock * 3 / 2;
        buffer.data = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * floats));
        if (!buffer.data) throw Error(Status::out_of_memory, "cpu gemm: cannot allocate the 3.5 MiB packing buffer");
    }
    return buffer.data;
}

// Rows [i0, i1) x columns [j0, j0 + nc) of C for batch entries [b0, b1). The row block of A is packed
// once per depth block and serves all those entries when A is shared (convolution weights).
void gemm_block_task(const GemmProblem& g, std::int64_t b0, std::int64_t b1, std::int64_t i0, std::int64_t i1,
                     std::int64_t j0, std::int64_t nc) {
    float* bp = pack_buffer();
    auto* b_pairs = reinterpret_cast<std::uint32_t*>(bp + kDepthBlock * kColumnBlock);
    float* a_block = bp + kDepthBlock * kColumnBlock * 3 / 2;
    auto* a_pairs = reinterpret_cast<std::uint32_t*>(a_block + kRowBlock * kDepthBlock);
    const std::int64_t slices = (i1 - i0 + kTileRows - 1) / kTileRows;
    for (std::int64_t p0 = 0; p0 < g.k; p0 += kDepthBlock) {
        const std::int64_t kc = std::min(kDepthBlock, g.k - p0), pairs = (kc + 1) / 2;
        Epilogue e;
        e.alpha = g.alpha;
        e.beta = g.beta;
        e.first = p0 == 0;
        e.row_bias = g.row_bias;
        e.col_bias = g.col_bias;
        for (std::int64_t batch = b0; batch < b1; ++batch) {
            if (batch == b0 || g.a_batch_stride != 0) {
                const auto* a = static_cast<const unsigned char*>(g.a) +
                                batch * g.a_batch_stride * static_cast<std::int64_t>(dtype_size(g.a_dtype));
                for (std::int64_t s = 0; s < slices; ++s) {
                    const std::int64_t i = i0 + s * kTileRows;
                    const int rows = static_cast<int>(std::min<std::int64_t>(kTileRows, i1 - i));
                    float* slice = a_block + s * kTileRows * kc;
                    pack_a_slice(a, g.a_dtype, g.lda, g.trans_a, i, rows, p0, kc, slice);
                    if (g.bf16) pair_a_slice(slice, kc, a_pairs + s * kTileRows * pairs);
                }
            }
            const auto* b = static_cast<const unsigned char*>(g.b) +
                            batch * g.b_batch_stride * static_cast<std::int64_t>(g.conv ? sizeof(float) : dtype_size(g.b_dtype));
            if (g.conv) pack_b_conv(*g.conv, reinterpret_cast<const float*>(b), p0, kc, j0, nc, bp);
            else if (g.trans_b) pack_b_transposed(b, g.b_dtype, g.ldb, p0, kc, j0, nc, bp);
            else pack_b_rows(b, g.b_dtype, g.ldb, p0, kc, j0, nc, bp);
            if (g.bf16) pair_b_panels(bp, kc, nc, b_pairs);
            float* c = g.c + batch * g.c_batch_stride;
            for (std::int64_t s = 0; s < slices; ++s) {
                const std::int64_t i = i0 + s * kTileRows;
                const int rows = static_cast<int>(std::min<std::int64_t>(kTileRows, i1 - i));
                float* crow = c + i * g.ldc;
                if (g.bf16) {
                    sweep_bf16(pairs, a_pairs + s * kTileRows * pairs, b_pairs, nc, crow, g.ldc, rows, e, i, j0);
                    continue;
                }
                const float* slice = a_block + s * kTileRows * kc;
                for (std::int64_t jp = 0; jp < nc; jp += kTileCols) {
                    __m512 acc[28];
                    tile_kernel(kc, slice, bp + jp * kc, acc);
                    store_tile(acc, crow + j0 + jp, g.ldc, rows, std::min<std::int64_t>(kTileCols, nc - jp), e, i, j0 + jp);
                }
            }
        }
    }
}
// With A shared, every depth block serves all batch entries; with one A per entry (Winograd's 36
// products), each entry's depth blocks run back to back while its block of C is still in cache.
void gemm_task(const GemmProblem& g, std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t nc) {
    if (g.a_batch_stride == 0) {
        gemm_block_task(g, 0, g.batch, i0, i1, j0, nc);
        return;
    }
    for (std::int64_t batch = 0; batch < g.batch; ++batch) gemm_block_task(g, batch, batch + 1, i0, i1, j0, nc);
}
}  // namespace

// Tasks are blocks of C; smaller blocks only when there would be too few to share between threads
// (fewer columns first, down to 256, then fewer rows, down to 56, then fewer columns again).
void gemm_avx512(const CpuBackend::Context& ctx, const GemmProblem& g) {
    std::int64_t row_block = kRowBlock, column_block = kColumnBlock;
    const std::int64_t wanted_tasks = 4 * static_cast<std::int64_t>(ctx.threads());
    auto task_count = [&] { return ((g.m + row_block - 1) / row_block) * ((g.n + column_block - 1) / column_block); };
    while (column_block > 256 && task_count() < wanted_tasks) column_block /= 2;
    while (row_block > 4 * kTileRows && task_count() < wanted_tasks) row_block -= 4 * kTileRows;
    while (column_block > kTileCols && task_count() < wanted_tasks) column_block /= 2;
    // The same number of blocks, evened out (320 rows: 168 + 152 rather than 280 + 40).
    auto even = [](std::int64_t extent, std::int64_t block, std::int64_t unit) {
        const std::int64_t blocks = (extent + block - 1) / block;
        return std::min(block, ((extent + blocks - 1) / blocks + unit - 1) / unit * unit);
    };
    row_block = even(g.m, row_block, kTileRows);
    column_block = even(g.n, column_block, kTileCols);
    const std::int64_t column_blocks = (g.n + column_block - 1) / column_block;
    ctx.parallel_for(task_count(), 1, [&](std::int64_t t0, std::int64_t t1) {
        for (std::int64_t t = t0; t < t1; ++t) {
            const std::int64_t cb = t % column_blocks, rb = t / column_blocks;
            const std::int64_t j0 = cb * column_block, i0 = rb * row_block;
            gemm_task(g, i0, std::min(g.m, i0 + row_block), j0, std::min(column_block, g.n - j0));
        }
    });
}

}  // namespace unclip::detail
