// Tiled attention with an online softmax (flash-attention style) on the CPU. One task handles one
// (batch, head, block of kQueryBlock queries): it walks the keys in blocks of kKeyBlock, keeping the
// running row maximum m, the running denominator l and the unnormalised output O:
//   S = scale * Q K_blk^T;  m' = max(m, rowmax S);  P = exp(S - m');
//   l = l * exp(m - m') + rowsum P;  O = O * exp(m - m') + P V_blk;  finally out = O / l.
// Working memory per task is two small heap tiles (not the stack: host threads may have small
// stacks), never q_len x kv_len (at 768 px the top
// UNet level has 9216 tokens: a full score matrix per head would be 340 MB).
#include <algorithm>
#include <cmath>
#include <limits>

#include <Eigen/Core>

#include "unclip/backend/cpu.hpp"
#include "unclip/error.hpp"

namespace unclip {
namespace {
constexpr int kQueryBlock = 128;
constexpr int kKeyBlock = 256;

using Stride = Eigen::OuterStride<>;
using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstTokens = Eigen::Map<const RowMajor, Eigen::Unaligned, Stride>;
using Tokens = Eigen::Map<RowMajor, Eigen::Unaligned, Stride>;
using RowVector = Eigen::Array<float, Eigen::Dynamic, 1>;

struct Tiles {
    RowMajor scores, acc;
    RowVector running_max, denominator;
};

void attend_block(const CpuBackend::AttentionArgs& a, float scale, std::int64_t b, int h, std::int64_t q0,
                  std::int64_t q1, Tiles& tiles) {
    const auto rows = q1 - q0;
    const int d = a.head_dim;
    const ConstTokens q(a.q + b * a.q_batch_stride + q0 * a.q_stride + h * d, rows, d, Stride(a.q_stride));
    const float* k_base = a.k + b * a.k_batch_stride + h * d;
    const float* v_base = a.v + b * a.v_batch_stride + h * d;

    tiles.scores.resize(rows, kKeyBlock);
    tiles.acc.setZero(rows, d);
    tiles.running_max.setConstant(rows, -std::numeric_limits<float>::infinity());
    tiles.denominator.setZero(rows);
    auto& scores = tiles.scores;
    auto& acc = tiles.acc;
    auto& running_max = tiles.running_max;
    auto& denominator = tiles.denominator;

    const std::int64_t key_end = a.causal ? std::min(a.kv_len, q1) : a.kv_len;
    for (std::int64_t k0 = 0; k0 < key_end; k0 += kKeyBlock) {
        const auto cols = std::min<std::int64_t>(kKeyBlock, key_end - k0);
        const ConstTokens k(k_base + k0 * a.k_stride, cols, d, Stride(a.k_stride));
        const ConstTokens v(v_base + k0 * a.v_stride, cols, d, Stride(a.v_stride));
        auto s = scores.leftCols(cols);
        s.noalias() = (scale * q) * k.transpose();
        if (a.causal && k0 + cols > q0 + 1) {
            for (std::int64_t r = 0; r < rows; ++r)
                for (std::int64_t c = std::max<std::int64_t>(0, q0 + r + 1 - k0); c < cols; ++c)
                    s(r, c) = -std::numeric_limits<float>::infinity();
        }
        const RowVector block_max = s.rowwise().maxCoeff().array();
        const RowVector new_max = running_max.max(block_max);
        // Rows whose keys are all masked so far keep max -inf; exp(-inf - -inf) would be NaN.
        const RowVector safe_max = (new_max == -std::numeric_limits<float>::infinity()).select(0.0f, new_max);
        const RowVector correction = (running_max - safe_max).exp();
        s.array().colwise() -= safe_max;
        s.array() = s.array().exp();
        denominator = denominator * correction + s.rowwise().sum().array();
        acc.array().colwise() *= correction;
        acc.noalias() += s * v;
        running_max = new_max;
    }
    Tokens out(a.out + b * a.out_batch_stride + q0 * a.out_stride + h * d, rows, d, Stride(a.out_stride));
    out = (acc.array().colwise() / denominator).matrix();
}
}  // namespace

void CpuBackend::attention(const Context& ctx, const AttentionArgs& a) {
    if (a.head_dim <= 0 || a.heads <= 0)
        throw Error(Status::invalid_argument, "attention: head_dim " + std::to_string(a.head_dim) + " and heads " +
                                                  std::to_string(a.heads) + " must be positive");
    if (a.kv_len <= 0) throw Error(Status::invalid_argument, "attention: no keys");
    const float scale = a.scale != 0.0f ? a.scale : 1.0f / std::sqrt(static_cast<float>(a.head_dim));
    const std::int64_t q_blocks = (a.q_len + kQueryBlock - 1) / kQueryBlock;
    const std::int64_t tasks = a.batch * a.heads * q_blocks;
    ctx.parallel_for(tasks, 1, [&](std::int64_t t0, std::int64_t t1) {
        Tiles tiles;
        for (std::int64_t t = t0; t < t1; ++t) {
            const std::int64_t block = t % q_blocks, bh = t / q_blocks;
            const std::int64_t q0 = block * kQueryBlock;
            attend_block(a, scale, bh / a.heads, static_cast<int>(bh % a.heads), q0,
                         std::min(a.q_len, q0 + kQueryBlock), tiles);
        }
    });
}

}  // namespace unclip
