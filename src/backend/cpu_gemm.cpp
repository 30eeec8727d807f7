// GEMM on the CPU: Eigen's single-threaded kernel on fixed-size blocks of C spread over the
// context's threads. Block sizes depend on the shapes only (not on the thread count), so every
// element of C is summed in the same order whatever the number of threads.
#include <algorithm>

#include <Eigen/Core>

#include "unclip/backend/cpu.hpp"

namespace unclip {
namespace {
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ColMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using Stride = Eigen::OuterStride<>;
using ConstRowMap = Eigen::Map<const RowMatrix, Eigen::Unaligned, Stride>;
using ConstColMap = Eigen::Map<const ColMatrix, Eigen::Unaligned, Stride>;
using RowMap = Eigen::Map<RowMatrix, Eigen::Unaligned, Stride>;

constexpr std::int64_t kBlock = 256;  // rows or columns of C per task

template <class AMap, class BMap>
void gemm_block(const AMap& a, const BMap& b, float alpha, float beta, RowMap& c) {
    if (beta == 0.0f) {
        c.noalias() = alpha * a * b;
    } else {
        if (beta != 1.0f) c *= beta;
        c.noalias() += alpha * a * b;
    }
}

// A stored [m,k] row-major is op(A) for trans_a false; stored [k,m] row-major it is the
// transpose, i.e. a column-major [m,k] map with the same leading dimension.
void gemm_rows(bool trans_a, bool trans_b, std::int64_t m0, std::int64_t m1, std::int64_t n0, std::int64_t n1,
               std::int64_t k, float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
               float beta, float* c, std::int64_t ldc) {
    const std::int64_t m = m1 - m0, n = n1 - n0;
    RowMap cm(c + m0 * ldc + n0, m, n, Stride(ldc));
    auto run = [&](const auto& am) {
        if (trans_b) gemm_block(am, ConstColMap(b + n0 * ldb, k, n, Stride(ldb)), alpha, beta, cm);
        else gemm_block(am, ConstRowMap(b + n0, k, n, Stride(ldb)), alpha, beta, cm);
    };
    if (trans_a) run(ConstColMap(a + m0, m, k, Stride(lda)));
    else run(ConstRowMap(a + m0 * lda, m, k, Stride(lda)));
}
}  // namespace

void CpuBackend::gemm(const Context& ctx, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                      float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
                      float* c, std::int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (std::int64_t i = 0; i < m; ++i)
            for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    const bool split_columns = n >= m;
    const std::int64_t extent = split_columns ? n : m;
    ctx.parallel_for(extent, kBlock, [&](std::int64_t begin, std::int64_t end) {
        if (split_columns) gemm_rows(trans_a, trans_b, 0, m, begin, end, k, alpha, a, lda, b, ldb, beta, c, ldc);
        else gemm_rows(trans_a, trans_b, begin, end, 0, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    });
}

}  // namespace unclip
