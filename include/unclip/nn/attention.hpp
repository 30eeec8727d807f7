#pragma once
// Multi-head attention shared by the CLIP towers (fused in_proj with biases, optional causal mask)
// and the UNet's transformer blocks (separate to_q/to_k/to_v without bias, cross-attention over the
// text context). The score matrix is never materialised: Backend::attention is tiled.
#include <optional>
#include <string>

#include "unclip/backend/cpu.hpp"
#include "unclip/nn/linear.hpp"
#include "unclip/nn/weights.hpp"

namespace unclip::nn {

struct AttentionConfig {
    std::int64_t dim = 0;          // query/output width = heads * head_dim
    std::int64_t context_dim = 0;  // key/value input width; 0 = self-attention (dim)
    int heads = 0;
    bool qkv_bias = false;
    bool causal = false;           // query i attends to keys j <= i (CLIP text)
    std::int64_t kv_dim() const noexcept { return context_dim > 0 ? context_dim : dim; }
};

template <class T>
struct AttentionWeights {
    LinearWeights<T> q, k, v;  // [dim, dim], [dim, kv_dim], [dim, kv_dim]
    LinearWeights<T> out;      // [dim, dim] + bias
};

// OpenCLIP / LDM names: attn.in_proj_weight [3*dim, dim] (+ in_proj_bias), attn.out_proj.{weight,bias}.
// q, k and v are zero-copy row ranges of the fused tensor (self-attention only).
template <class T>
AttentionWeights<T> load_attention_fused(const WeightMap& map, const std::string& prefix, const AttentionConfig& cfg) {
    if (cfg.context_dim != 0 && cfg.context_dim != cfg.dim)
        throw Error(Status::invalid_argument, "attention: fused in_proj needs self-attention");
    const std::int64_t d = cfg.dim;
    const MatrixView fused = map.require_matrix(prefix + "in_proj_weight", {3 * d, d});
    AttentionWeights<T> w;
    w.q.weight = fused.rows(0, {d, d});
    w.k.weight = fused.rows(d, {d, d});
    w.v.weight = fused.rows(2 * d, {d, d});
    if (cfg.qkv_bias) {
        const CView<T> bias = map.require<T>(prefix + "in_proj_bias", {3 * d});
        w.q.bias = CView<T>{bias.data, {d}};
        w.k.bias = CView<T>{bias.data + d, {d}};
        w.v.bias = CView<T>{bias.data + 2 * d, {d}};
    }
    w.out = load_linear<T>(map, prefix + "out_proj.", {d, d, true});
    return w;
}

// LDM UNet names: to_q / to_k / to_v (bias iff qkv_bias), to_out.0 (with bias).
template <class T>
AttentionWeights<T> load_attention_split(const WeightMap& map, const std::string& prefix, const AttentionConfig& cfg) {
    AttentionWeights<T> w;
    w.q = load_linear<T>(map, prefix + "to_q.", {cfg.dim, cfg.dim, cfg.qkv_bias});
    w.k = load_linear<T>(map, prefix + "to_k.", {cfg.kv_dim(), cfg.dim, cfg.qkv_bias});
    w.v = load_linear<T>(map, prefix + "to_v.", {cfg.kv_dim(), cfg.dim, cfg.qkv_bias});
    w.out = load_linear<T>(map, prefix + "to_out.0.", {cfg.dim, cfg.dim, true});
    return w;
}

template <class Backend, class T>
class MultiHeadAttention {
public:
    MultiHeadAttention(const AttentionConfig& cfg, const AttentionWeights<T>& w)
        : cfg_(cfg),
          q_({cfg.dim, cfg.dim, cfg.qkv_bias}, w.q),
          k_({cfg.kv_dim(), cfg.dim, cfg.qkv_bias}, w.k),
          v_({cfg.kv_dim(), cfg.dim, cfg.qkv_bias}, w.v),
          out_({cfg.dim, cfg.dim, true}, w.out) {
        if (auto fused = adjacent_qkv(cfg, w)) qkv_.emplace(LinearConfig{cfg.dim, 3 * cfg.dim, cfg.qkv_bias}, *fused);
        detail::check_positive("Attention", "heads", cfg.heads);
        if (cfg.dim % cfg.heads != 0)
            throw Error(Status::invalid_argument, "Attention: width " + std::to_string(cfg.dim) +
                                                      " does not split into " + std::to_string(cfg.heads) + " heads");
        if (cfg.causal && cfg.context_dim != 0)
            throw Error(Status::invalid_argument, "Attention: a causal mask needs self-attention");
    }
    const AttentionConfig& config() const noexcept { return cfg_; }

    std::size_t scratch_bytes(std::int64_t batch, std::int64_t q_len, std::int64_t kv_len) const {
        return 2 * Scratch::bytes_for<T>(static_cast<std::size_t>(batch * q_len * cfg_.dim)) +
               2 * Scratch::bytes_for<T>(static_cast<std::size_t>(batch * kv_len * cfg_.dim));
    }

    // The type the query projection (and, in self-attention, the key and value projections)
    // could read x rounded to: their common weight type when it is f16 or bf16, else f32.
    DType rounded_input_dtype() const noexcept {
        const DType d = q_.weight_dtype();
        const bool half = d == DType::f16 || d == DType::bf16;
        const bool kv_same = cfg_.context_dim != 0 || (k_.weight_dtype() == d && v_.weight_dtype() == d);
        return half && kv_same ? d : DType::f32;
    }

    // Cross-attention's keys and values depend on the context alone, so a sampling loop can project
    // them once: kv [2, B, Lk, dim] (keys, then values) for context [B, Lk, kv_dim].
    std::int64_t context_kv_floats(std::int64_t batch, std::int64_t kv_len) const { return 2 * batch * kv_len * cfg_.dim; }
    void project_context(const typename Backend::Context& ctx, CView<T> context, T* kv) const {
        if (cfg_.context_dim == 0) throw Error(Status::internal, "Attention: project_context on self-attention");
        check_context(context, context.shape.rank() == 3 ? context.shape[0] : 0);
        const std::int64_t rows = context.shape[0] * context.shape[1];
        k_.forward(ctx, context.data, rows, kv);
        v_.forward(ctx, context.data, rows, kv + rows * cfg_.dim);
    }

    // x: [B, Lq, dim]; context: [B, Lk, kv_dim], or nullptr for self-attention; y: [B, Lq, dim].
    // accumulate: y += attention(x) (the residual connection), else y = attention(x). y must not alias x.
    // x_rounded (backends with Backend::kRoundedLinearInputs): x's values rounded to
    // rounded_input_dtype(), which the projections of x then read instead (x.data is not read).
    // context_kv: project_context's output for a context of kv_batch >= B rows, of which the first B
    // serve (context then only gives the shape; its data is not read).
    void forward(const typename Backend::Context& ctx, CView<T> x, const CView<T>* context, View<T> y, Scratch& scratch,
                 bool accumulate = false, const void* x_rounded = nullptr, const T* context_kv = nullptr,
                 std::int64_t kv_batch = 0) const {
        if (x.shape.rank() != 3 || x.shape[2] != cfg_.dim)
            throw Error(Status::invalid_argument, "Attention: input " + x.shape.str() + " is not [B, L, " +
                                                      std::to_string(cfg_.dim) + "]");
        const std::int64_t batch = x.shape[0], q_len = x.shape[1];
        const CView<T> kv = context ? *context : x;
        if (context) check_context(kv, batch);
        if (context_kv && (!context || kv_batch < batch))
            throw Error(Status::internal, "Attention: projected keys and values without a context of enough rows");
        detail::check_argument_shape("Attention", "output", y.shape, x.shape);
        const std::int64_t kv_len = kv.shape[1];

        Scratch::Frame frame(scratch);
        // q, k and v: three buffers, or in self-attention with adjacent weights the column ranges of
        // one [B, L, 3 dim] projection (the same room); projected keys and values need none.
        const bool fused = qkv_ && !context;
        const std::int64_t width = fused ? 3 * cfg_.dim : cfg_.dim;
        const auto kv_buffer = [&] {
            return context_kv ? nullptr : scratch.take<T>(static_cast<std::size_t>(batch * kv_len * cfg_.dim));
        };
        T* q = scratch.take<T>(static_cast<std::size_t>(batch * q_len * width));
        T* k = fused ? q + cfg_.dim : kv_buffer();
        T* v = fused ? q + 2 * cfg_.dim : kv_buffer();
        T* heads_out = scratch.take<T>(static_cast<std::size_t>(batch * q_len * cfg_.dim));
        const DType rounded = x_rounded ? rounded_input_dtype() : DType::f32;
        if (x_rounded && rounded == DType::f32)
            throw Error(Status::internal, "Attention: rounded input without half-precision projections");
        // A projection of x reads the rounded copy when there is one; of a context, the context.
        auto project = [&](const Linear<Backend, T>& linear, const T* input, bool of_x, std::int64_t rows, T* out) {
            if (of_x && x_rounded) linear.forward_rounded(ctx, x_rounded, rounded, rows, out);
            else linear.forward(ctx, input, rows, out);
        };
        const T* keys = k;
        const T* values = v;
        if (fused) {
            project(*qkv_, x.data, true, batch * q_len, q);
        } else if (context_kv) {
            project(q_, x.data, true, batch * q_len, q);
            keys = context_kv;
            values = context_kv + kv_batch * kv_len * cfg_.dim;
        } else {
            project(q_, x.data, true, batch * q_len, q);
            project(k_, kv.data, !context, batch * kv_len, k);
            project(v_, kv.data, !context, batch * kv_len, v);
        }

        typename Backend::AttentionArgs a;
        a.q = q;
        a.k = keys;
        a.v = values;
        a.out = heads_out;
        a.batch = batch;
        a.q_len = q_len;
        a.kv_len = kv_len;
        a.heads = cfg_.heads;
        a.head_dim = static_cast<int>(cfg_.dim / cfg_.heads);
        a.q_stride = a.k_stride = a.v_stride = width;
        a.out_stride = cfg_.dim;
        a.q_batch_stride = q_len * width;
        a.out_batch_stride = q_len * cfg_.dim;
        a.k_batch_stride = a.v_batch_stride = kv_len * width;
        a.causal = cfg_.causal;
        Backend::attention(ctx, a);
        out_.forward(ctx, heads_out, batch * q_len, y.data, accumulate);
    }

    // Whether self-attention runs its q, k and v projections as one GEMM (adjacent weights).
    bool fused_projection() const noexcept { return qkv_.has_value(); }

private:
    // In self-attention whose q, k and v weights (and biases) lie back to back in memory, as in
    // CLIP's in_proj and in a GPU copy of the UNet (upload_weights), the [3 dim, dim] matrix they form.
    static std::optional<LinearWeights<T>> adjacent_qkv(const AttentionConfig& cfg, const AttentionWeights<T>& w) {
        if (cfg.context_dim != 0) return std::nullopt;
        const std::int64_t d = cfg.dim;
        const MatrixView& q = w.q.weight;
        const auto bytes = d * d * static_cast<std::int64_t>(dtype_size(q.dtype));
        const auto* base = static_cast<const unsigned char*>(q.data);
        const bool matrices = w.k.weight.dtype == q.dtype && w.v.weight.dtype == q.dtype && w.k.weight.data == base + bytes &&
                              w.v.weight.data == base + 2 * bytes;
        const bool biases = !cfg.qkv_bias || (w.q.bias && w.k.bias && w.v.bias && w.k.bias->data == w.q.bias->data + d &&
                                              w.v.bias->data == w.q.bias->data + 2 * d);
        if (!matrices || !biases) return std::nullopt;
        LinearWeights<T> fused{MatrixView{q.data, q.dtype, {3 * d, d}}, std::nullopt};
        if (cfg.qkv_bias) fused.bias = CView<T>{w.q.bias->data, {3 * d}};
        return fused;
    }

    void check_context(const CView<T>& context, std::int64_t batch) const {
        if (context.shape.rank() != 3 || context.shape[0] != batch || batch < 1 || context.shape[2] != cfg_.kv_dim())
            throw Error(Status::invalid_argument, "Attention: context " + context.shape.str() + " is not [" +
                                                      std::to_string(batch) + ", L, " + std::to_string(cfg_.kv_dim()) + "]");
    }

    AttentionConfig cfg_;
    Linear<Backend, T> q_, k_, v_, out_;
    std::optional<Linear<Backend, T>> qkv_;
};

}  // namespace unclip::nn
