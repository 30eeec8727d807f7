// Winograd F(4x4, 3x3) convolution (plan and scratch layout in backend/winograd.hpp): AVX-512
// transforms around the packed GEMM. Transforms run 16 tiles (or 16 input channels) per vector;
// with points 0, +-1, +-2 and infinity (Lavin and Gray, "Fast Algorithms for Convolutional Neural
// Networks") the fp32 result stays within about 1e-6 of the direct convolution. The products stay
// fp32 when bf16 GEMMs are on: in bf16 they measured 2.5e-2 relative error (10x the direct bf16
// convolution's, the transforms amplify the rounding) for 10% less time.
//
// Scratch: U [36][out_block][C_in] (transformed weights), V [36][C_in][chunk tiles] (transformed
// inputs), M [36][out_block][chunk tiles] (their products). A chunk's tiles are numbered
// row * tiles_x + tx over its tile rows.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/isa/avx512_lanes.hpp"
#include "backend/kernel_table.hpp"
#include "backend/winograd.hpp"

namespace unclip::detail {
namespace {

// t = B^T d over six values.
inline void input_1d(const __m512 (&d)[6], __m512 (&t)[6]) {
    const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f);
    const __m512 d12 = _mm512_add_ps(d[1], d[2]), d34 = _mm512_add_ps(d[3], d[4]);
    const __m512 d1m2 = _mm512_sub_ps(d[1], d[2]), d4m3 = _mm512_sub_ps(d[4], d[3]);
    const __m512 d4m2 = _mm512_sub_ps(d[4], d[2]), d3m1 = _mm512_sub_ps(d[3], d[1]);
    t[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
    t[1] = _mm512_fnmadd_ps(four, d12, d34);
    t[2] = _mm512_fmadd_ps(four, d1m2, d4m3);
    t[3] = _mm512_fmadd_ps(two, d3m1, d4m2);
    t[4] = _mm512_fnmadd_ps(two, d3m1, d4m2);
    t[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}

// u = G g over three values.
inline void weight_1d(const __m512 (&g)[3], __m512 (&u)[6]) {
    const __m512 sixth = _mm512_set1_ps(1.0f / 6.0f), twelfth = _mm512_set1_ps(1.0f / 12.0f);
    const __m512 outer = _mm512_add_ps(g[0], g[2]);
    const __m512 outer_weighted = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 24.0f), g[0], _mm512_mul_ps(sixth, g[2]));
    u[0] = _mm512_mul_ps(_mm512_set1_ps(0.25f), g[0]);
    u[1] = _mm512_mul_ps(_mm512_set1_ps(-1.0f / 6.0f), _mm512_add_ps(outer, g[1]));
    u[2] = _mm512_mul_ps(_mm512_set1_ps(-1.0f / 6.0f), _mm512_sub_ps(outer, g[1]));
    u[3] = _mm512_fmadd_ps(twelfth, g[1], outer_weighted);
    u[4] = _mm512_fnmadd_ps(twelfth, g[1], outer_weighted);
    u[5] = g[2];
}

// y = A^T m over six values.
inline void output_1d(const __m512 (&m)[6], __m512 (&y)[4]) {
    const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f), eight = _mm512_set1_ps(8.0f);
    const __m512 m12 = _mm512_add_ps(m[1], m[2]), m34 = _mm512_add_ps(m[3], m[4]);
    const __m512 m1m2 = _mm512_sub_ps(m[1], m[2]), m3m4 = _mm512_sub_ps(m[3], m[4]);
    y[0] = _mm512_add_ps(_mm512_add_ps(m[0], m12), m34);
    y[1] = _mm512_fmadd_ps(two, m3m4, m1m2);
    y[2] = _mm512_fmadd_ps(four, m34, m12);
    y[3] = _mm512_add_ps(_mm512_fmadd_ps(eight, m3m4, m1m2), m[5]);
}

// Output channels [co0, co0 + count) -> U[point][co - co0][ci], 16 input channels per vector.
void transform_weights(const CpuBackend::Context& ctx, const CpuBackend::Conv2dArgs& a, std::int64_t co0,
                       std::int64_t count, float* u) {
    const std::int64_t cin = a.in_channels, point_stride = count * cin;
    const __m512i taps = _mm512_mullo_epi32(_mm512_set1_epi32(9), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    ctx.parallel_for(count, 4, [&](std::int64_t c0, std::int64_t c1) {
        alignas(64) float block[16 * 9];
        for (std::int64_t co = c0; co < c1; ++co) {
            for (std::int64_t ci0 = 0; ci0 < cin; ci0 += 16) {
                const std::int64_t channels = std::min<std::int64_t>(16, cin - ci0), first = ((co0 + co) * cin + ci0) * 9;
                for (std::int64_t i = 0; i < 9; ++i)
                    _mm512_store_ps(block + 16 * i, load_widened(a.weight, a.weight_dtype, first + 16 * i, lanes(channels * 9 - 16 * i)));
                __m512 rows[3][6];  // [ky][point along x]
                for (int ky = 0; ky < 3; ++ky) {
                    __m512 g[3];
                    for (int kx = 0; kx < 3; ++kx)
                        g[kx] = _mm512_i32gather_ps(_mm512_add_epi32(taps, _mm512_set1_epi32(3 * ky + kx)), block, 4);
                    weight_1d(g, rows[ky]);
                }
                const __mmask16 m = lanes(channels);
                for (int j = 0; j < 6; ++j) {
                    const __m512 g[3] = {rows[0][j], rows[1][j], rows[2][j]};
                    __m512 col[6];
                    weight_1d(g, col);
                    for (int i = 0; i < 6; ++i) _mm512_mask_storeu_ps(u + (i * 6 + j) * point_stride + co * cin + ci0, m, col[i]);
                }
            }
        }
    });
}

// Tile rows [row0, row0 + rows) (over batch * tiles_y) of every input channel -> V.
void transform_inputs(const CpuBackend::Context& ctx, const CpuBackend::Conv2dArgs& a, const WinogradPlan& plan,
                      std::int64_t row0, std::int64_t rows, float* v) {
    const std::int64_t cin = a.in_channels, tiles_x = plan.tiles_x, n = rows * tiles_x;
    // Room for the last group's 16 tiles (4 columns apart, 6 wide) past the image's padded width.
    const std::int64_t width = 4 * ((tiles_x + 15) / 16 * 16) + 16;
    const __m512i stride4 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60);
    ctx.parallel_for(cin * rows, 4, [&](std::int64_t w0, std::int64_t w1) {
        thread_local std::vector<float> buffer;
        buffer.assign(static_cast<std::size_t>(12 * width), 0.0f);
        float* patch_rows = buffer.data();      // 6 input rows, zero-padded
        float* columns = buffer.data() + 6 * width;  // B^T applied down each column
        for (std::int64_t w = w0; w < w1; ++w) {
            const std::int64_t c = w / rows, r = w % rows, tile_row = row0 + r;
            const std::int64_t b = tile_row / plan.tiles_y, ty = tile_row % plan.tiles_y;
            const float* plane = a.x + (b * cin + c) * a.height * a.width;
            const std::int64_t x_lo = std::max<std::int64_t>(0, a.pad_left), x_hi = std::min<std::int64_t>(width, a.pad_left + a.width);
            for (int y = 0; y < 6; ++y) {
                float* dst = patch_rows + y * width;
                const std::int64_t iy = 4 * ty - a.pad_top + y;
                if (iy < 0 || iy >= a.height || x_lo >= x_hi) {
                    std::fill(dst, dst + width, 0.0f);
                    continue;
                }
                std::fill(dst, dst + x_lo, 0.0f);
                std::copy(plane + iy * a.width + (x_lo - a.pad_left), plane + iy * a.width + (x_hi - a.pad_left), dst + x_lo);
                std::fill(dst + x_hi, dst + width, 0.0f);
            }
            for (std::int64_t x = 0; x < width; x += 16) {
                __m512 d[6], t[6];
                for (int y = 0; y < 6; ++y) d[y] = _mm512_loadu_ps(patch_rows + y * width + x);
                input_1d(d, t);
                for (int i = 0; i < 6; ++i) _mm512_storeu_ps(columns + i * width + x, t[i]);
            }
            float* out = v + c * n + r * tiles_x;
            for (std::int64_t tx0 = 0; tx0 < tiles_x; tx0 += 16) {
                const __mmask16 m = lanes(tiles_x - tx0);
                for (int i = 0; i < 6; ++i) {
                    const float* line = columns + i * width + 4 * tx0;
                    __m512 e[6], t[6];
                    for (int x = 0; x < 6; ++x) e[x] = _mm512_i32gather_ps(stride4, line + x, 4);
                    input_1d(e, t);
                    for (int j = 0; j < 6; ++j) _mm512_mask_storeu_ps(out + (i * 6 + j) * cin * n + tx0, m, t[j]);
                }
            }
        }
    });
}

// M of output channels [co0, co0 + count) -> y, with bias and accumulation.
void transform_outputs(const CpuBackend::Context& ctx, const CpuBackend::Conv2dArgs& a, const WinogradPlan& plan,
                       std::int64_t row0, std::int64_t rows, std::int64_t co0, std::int64_t count, const float* m) {
    const std::int64_t tiles_x = plan.tiles_x, n = rows * tiles_x, ho = a.out_height(), wo = a.out_width();
    // Four vectors of 16 tiles (one per output column in the tile) -> 64 consecutive output columns.
    const __m512i pair_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i pair_hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512i quad_lo = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const __m512i quad_hi = _mm512_setr_epi32(8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
    ctx.parallel_for(count * rows, 4, [&](std::int64_t w0, std::int64_t w1) {
        for (std::int64_t w = w0; w < w1; ++w) {
            const std::int64_t co = w / rows, r = w % rows, tile_row = row0 + r;
            const std::int64_t b = tile_row / plan.tiles_y, ty = tile_row % plan.tiles_y;
            const __m512 bias = _mm512_set1_ps(a.bias ? a.bias[co0 + co] : 0.0f);
            float* plane = a.y + (b * a.out_channels + co0 + co) * ho * wo;
            const float* in = m + co * n + r * tiles_x;
            for (std::int64_t tx0 = 0; tx0 < tiles_x; tx0 += 16) {
                const __mmask16 tiles = lanes(tiles_x - tx0);
                __m512 across[6][4];  // [point along y][output column]
                for (int i = 0; i < 6; ++i) {
                    __m512 p[6];
                    for (int j = 0; j < 6; ++j) p[j] = _mm512_maskz_loadu_ps(tiles, in + (i * 6 + j) * count * n + tx0);
                    output_1d(p, across[i]);
                }
                __m512 out[4][4];  // [output row][output column]
                for (int q = 0; q < 4; ++q) {
                    const __m512 p[6] = {across[0][q], across[1][q], across[2][q], across[3][q], across[4][q], across[5][q]};
                    __m512 col[4];
                    output_1d(p, col);
                    for (int row = 0; row < 4; ++row) out[row][q] = _mm512_add_ps(col[row], bias);
                }
                const std::int64_t columns = std::min<std::int64_t>(64, wo - 4 * tx0);
                for (int row = 0; row < 4 && 4 * ty + row < ho; ++row) {
                    const __m512 lo01 = _mm512_permutex2var_ps(out[row][0], pair_lo, out[row][1]);
                    const __m512 hi01 = _mm512_permutex2var_ps(out[row][0], pair_hi, out[row][1]);
                    const __m512 lo23 = _mm512_permutex2var_ps(out[row][2], pair_lo, out[row][3]);
                    const __m512 hi23 = _mm512_permutex2var_ps(out[row][2], pair_hi, out[row][3]);
                    const __m512 run[4] = {_mm512_permutex2var_ps(lo01, quad_lo, lo23), _mm512_permutex2var_ps(lo01, quad_hi, lo23),
                                           _mm512_permutex2var_ps(hi01, quad_lo, hi23), _mm512_permutex2var_ps(hi01, quad_hi, hi23)};
                    float* dst = plane + (4 * ty + row) * wo + 4 * tx0;
                    for (int s = 0; s < 4; ++s) {
                        const __mmask16 keep = lanes(columns - 16 * s);
                        if (!keep) break;
                        __m512 value = run[s];
                        if (a.accumulate) value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(keep, dst + 16 * s));
                        _mm512_mask_storeu_ps(dst + 16 * s, keep, value);
                    }
                }
            }
        }
    });
}
}  // namespace

void conv3x3_winograd(const CpuBackend::Context& ctx, const CpuBackend::Conv2dArgs& a, const WinogradPlan& plan,
                      float* scratch) {
    const std::int64_t cin = a.in_channels, cout = a.out_channels, tile_rows = a.batch * plan.tiles_y;
    float* u = scratch;
    float* v = u + kWinogradPoints * plan.out_block * cin;
    float* m = v + kWinogradPoints * cin * plan.chunk_rows * plan.tiles_x;
    const bool weights_once = plan.out_block == cout;
    if (weights_once) transform_weights(ctx, a, 0, cout, u);
    for (std::int64_t row0 = 0; row0 < tile_rows; row0 += plan.chunk_rows) {
        const std::int64_t rows = std::min(plan.chunk_rows, tile_rows - row0), n = rows * plan.tiles_x;
        transform_inputs(ctx, a, plan, row0, rows, v);
        for (std::int64_t co0 = 0; co0 < cout; co0 += plan.out_block) {
            const std::int64_t count = std::min(plan.out_block, cout - co0);
            if (!weights_once) transform_weights(ctx, a, co0, count, u);
            GemmProblem g;
            g.batch = kWinogradPoints;
            g.m = count;
            g.n = n;
            g.k = cin;
            g.a = u;
            g.lda = cin;
            g.a_batch_stride = count * cin;
            g.b = v;
            g.ldb = n;
            g.b_batch_stride = cin * n;
            g.c = m;
            g.ldc = n;
            g.c_batch_stride = count * n;
            gemm_avx512(ctx, g);
            transform_outputs(ctx, a, plan, row0, rows, co0, count, m);
        }
    }
}

}  // namespace unclip::detail
