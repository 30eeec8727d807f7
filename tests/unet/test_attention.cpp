#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "test_support.hpp"
#include "unclip/backend/cpu.hpp"
#include "unclip/nn/attention.hpp"

using namespace unclip;

namespace {
// Tolerance against the naive formula in double: the tiled softmax only reorders fp32 sums.
constexpr double kTiledVsNaive = 2e-6;
// Logits of magnitude ~300 carry fp32 rounding of ~3e-5 into every exponent, whichever order.
constexpr double kLargeLogits = 1e-5;

std::vector<float> randoms(std::size_t n, unsigned seed, float scale) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// softmax(scale q k^T) v for one (batch, head) in double, materialising the scores.
Tensor naive_attention(const CpuBackend::AttentionArgs& a) {
    Tensor out = Tensor::empty(DType::f32, {a.batch, a.q_len, static_cast<std::int64_t>(a.heads) * a.head_dim});
    float* o = out.data<float>();
    const double scale = 1.0 / std::sqrt(static_cast<double>(a.head_dim));
    std::vector<double> scores(static_cast<std::size_t>(a.kv_len));
    for (std::int64_t b = 0; b < a.batch; ++b)
        for (int h = 0; h < a.heads; ++h)
            for (std::int64_t i = 0; i < a.q_len; ++i) {
                const float* q = a.q + b * a.q_batch_stride + i * a.q_stride + h * a.head_dim;
                double top = -INFINITY;
                for (std::int64_t j = 0; j < a.kv_len; ++j) {
                    const float* k = a.k + b * a.k_batch_stride + j * a.k_stride + h * a.head_dim;
                    double s = 0;
                    for (int d = 0; d < a.head_dim; ++d) s += static_cast<double>(q[d]) * k[d];
                    scores[static_cast<std::size_t>(j)] = (a.causal && j > i) ? -INFINITY : s * scale;
                    top = std::max(top, scores[static_cast<std::size_t>(j)]);
                }
                double sum = 0;
                for (auto& s : scores) sum += (s = std::exp(s - top));
                for (int d = 0; d < a.head_dim; ++d) {
                    double acc = 0;
                    for (std::int64_t j = 0; j < a.kv_len; ++j)
                        acc += scores[static_cast<std::size_t>(j)] * a.v[b * a.v_batch_stride + j * a.v_stride + h * a.head_dim + d];
                    o[(b * a.q_len + i) * a.heads * a.head_dim + h * a.head_dim + d] = static_cast<float>(acc / sum);
                }
            }
    return out;
}

Tensor run_tiled(CpuBackend::AttentionArgs a, int threads, bool bf16 = false) {
    Tensor out = Tensor::empty(DType::f32, {a.batch, a.q_len, static_cast<std::int64_t>(a.heads) * a.head_dim});
    std::fill(out.data<float>(), out.data<float>() + out.numel(), NAN);
    a.out = out.data<float>();
    a.out_stride = static_cast<std::int64_t>(a.heads) * a.head_dim;
    a.out_batch_stride = a.q_len * a.out_stride;
    CpuBackend::Context ctx(threads);
    ctx.set_bf16_gemm(bf16);
    CpuBackend::attention(ctx, a);
    return out;
}

// bf16 operands (8-bit mantissas) for QK^T and PV with fp32 sums and softmax: about 3e-3 measured.
constexpr double kBf16VsNaive = 1e-2;
}  // namespace

TEST_SUITE("unet") {

TEST_CASE("tiled attention equals the naive formula for self, cross and causal attention across tile edges") {
    struct Case {
        std::int64_t batch, q_len, kv_len;
        int heads, head_dim;
        bool causal;
    };
    for (const Case& c : {Case{2, 300, 300, 3, 64, false}, Case{1, 129, 77, 2, 64, false}, Case{2, 77, 77, 4, 16, true},
                          Case{1, 260, 260, 1, 32, true}, Case{1, 5, 513, 2, 8, false}, Case{1, 64, 64, 1, 512, false},
                          Case{1, 257, 257, 2, 80, false}, Case{1, 130, 1, 1, 16, false}}) {
        INFO("batch " << c.batch << " q " << c.q_len << " kv " << c.kv_len << " heads " << c.heads << " d "
                      << c.head_dim << " causal " << c.causal);
        const std::int64_t width = static_cast<std::int64_t>(c.heads) * c.head_dim;
        // q, k and v as column ranges of one fused [B, L, 3*width] buffer, as CLIP's in_proj produces.
        const std::int64_t len = std::max(c.q_len, c.kv_len);
        const auto fused = randoms(static_cast<std::size_t>(c.batch * len * 3 * width), 11, 1.0f);
        CpuBackend::AttentionArgs a;
        a.q = fused.data();
        a.k = fused.data() + width;
        a.v = fused.data() + 2 * width;
        a.batch = c.batch;
        a.q_len = c.q_len;
        a.kv_len = c.kv_len;
        a.heads = c.heads;
        a.head_dim = c.head_dim;
        a.q_stride = a.k_stride = a.v_stride = 3 * width;
        a.q_batch_stride = a.k_batch_stride = a.v_batch_stride = len * 3 * width;
        a.causal = c.causal;
        CHECK_CLOSE(run_tiled(a, 2), naive_attention(a), kTiledVsNaive);
    }
}

TEST_CASE("tiled attention stays finite for large logits and is identical for one and two threads") {
    const int heads = 2, d = 64;
    const std::int64_t n = 400, width = heads * d;
    const auto q = randoms(static_cast<std::size_t>(n * width), 3, 6.0f);  // logits in the hundreds
    const auto k = randoms(static_cast<std::size_t>(n * width), 4, 6.0f);
    const auto v = randoms(static_cast<std::size_t>(n * width), 5, 1.0f);
    CpuBackend::AttentionArgs a;
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.batch = 1;
    a.q_len = a.kv_len = n;
    a.heads = heads;
    a.head_dim = d;
    a.q_stride = a.k_stride = a.v_stride = width;
    a.q_batch_stride = a.k_batch_stride = a.v_batch_stride = n * width;
    const Tensor one = run_tiled(a, 1), two = run_tiled(a, 2);
    CHECK_CLOSE(two, naive_attention(a), kLargeLogits);
    CHECK(std::memcmp(one.raw_data(), two.raw_data(), one.nbytes()) == 0);
}

TEST_CASE("with bf16 GEMMs, attention takes bf16 dot products where the CPU has them and stays close to the formula") {
    if (!CpuBackend::has_bf16_gemm()) MESSAGE("no AVX-512 BF16 on this CPU: the bf16 setting runs the fp32 attention");
    struct Case {
        std::int64_t batch, q_len, kv_len;
        int heads, head_dim;
        bool causal;
    };
    // head_dim 64 (UNet, text), 80 (ViT-H), 512 (VAE), odd and short key counts, causal, and a
    // head_dim the bf16 path does not take (24).
    for (const Case& c : {Case{2, 300, 300, 3, 64, false}, Case{1, 129, 77, 2, 64, false}, Case{2, 77, 77, 4, 64, true},
                          Case{1, 257, 257, 2, 80, false}, Case{1, 126, 130, 1, 80, false}, Case{1, 70, 131, 1, 512, false},
                          Case{1, 130, 1, 1, 16, false},
                          Case{1, 40, 40, 2, 24, true}}) {
        INFO("batch " << c.batch << " q " << c.q_len << " kv " << c.kv_len << " heads " << c.heads << " d "
                      << c.head_dim << " causal " << c.causal);
        const std::int64_t width = static_cast<std::int64_t>(c.heads) * c.head_dim;
        const auto q = randoms(static_cast<std::size_t>(c.batch * c.q_len * width), 21, 1.0f);
        const auto k = randoms(static_cast<std::size_t>(c.batch * c.kv_len * width), 22, 1.0f);
        const auto v = randoms(static_cast<std::size_t>(c.batch * c.kv_len * width), 23, 1.0f);
        CpuBackend::AttentionArgs a;
        a.q = q.data();
        a.k = k.data();
        a.v = v.data();
        a.batch = c.batch;
        a.q_len = c.q_len;
        a.kv_len = c.kv_len;
        a.heads = c.heads;
        a.head_dim = c.head_dim;
        a.q_stride = a.k_stride = a.v_stride = width;
        a.q_batch_stride = c.q_len * width;
        a.k_batch_stride = a.v_batch_stride = c.kv_len * width;
        a.causal = c.causal;
        const Tensor expected = naive_attention(a);
        const Tensor one = run_tiled(a, 1, true), two = run_tiled(a, 2, true);
        CHECK_CLOSE(two, expected, kBf16VsNaive);
        CHECK(std::memcmp(one.raw_data(), two.raw_data(), one.nbytes()) == 0);
    }
}

TEST_CASE("attention refuses zero heads, zero head size and an empty key set") {
    CpuBackend::AttentionArgs a;
    a.batch = 1;
    a.q_len = a.kv_len = 4;
    CHECK_THROWS_STATUS(CpuBackend::attention(CpuBackend::Context(1), a), Status::invalid_argument, "head_dim 0");
    a.heads = 1;
    a.head_dim = 4;
    a.kv_len = 0;
    CHECK_THROWS_STATUS(CpuBackend::attention(CpuBackend::Context(1), a), Status::invalid_argument, "no keys");
}

TEST_CASE("self-attention with adjacent q, k and v weights projects once and gives the three projections' bits") {
    const std::int64_t d = 48, batch = 2, tokens = 37;
    for (const bool bias : {false, true}) {
        INFO("bias " << bias);
        const nn::AttentionConfig cfg{d, 0, 3, bias, false};
        // One [3d, d] matrix (and [3d] bias) whose row ranges are q, k and v, and separate copies.
        const std::vector<float> w = randoms(static_cast<std::size_t>(3 * d * d), 7, 0.2f);
        const std::vector<float> b = randoms(static_cast<std::size_t>(3 * d), 8, 0.1f);
        const std::vector<float> wo = randoms(static_cast<std::size_t>(d * d), 9, 0.2f), bo = randoms(static_cast<std::size_t>(d), 10, 0.1f);
        std::vector<std::vector<float>> apart;
        for (int i = 0; i < 3; ++i) apart.emplace_back(w.begin() + i * d * d, w.begin() + (i + 1) * d * d);
        auto weights = [&](const float* q, const float* k, const float* v) {
            nn::AttentionWeights<float> aw;
            aw.q.weight = nn::MatrixView{q, DType::f32, {d, d}};
            aw.k.weight = nn::MatrixView{k, DType::f32, {d, d}};
            aw.v.weight = nn::MatrixView{v, DType::f32, {d, d}};
            if (bias) {
                aw.q.bias = CView<float>{b.data(), {d}};
                aw.k.bias = CView<float>{b.data() + d, {d}};
                aw.v.bias = CView<float>{b.data() + 2 * d, {d}};
            }
            aw.out.weight = nn::MatrixView{wo.data(), DType::f32, {d, d}};
            aw.out.bias = CView<float>{bo.data(), {d}};
            return aw;
        };
        const nn::MultiHeadAttention<CpuBackend, float> adjacent(cfg, weights(w.data(), w.data() + d * d, w.data() + 2 * d * d));
        const nn::MultiHeadAttention<CpuBackend, float> separate(cfg, weights(apart[0].data(), apart[1].data(), apart[2].data()));
        CHECK(adjacent.fused_projection());
        CHECK_FALSE(separate.fused_projection());
        // Swapped k and v are adjacent too, but not in q, k, v order: no fusion.
        CHECK_FALSE(nn::MultiHeadAttention<CpuBackend, float>(cfg, weights(w.data(), w.data() + 2 * d * d, w.data() + d * d))
                        .fused_projection());

        const std::vector<float> x = randoms(static_cast<std::size_t>(batch * tokens * d), 11, 1.0f);
        const CView<float> xv{x.data(), {batch, tokens, d}};
        const CpuBackend::Context ctx(2);
        Scratch scratch(adjacent.scratch_bytes(batch, tokens, tokens));
        std::vector<float> y1(x.size(), NAN), y2(x.size(), NAN);
        adjacent.forward(ctx, xv, nullptr, View<float>{y1.data(), {batch, tokens, d}}, scratch);
        separate.forward(ctx, xv, nullptr, View<float>{y2.data(), {batch, tokens, d}}, scratch);
        CHECK(std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)) == 0);
    }
}

}  // TEST_SUITE
