// Eigen-based CPU kernels, compiled once per instruction set with UNCLIP_KERNEL_ISA set to
// baseline, avx2 or avx512. Each compilation renames Eigen's namespace, so the inline template
// code of one instruction set can never be merged by the linker into another's (they would
// otherwise share mangled names and the linker would keep an arbitrary one).
#define Eigen UNCLIP_EIGEN_NAMESPACE
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>

#include "backend/kernel_table.hpp"
#if defined(UNCLIP_KERNEL_GEMM_AVX512)
#include "backend/isa/avx512_lanes.hpp"
#include "backend/isa/bf16_pairs.hpp"
#endif

#define UNCLIP_CONCAT_(a, b) a##b
#define UNCLIP_CONCAT(a, b) UNCLIP_CONCAT_(a, b)

namespace unclip::detail {
namespace {
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ColMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using Stride = Eigen::OuterStride<>;
using ConstRowMap = Eigen::Map<const RowMatrix, Eigen::Unaligned, Stride>;
using ConstColMap = Eigen::Map<const ColMatrix, Eigen::Unaligned, Stride>;
using RowMap = Eigen::Map<RowMatrix, Eigen::Unaligned, Stride>;
using RowVector = Eigen::Array<float, Eigen::Dynamic, 1>;
using ArrayMap = Eigen::Map<Eigen::ArrayXf>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;

// ---- GEMM ---------------------------------------------------------------------------------
template <class AMap, class BMap>
void multiply(const AMap& a, const BMap& b, float alpha, float beta, RowMap& c) {
    if (beta == 0.0f) {
        c.noalias() = alpha * a * b;
    } else {
        if (beta != 1.0f) c *= beta;
        c.noalias() += alpha * a * b;
    }
}

// A stored [m,k] row-major is op(A) for trans_a false; stored [k,m] row-major it is the
// transpose, i.e. a column-major [m,k] map with the same leading dimension.
void gemm_block(bool trans_a, bool trans_b, std::int64_t m0, std::int64_t m1, std::int64_t n0, std::int64_t n1,
                std::int64_t k, float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
                float* c, std::int64_t ldc) {
    const std::int64_t m = m1 - m0, n = n1 - n0;
    RowMap cm(c + m0 * ldc + n0, m, n, Stride(ldc));
    auto run = [&](const auto& am) {
        if (trans_b) multiply(am, ConstColMap(b + n0 * ldb, k, n, Stride(ldb)), alpha, beta, cm);
        else multiply(am, ConstRowMap(b + n0, k, n, Stride(ldb)), alpha, beta, cm);
    };
    if (trans_a) run(ConstColMap(a + m0, m, k, Stride(lda)));
    else run(ConstRowMap(a + m0 * lda, m, k, Stride(lda)));
}

// ---- Attention ----------------------------------------------------------------------------
// One task handles one (batch, head, block of kQueryBlock queries): it walks the keys in blocks of
// kKeyBlock, keeping the running row maximum m, the running denominator l and the unnormalised
// output O:  S = scale Q K_blk^T;  m' = max(m, rowmax S);  P = exp(S - m');
//            l = l exp(m - m') + rowsum P;  O = O exp(m - m') + P V_blk;  out = O / l.
// Working memory is two small heap tiles per task range, never q_len x kv_len (at 768 px the top
// UNet level has 9216 tokens: a full score matrix per head would be 340 MB).
constexpr std::int64_t kQueryBlock = 128;
constexpr float kMinusInf = -std::numeric_limits<float>::infinity();
constexpr std::int64_t kKeyBlock = 256;

// One query block's online-softmax state: scores [rows, kKeyBlock], the unnormalised output acc
// [rows, d], running row maxima and denominators. The register-tile kernels pad rows to whole
// groups; the padding rows are computed and never written out.
struct Tiles {
    RowMatrix scores, acc;
    RowVector running_max, denominator;

    void begin(std::int64_t rows, std::int64_t padded_rows, int d) {
        scores.resize(padded_rows, kKeyBlock);
        acc.setZero(padded_rows, d);
        running_max.setConstant(rows, kMinusInf);
        denominator.setZero(rows);
    }
    // out = acc / denominator for the block's rows.
    void finish(const CpuBackend::AttentionArgs& a, std::int64_t b, int h, std::int64_t q0) const {
        const std::int64_t rows = denominator.size();
        RowMap out(a.out + b * a.out_batch_stride + q0 * a.out_stride + h * a.head_dim, rows, a.head_dim, Stride(a.out_stride));
        out = (acc.topRows(rows).array().colwise() / denominator).matrix();
    }
};

// One key block [k0, k0 + cols) of the online softmax for query rows q0, q0 + 1, ...: masks the
// keys a causal query must not see, turns the scores s into P = exp(s - m') in place, rescales acc
// and the denominator by exp(m - m') and moves the running maximum m to m'. The caller then adds
// P V to acc.
template <class Scores, class Acc>
void softmax_step(Scores&& s, Acc&& acc, RowVector& running_max, RowVector& denominator, bool causal, std::int64_t q0,
                  std::int64_t k0) {
    const std::int64_t rows = s.rows(), cols = s.cols();
    if (causal && k0 + cols > q0 + 1) {
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = std::max<std::int64_t>(0, q0 + r + 1 - k0); c < cols; ++c) s(r, c) = kMinusInf;
    }
    const RowVector new_max = running_max.max(s.rowwise().maxCoeff().array());
    // Rows whose keys are all masked so far keep max -inf; exp(-inf - -inf) would be NaN.
    const RowVector safe_max = (new_max == kMinusInf).select(0.0f, new_max);
    const RowVector correction = (running_max - safe_max).exp();
    s.array().colwise() -= safe_max;
    s.array() = s.array().exp();
    denominator = denominator * correction + s.rowwise().sum().array();
    acc.array().colwise() *= correction;
    running_max = new_max;
}

void attend_block(const CpuBackend::AttentionArgs& a, float scale, std::int64_t b, int h, std::int64_t q0, std::int64_t q1,
                  Tiles& tiles) {
    const auto rows = q1 - q0;
    const int d = a.head_dim;
    const ConstRowMap q(a.q + b * a.q_batch_stride + q0 * a.q_stride + h * d, rows, d, Stride(a.q_stride));
    const float* k_base = a.k + b * a.k_batch_stride + h * d;
    const float* v_base = a.v + b * a.v_batch_stride + h * d;
    tiles.begin(rows, rows, d);
    auto& acc = tiles.acc;
    auto& running_max = tiles.running_max;
    auto& denominator = tiles.denominator;

    const std::int64_t key_end = a.causal ? std::min(a.kv_len, q1) : a.kv_len;
    for (std::int64_t k0 = 0; k0 < key_end; k0 += kKeyBlock) {
        const auto cols = std::min<std::int64_t>(kKeyBlock, key_end - k0);
        const ConstRowMap k(k_base + k0 * a.k_stride, cols, d, Stride(a.k_stride));
        const ConstRowMap v(v_base + k0 * a.v_stride, cols, d, Stride(a.v_stride));
        auto s = tiles.scores.leftCols(cols);
        s.noalias() = (scale * q) * k.transpose();
        softmax_step(s, acc, running_max, denominator, a.causal, q0, k0);
        acc.noalias() += s * v;
    }
    tiles.finish(a, b, h, q0);
}

void attention_tasks(const CpuBackend::AttentionArgs& a, float scale, std::int64_t t0, std::int64_t t1) {
    const std::int64_t q_blocks = (a.q_len + kQueryBlock - 1) / kQueryBlock;
    Tiles tiles;
    for (std::int64_t t = t0; t < t1; ++t) {
        const std::int64_t block = t % q_blocks, bh = t / q_blocks, q0 = block * kQueryBlock;
        attend_block(a, scale, bh / a.heads, static_cast<int>(bh % a.heads), q0, std::min(a.q_len, q0 + kQueryBlock), tiles);
    }
}

#if defined(UNCLIP_KERNEL_GEMM_AVX512)
// ---- softmax_step in AVX-512 for the register-tile attentions ---------------------------------
// e^x for x <= 88.7 (Cephes' expf: e^x = 2^n e^r, |r| <= ln 2 / 2, degree-6 polynomial; within
// 2 ulp); far below -87 it is 0.
inline __m512 exp_ps(__m512 x) {
    x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

// softmax_step on plain rows: scores s [rows][cols] (row stride lds) become P in place, columns a
// causal query must not see become 0, and acc [rows][d] (stride ldacc) is rescaled. Two passes
// over each row (max, then exp and sum) instead of Eigen's four.
void softmax_step_rows(float* s, std::int64_t lds, std::int64_t rows, std::int64_t cols, float* acc, std::int64_t ldacc,
                       int d, float* running_max, float* denominator, bool causal, std::int64_t q0, std::int64_t k0) {
    for (std::int64_t r = 0; r < rows; ++r) {
        float* row = s + r * lds;
        const std::int64_t visible = causal ? std::clamp<std::int64_t>(q0 + r + 1 - k0, 0, cols) : cols;
        __m512 max = _mm512_set1_ps(kMinusInf);
        for (std::int64_t c = 0; c < visible; c += 16) {
            const __mmask16 m = lanes(visible - c);
            max = _mm512_mask_max_ps(max, m, max, _mm512_maskz_loadu_ps(m, row + c));
        }
        const float new_max = std::max(running_max[r], _mm512_reduce_max_ps(max));
        // Rows whose keys are all masked so far keep max -inf; exp(-inf - -inf) would be NaN.
        const float safe_max = new_max == kMinusInf ? 0.0f : new_max;
        const float correction = std::exp(running_max[r] - safe_max);
        const __m512 shift = _mm512_set1_ps(safe_max);
        __m512 sum = _mm512_setzero_ps();
        for (std::int64_t c = 0; c < cols; c += 16) {
            const std::int64_t left = std::min<std::int64_t>(16, cols - c);
            const __mmask16 store = lanes(left), seen = lanes(std::min(visible - c, left));
            const __m512 p = _mm512_maskz_mov_ps(seen, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(seen, row + c), shift)));
            sum = _mm512_add_ps(sum, p);
            _mm512_mask_storeu_ps(row + c, store, p);
        }
        denominator[r] = denominator[r] * correction + _mm512_reduce_add_ps(sum);
        running_max[r] = new_max;
        if (correction == 1.0f) continue;
        float* acc_row = acc + r * ldacc;
        const __m512 scale = _mm512_set1_ps(correction);
        for (int e = 0; e < d; e += 16) _mm512_storeu_ps(acc_row + e, _mm512_mul_ps(_mm512_loadu_ps(acc_row + e), scale));
    }
}

// ---- Attention with bf16 dot products (CpuBackend::Context::set_bf16_gemm, AVX-512 BF16) -------
// The walk of attend_block, with S = Q K^T and O += P V on vdpbf16ps (bf16 operands, fp32 sums);
// the online softmax stays fp32. K and V are packed once per call for every (batch, head), since
// each of a head's query blocks reads all of them:
//   K: chunks of 64 keys, [chunk][d / 2][64] words (d pair, key), zero past kv_len;
//   V: [key pair][d] words (V[2q][e], V[2q + 1][e]), a zero key past an odd kv_len.
// Q and P rows are plain bf16 rows, i.e. words of consecutive pairs. Needs head_dim % 16 == 0.
constexpr int kDotRows = 6;         // 24 accumulators + 4 B vectors + a broadcast
constexpr std::int64_t kKeyChunk = 64;

std::int64_t packed_k_words(std::int64_t kv_len, int d) { return (kv_len + kKeyChunk - 1) / kKeyChunk * kKeyChunk * (d / 2); }
std::int64_t packed_v_words(std::int64_t kv_len, int d) { return (kv_len + 1) / 2 * d; }

// c[r][0, 16 NV) (+)= sum over q < pairs of a[r][q] * b[q][0, 16 NV), for rows in whole groups of
// kDotRows (the caller pads a and c).
template <int NV, bool Accumulate>
UNCLIP_BF16_TARGET void dot_rows(const std::uint32_t* a, std::int64_t lda, std::int64_t rows, const std::uint32_t* b,
                                 std::int64_t ldb, std::int64_t pairs, float* c, std::int64_t ldc) {
    for (std::int64_t r0 = 0; r0 < rows; r0 += kDotRows) {
        __m512 acc[kDotRows][NV];
#pragma GCC unroll 6
        for (int r = 0; r < kDotRows; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v)
                acc[r][v] = Accumulate ? _mm512_loadu_ps(c + (r0 + r) * ldc + 16 * v) : _mm512_setzero_ps();
        const std::uint32_t* arow = a + r0 * lda;
        for (std::int64_t q = 0; q < pairs; ++q) {
            __m512bh bv[NV];
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) bv[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + q * ldb + 16 * v));
#pragma GCC unroll 6
            for (int r = 0; r < kDotRows; ++r) {
                const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(arow[r * lda + q])));
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
            }
        }
#pragma GCC unroll 6
        for (int r = 0; r < kDotRows; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + (r0 + r) * ldc + 16 * v, acc[r][v]);
    }
}

// `count` floats of `x` times `scale` as (count + 1) / 2 bf16 words (pairs of consecutive values;
// an odd count pairs its last value with zero). Nothing past those words is written.
UNCLIP_BF16_TARGET void bf16_row(const float* x, std::int64_t count, float scale, std::uint32_t* words) {
    const __m512 s = _mm512_set1_ps(scale);
    for (std::int64_t i = 0; i < count; i += 32) {
        const __m512 lo = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes(count - i), x + i), s);
        const __m512 hi = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes(count - i - 16), x + i + 16), s);
        _mm512_mask_storeu_epi32(words + i / 2, lanes((count - i + 1) / 2), bf16_consecutive(lo, hi));
    }
}

UNCLIP_BF16_TARGET void pack_keys_values(const CpuBackend::AttentionArgs& a, std::int64_t b, int h, std::uint32_t* kp,
                                         std::uint32_t* vp) {
    const int d = a.head_dim, half = d / 2;
    const float* k_base = a.k + b * a.k_batch_stride + h * d;
    const float* v_base = a.v + b * a.v_batch_stride + h * d;
    const std::int64_t keys = (a.kv_len + kKeyChunk - 1) / kKeyChunk * kKeyChunk;
    std::uint32_t row[256];  // head_dim <= 512
    for (std::int64_t j = 0; j < keys; ++j) {
        std::uint32_t* chunk = kp + (j / kKeyChunk) * half * kKeyChunk + j % kKeyChunk;
        if (j < a.kv_len) bf16_row(k_base + j * a.k_stride, d, 1.0f, row);
        for (int p = 0; p < half; ++p) chunk[p * kKeyChunk] = j < a.kv_len ? row[p] : 0u;
    }
    for (std::int64_t q = 0; q < (a.kv_len + 1) / 2; ++q) {
        const float* even = v_base + 2 * q * a.v_stride;
        const bool has_odd = 2 * q + 1 < a.kv_len;
        for (int e = 0; e < d; e += 16) {
            const __m512 odd = has_odd ? _mm512_loadu_ps(even + a.v_stride + e) : _mm512_setzero_ps();
            _mm512_storeu_si512(vp + q * d + e, bf16_pairs(_mm512_loadu_ps(even + e), odd));
        }
    }
}

struct Bf16Tiles : Tiles {
    std::vector<std::uint32_t> q_words, p_words;
};

template <bool Accumulate>
void dot_dispatch(int nv, const std::uint32_t* a, std::int64_t lda, std::int64_t rows, const std::uint32_t* b,
                  std::int64_t ldb, std::int64_t pairs, float* c, std::int64_t ldc) {
    switch (nv) {
    case 1: dot_rows<1, Accumulate>(a, lda, rows, b, ldb, pairs, c, ldc); break;
    case 2: dot_rows<2, Accumulate>(a, lda, rows, b, ldb, pairs, c, ldc); break;
    case 3: dot_rows<3, Accumulate>(a, lda, rows, b, ldb, pairs, c, ldc); break;
    default: dot_rows<4, Accumulate>(a, lda, rows, b, ldb, pairs, c, ldc); break;
    }
}

// The key-block walk both register-tile attentions share, for query rows [q0, q1) (padded to
// `padded` rows, Q already prepared by the caller): per key block, scores(k0, c0) fills the
// kKeyChunk columns from c0 of t.scores, the AVX-512 softmax step turns them into P, and
// accumulate(k0, cols) adds P V to t.acc.
template <class BlockTiles, class Scores, class Accumulate>
void walk_key_blocks(const CpuBackend::AttentionArgs& a, std::int64_t b, int h, std::int64_t q0, std::int64_t q1,
                     std::int64_t padded, BlockTiles& t, const Scores& scores, const Accumulate& accumulate) {
    const std::int64_t rows = q1 - q0;
    const int d = a.head_dim;
    t.begin(rows, padded, d);
    const std::int64_t key_end = a.causal ? std::min(a.kv_len, q1) : a.kv_len;
    for (std::int64_t k0 = 0; k0 < key_end; k0 += kKeyBlock) {
        const auto cols = std::min<std::int64_t>(kKeyBlock, key_end - k0);
        for (std::int64_t c0 = 0; c0 < cols; c0 += kKeyChunk) scores(k0, c0);
        softmax_step_rows(t.scores.data(), kKeyBlock, rows, cols, t.acc.data(), d, d, t.running_max.data(), t.denominator.data(),
                          a.causal, q0, k0);
        accumulate(k0, cols);
    }
    t.finish(a, b, h, q0);
}

void attend_block_bf16(const CpuBackend::AttentionArgs& a, float scale, std::int64_t b, int h, std::int64_t q0,
                       std::int64_t q1, const std::uint32_t* kp, const std::uint32_t* vp, Bf16Tiles& t) {
    const std::int64_t rows = q1 - q0, padded = (rows + kDotRows - 1) / kDotRows * kDotRows;
    const int d = a.head_dim, half = d / 2;
    t.q_words.assign(static_cast<std::size_t>(padded * half), 0u);
    t.p_words.assign(static_cast<std::size_t>(padded * kKeyBlock / 2), 0u);
    const float* q_base = a.q + b * a.q_batch_stride + q0 * a.q_stride + h * d;
    for (std::int64_t r = 0; r < rows; ++r) bf16_row(q_base + r * a.q_stride, d, scale, t.q_words.data() + r * half);
    walk_key_blocks(
        a, b, h, q0, q1, padded, t,
        [&](std::int64_t k0, std::int64_t c0) {
            dot_rows<4, false>(t.q_words.data(), half, padded, kp + (k0 + c0) / kKeyChunk * half * kKeyChunk, kKeyChunk, half,
                               t.scores.data() + c0, kKeyBlock);
        },
        [&](std::int64_t k0, std::int64_t cols) {
            const std::int64_t pairs = (cols + 1) / 2;
            for (std::int64_t r = 0; r < rows; ++r)
                bf16_row(t.scores.data() + r * kKeyBlock, cols, 1.0f, t.p_words.data() + r * (kKeyBlock / 2));
            for (int e0 = 0; e0 < d; e0 += 64)
                dot_dispatch<true>(std::min(4, (d - e0) / 16), t.p_words.data(), kKeyBlock / 2, padded, vp + k0 / 2 * d + e0, d,
                                   pairs, t.acc.data() + e0, d);
        });
}

// Packs each (batch, head)'s operands once with pack(b, h, packed), then runs every query block
// [q0, q1) of every head through attend(b, h, q0, q1, packed, tiles).
template <class Word, class Tiles, class Pack, class Attend>
void attention_over_packed_heads(const CpuBackend::Context& ctx, const CpuBackend::AttentionArgs& a,
                                 std::int64_t words_per_head, const Pack& pack, const Attend& attend) {
    const std::int64_t heads = a.batch * a.heads;
    thread_local std::vector<Word> packed;  // grows to the largest call, then stays
    packed.resize(static_cast<std::size_t>(heads * words_per_head));
    Word* base = packed.data();
    ctx.parallel_for(heads, 1, [&](std::int64_t h0, std::int64_t h1) {
        for (std::int64_t bh = h0; bh < h1; ++bh) pack(bh / a.heads, static_cast<int>(bh % a.heads), base + bh * words_per_head);
    });
    const std::int64_t q_blocks = (a.q_len + kQueryBlock - 1) / kQueryBlock;
    ctx.parallel_for(heads * q_blocks, 1, [&](std::int64_t t0, std::int64_t t1) {
        Tiles tiles;
        for (std::int64_t t = t0; t < t1; ++t) {
            const std::int64_t block = t % q_blocks, bh = t / q_blocks, q0 = block * kQueryBlock;
            attend(bh / a.heads, static_cast<int>(bh % a.heads), q0, std::min(a.q_len, q0 + kQueryBlock),
                   base + bh * words_per_head, tiles);
        }
    });
}

void attention_bf16(const CpuBackend::Context& ctx, const CpuBackend::AttentionArgs& a, float scale) {
    const std::int64_t k_words = packed_k_words(a.kv_len, a.head_dim), v_words = packed_v_words(a.kv_len, a.head_dim);
    attention_over_packed_heads<std::uint32_t, Bf16Tiles>(
        ctx, a, k_words + v_words,
        [&](std::int64_t b, int h, std::uint32_t* packed) { pack_keys_values(a, b, h, packed, packed + k_words); },
        [&](std::int64_t b, int h, std::int64_t q0, std::int64_t q1, const std::uint32_t* packed, Bf16Tiles& tiles) {
            attend_block_bf16(a, scale, b, h, q0, q1, packed, packed + k_words, tiles);
        });
}

// ---- fp32 attention in AVX-512 register tiles -------------------------------------------------
// The walk of attend_block with both products as 6-row FMA tiles: K is packed once per call for
// every (batch, head) as chunks of 64 keys [chunk][d][64] (zero past kv_len), so a 6 x 64 score
// tile takes one broadcast of Q and four loads of K per depth step; P V reads V's rows in place.
// Needs head_dim % 16 == 0.

// c[r][0, 16 NV) (+)= sum over p < depth of a[r][p] * b[p][0, 16 NV), for rows in whole groups of
// kDotRows (the caller pads a and c).
template <int NV, bool Accumulate>
void fma_rows(const float* a, std::int64_t lda, std::int64_t rows, const float* b, std::int64_t ldb, std::int64_t depth,
              float* c, std::int64_t ldc) {
    for (std::int64_t r0 = 0; r0 < rows; r0 += kDotRows) {
        __m512 acc[kDotRows][NV];
#pragma GCC unroll 6
        for (int r = 0; r < kDotRows; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v)
                acc[r][v] = Accumulate ? _mm512_loadu_ps(c + (r0 + r) * ldc + 16 * v) : _mm512_setzero_ps();
        const float* arow = a + r0 * lda;
        for (std::int64_t p = 0; p < depth; ++p) {
            __m512 bv[NV];
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + p * ldb + 16 * v);
#pragma GCC unroll 6
            for (int r = 0; r < kDotRows; ++r) {
                const __m512 av = _mm512_set1_ps(arow[r * lda + p]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
            }
        }
#pragma GCC unroll 6
        for (int r = 0; r < kDotRows; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + (r0 + r) * ldc + 16 * v, acc[r][v]);
    }
}

void fma_dispatch(int nv, const float* a, std::int64_t lda, std::int64_t rows, const float* b, std::int64_t ldb,
                  std::int64_t depth, float* c, std::int64_t ldc) {
    switch (nv) {
    case 1: fma_rows<1, true>(a, lda, rows, b, ldb, depth, c, ldc); break;
    case 2: fma_rows<2, true>(a, lda, rows, b, ldb, depth, c, ldc); break;
    case 3: fma_rows<3, true>(a, lda, rows, b, ldb, depth, c, ldc); break;
    default: fma_rows<4, true>(a, lda, rows, b, ldb, depth, c, ldc); break;
    }
}

std::int64_t packed_k_floats(std::int64_t kv_len, int d) { return (kv_len + kKeyChunk - 1) / kKeyChunk * kKeyChunk * d; }

void pack_keys(const CpuBackend::AttentionArgs& a, std::int64_t b, int h, float* kp) {
    const int d = a.head_dim;
    const float* k_base = a.k + b * a.k_batch_stride + h * d;
    const std::int64_t keys = (a.kv_len + kKeyChunk - 1) / kKeyChunk * kKeyChunk;
    for (std::int64_t j = 0; j < keys; ++j) {
        float* chunk = kp + (j / kKeyChunk) * d * kKeyChunk + j % kKeyChunk;
        const float* row = k_base + j * a.k_stride;
        for (int p = 0; p < d; ++p) chunk[p * kKeyChunk] = j < a.kv_len ? row[p] : 0.0f;
    }
}

struct FmaTiles : Tiles {
    std::vector<float> q_rows;
};

void attend_block_f32(const CpuBackend::AttentionArgs& a, float scale, std::int64_t b, int h, std::int64_t q0,
                      std::int64_t q1, const float* kp, FmaTiles& t) {
    const std::int64_t rows = q1 - q0, padded = (rows + kDotRows - 1) / kDotRows * kDotRows;
    const int d = a.head_dim;
    t.q_rows.assign(static_cast<std::size_t>(padded * d), 0.0f);
    const float* q_base = a.q + b * a.q_batch_stride + q0 * a.q_stride + h * d;
    for (std::int64_t r = 0; r < rows; ++r)
        for (int e = 0; e < d; ++e) t.q_rows[static_cast<std::size_t>(r * d + e)] = scale * q_base[r * a.q_stride + e];
    const float* v_base = a.v + b * a.v_batch_stride + h * d;
    walk_key_blocks(
        a, b, h, q0, q1, padded, t,
        [&](std::int64_t k0, std::int64_t c0) {
            fma_rows<4, false>(t.q_rows.data(), d, padded, kp + (k0 + c0) / kKeyChunk * d * kKeyChunk, kKeyChunk, d,
                               t.scores.data() + c0, kKeyBlock);
        },
        [&](std::int64_t k0, std::int64_t cols) {
            for (int e0 = 0; e0 < d; e0 += 64)
                fma_dispatch(std::min(4, (d - e0) / 16), t.scores.data(), kKeyBlock, padded, v_base + k0 * a.v_stride + e0,
                             a.v_stride, cols, t.acc.data() + e0, d);
        });
}

void attention_f32(const CpuBackend::Context& ctx, const CpuBackend::AttentionArgs& a, float scale) {
    attention_over_packed_heads<float, FmaTiles>(
        ctx, a, packed_k_floats(a.kv_len, a.head_dim), [&](std::int64_t b, int h, float* packed) { pack_keys(a, b, h, packed); },
        [&](std::int64_t b, int h, std::int64_t q0, std::int64_t q1, const float* packed, FmaTiles& tiles) {
            attend_block_f32(a, scale, b, h, q0, q1, packed, tiles);
        });
}
#endif

// ---- Activations --------------------------------------------------------------------------
// Eigen's vectorised exp/erf: the UNet's GEGLU applies erf to 24 M elements per 96x96 block.
Eigen::ArrayXf gelu_of(const ConstArrayMap& x) { return 0.5f * x * (1.0f + (x * 0.70710678118654752440f).erf()); }

void gelu(const float* x, float* y, std::int64_t n) { ArrayMap(y, n) = gelu_of(ConstArrayMap(x, n)); }

void quick_gelu(const float* x, float* y, std::int64_t n) {
    const ConstArrayMap in(x, n);
    ArrayMap(y, n) = in / (1.0f + (-1.702f * in).exp());
}

void geglu_rows(const float* x, float* y, std::int64_t r0, std::int64_t r1, std::int64_t inner) {
    for (std::int64_t r = r0; r < r1; ++r) {
        const float* row = x + r * 2 * inner;
        ArrayMap(y + r * inner, inner) = ConstArrayMap(row, inner) * gelu_of(ConstArrayMap(row + inner, inner));
    }
}

}  // namespace

const KernelTable& UNCLIP_CONCAT(kernel_table_, UNCLIP_KERNEL_ISA)() noexcept {
#if defined(UNCLIP_KERNEL_GEMM_AVX512)
    constexpr auto packed_gemm = &gemm_avx512;
    constexpr auto bf16_attention = &attention_bf16;
    constexpr auto winograd = &conv3x3_winograd;
    constexpr auto f32_attention = &attention_f32;
#else
    constexpr void (*packed_gemm)(const CpuBackend::Context&, const GemmProblem&) = nullptr;
    constexpr void (*bf16_attention)(const CpuBackend::Context&, const CpuBackend::AttentionArgs&, float) = nullptr;
    constexpr void (*f32_attention)(const CpuBackend::Context&, const CpuBackend::AttentionArgs&, float) = nullptr;
    constexpr void (*winograd)(const CpuBackend::Context&, const CpuBackend::Conv2dArgs&, const WinogradPlan&, float*) =
        nullptr;
#endif
    static const KernelTable table{UNCLIP_KERNEL_ISA_NAME, gemm_block, attention_tasks, kQueryBlock,
                                   gelu, quick_gelu, geglu_rows, packed_gemm, bf16_attention, winograd,
                                   f32_attention};
    return table;
}

}  // namespace unclip::detail
