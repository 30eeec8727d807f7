// Eigen-based CPU kernels, compiled once per instruction set with UNCLIP_KERNEL_ISA set to
// baseline, avx2 or avx512. Each compilation renames Eigen's namespace, so the inline template
// code of one instruction set can never be merged by the linker into another's (they would
// otherwise share mangled names and the linker would keep an arbitrary one).
#define Eigen UNCLIP_EIGEN_NAMESPACE
#include <algorithm>
#include <cmath>
#include <limits>

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>

#include "backend/kernel_table.hpp"

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
constexpr std::int64_t kKeyBlock = 256;

struct Tiles {
    RowMatrix scores, acc;
    RowVector running_max, denominator;
};

void attend_block(const CpuBackend::AttentionArgs& a, float scale, std::int64_t b, int h, std::int64_t q0, std::int64_t q1,
                  Tiles& tiles) {
    const auto rows = q1 - q0;
    const int d = a.head_dim;
    constexpr float kMinusInf = -std::numeric_limits<float>::infinity();
    const ConstRowMap q(a.q + b * a.q_batch_stride + q0 * a.q_stride + h * d, rows, d, Stride(a.q_stride));
    const float* k_base = a.k + b * a.k_batch_stride + h * d;
    const float* v_base = a.v + b * a.v_batch_stride + h * d;
    tiles.scores.resize(rows, kKeyBlock);
    tiles.acc.setZero(rows, d);
    tiles.running_max.setConstant(rows, kMinusInf);
    tiles.denominator.setZero(rows);
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
        if (a.causal && k0 + cols > q0 + 1) {
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
        acc.noalias() += s * v;
        running_max = new_max;
    }
    RowMap out(a.out + b * a.out_batch_stride + q0 * a.out_stride + h * d, rows, d, Stride(a.out_stride));
    out = (acc.array().colwise() / denominator).matrix();
}

void attention_tasks(const CpuBackend::AttentionArgs& a, float scale, std::int64_t t0, std::int64_t t1) {
    const std::int64_t q_blocks = (a.q_len + kQueryBlock - 1) / kQueryBlock;
    Tiles tiles;
    for (std::int64_t t = t0; t < t1; ++t) {
        const std::int64_t block = t % q_blocks, bh = t / q_blocks, q0 = block * kQueryBlock;
        attend_block(a, scale, bh / a.heads, static_cast<int>(bh % a.heads), q0, std::min(a.q_len, q0 + kQueryBlock), tiles);
    }
}

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
#else
    constexpr void (*packed_gemm)(const CpuBackend::Context&, const GemmProblem&) = nullptr;
#endif
    static const KernelTable table{UNCLIP_KERNEL_ISA_NAME, gemm_block, attention_tasks, kQueryBlock,
                                   gelu, quick_gelu, geglu_rows, packed_gemm};
    return table;
}

}  // namespace unclip::detail
