#pragma once
// The UNet's SpatialTransformer with linear projections (SD 2.x, use_linear_in_transformer):
//   t = proj_in(tokens(GN_1e-6(x)));  per block: t += attn1(LN1 t); t += attn2(LN2 t, context);
//   t += W2 GEGLU(W1 LN3 t);  y = x + channels(proj_out(t))
#include <algorithm>
#include <string>
#include <vector>

#include "unclip/nn/attention.hpp"
#include "unclip/nn/group_norm.hpp"
#include "unclip/nn/layer_norm.hpp"
#include "unclip/nn/linear.hpp"

namespace unclip::nn {

struct SpatialTransformerConfig {
    std::int64_t channels = 0;
    int heads = 0;                   // channels / head size (64 in SD 2.x)
    std::int64_t context_dim = 1024;
    int depth = 1;
    int groups = 32;
};

template <class T>
struct TransformerBlockWeights {
    LayerNormWeights<T> norm1, norm2, norm3;
    AttentionWeights<T> attn1, attn2;
    LinearWeights<T> ff_in;   // ff.net.0.proj: [8c, c] (GEGLU: value and gate halves)
    LinearWeights<T> ff_out;  // ff.net.2: [c, 4c]
};

template <class T>
struct SpatialTransformerWeights {
    GroupNormWeights<T> norm;
    LinearWeights<T> proj_in, proj_out;
    std::vector<TransformerBlockWeights<T>> blocks;  // transformer_blocks.N
};

namespace detail {
inline AttentionConfig self_attention(const SpatialTransformerConfig& c) { return {c.channels, 0, c.heads, false, false}; }
inline AttentionConfig cross_attention(const SpatialTransformerConfig& c) {
    return {c.channels, c.context_dim, c.heads, false, false};
}
}  // namespace detail

template <class T>
SpatialTransformerWeights<T> load_spatial_transformer(const WeightMap& map, const std::string& prefix,
                                                      const SpatialTransformerConfig& cfg) {
    const std::int64_t c = cfg.channels;
    SpatialTransformerWeights<T> w;
    w.norm = load_group_norm<T>(map, prefix + "norm.", {c, cfg.groups, 1e-6f});
    w.proj_in = load_linear<T>(map, prefix + "proj_in.", {c, c, true});
    w.proj_out = load_linear<T>(map, prefix + "proj_out.", {c, c, true});
    for (int i = 0; i < cfg.depth; ++i) {
        const std::string p = prefix + "transformer_blocks." + std::to_string(i) + ".";
        TransformerBlockWeights<T> b;
        b.norm1 = load_layer_norm<T>(map, p + "norm1.", {c});
        b.norm2 = load_layer_norm<T>(map, p + "norm2.", {c});
        b.norm3 = load_layer_norm<T>(map, p + "norm3.", {c});
        b.attn1 = load_attention_split<T>(map, p + "attn1.", detail::self_attention(cfg));
        b.attn2 = load_attention_split<T>(map, p + "attn2.", detail::cross_attention(cfg));
        b.ff_in = load_linear<T>(map, p + "ff.net.0.proj.", {c, 8 * c, true});
        b.ff_out = load_linear<T>(map, p + "ff.net.2.", {4 * c, c, true});
        w.blocks.push_back(b);
    }
    return w;
}

template <class Backend, class T>
class SpatialTransformer {
public:
    // The feed-forward runs over row chunks so that its [rows, 8c] hidden state stays small on a
    // CPU (189 MB for the whole 96x96 batch-2 level at once); a GPU takes it whole, in one GEMM.
    static constexpr std::int64_t kFeedForwardRows = Backend::kFeedForwardRows;

    SpatialTransformer(const SpatialTransformerConfig& cfg, const SpatialTransformerWeights<T>& w)
        : cfg_(cfg), norm_({cfg.channels, cfg.groups, 1e-6f}, w.norm), proj_in_({cfg.channels, cfg.channels, true}, w.proj_in),
          proj_out_({cfg.channels, cfg.channels, true}, w.proj_out) {
        if (static_cast<int>(w.blocks.size()) != cfg.depth)
            throw Error(Status::bad_model, "SpatialTransformer: " + std::to_string(w.blocks.size()) +
                                               " transformer blocks, config says " + std::to_string(cfg.depth));
        const std::int64_t c = cfg.channels;
        for (const auto& b : w.blocks)
            blocks_.push_back(Block{LayerNorm<Backend, T>({c}, b.norm1), LayerNorm<Backend, T>({c}, b.norm2),
                                    LayerNorm<Backend, T>({c}, b.norm3),
                                    MultiHeadAttention<Backend, T>(detail::self_attention(cfg), b.attn1),
                                    MultiHeadAttention<Backend, T>(detail::cross_attention(cfg), b.attn2),
                                    Linear<Backend, T>({c, 8 * c, true}, b.ff_in), Linear<Backend, T>({4 * c, c, true}, b.ff_out)});
        if constexpr (Backend::kRoundedLinearInputs) rounded_ = common_rounded_dtype();
    }
    const SpatialTransformerConfig& config() const noexcept { return cfg_; }

    std::size_t scratch_bytes(const Shape& x, std::int64_t context_len) const {
        const std::int64_t batch = x[0], tokens = x[2] * x[3], c = cfg_.channels;
        const auto n = static_cast<std::size_t>(batch * tokens * c);
        const std::int64_t ff_rows = std::min(kFeedForwardRows, batch * tokens);
        const std::size_t ff = Scratch::bytes_for<T>(static_cast<std::size_t>(ff_rows * 8 * c)) +
                               Scratch::bytes_for<T>(static_cast<std::size_t>(ff_rows * 4 * c));
        std::size_t inner = ff;
        for (const auto& b : blocks_)
            inner = std::max({inner, b.attn1.scratch_bytes(batch, tokens, tokens),
                              b.attn2.scratch_bytes(batch, tokens, context_len)});
        // The residual stream, the linear inputs, and the normalised input or the GroupNorm's map.
        return 2 * Scratch::bytes_for<T>(n) +
               std::max(Scratch::bytes_for<T>(n), 2 * Scratch::bytes_for<T>(static_cast<std::size_t>(batch * c))) + inner;
    }

    // Every block's cross-attention keys and values for context [B, L, context_dim], in turn
    // (MultiHeadAttention::project_context), so that forward() need not project them again.
    std::int64_t context_kv_floats(std::int64_t batch, std::int64_t context_len) const {
        std::int64_t total = 0;
        for (const auto& b : blocks_) total += b.attn2.context_kv_floats(batch, context_len);
        return total;
    }
    void project_context(const typename Backend::Context& ctx, CView<T> context, T* kv) const {
        for (const auto& b : blocks_) {
            b.attn2.project_context(ctx, context, kv);
            kv += b.attn2.context_kv_floats(context.shape[0], context.shape[1]);
        }
    }

    // x: [B, C, h, w]; context: [B, L, context_dim]; y: [B, C, h, w], may be x itself.
    // context_kv: project_context's output for kv_batch >= B context rows (the first B serve), or null.
    void forward(const typename Backend::Context& ctx, CView<T> x, CView<T> context, View<T> y, Scratch& scratch,
                 const T* context_kv = nullptr, std::int64_t kv_batch = 0) const {
        const std::int64_t c = cfg_.channels;
        if (x.shape.rank() != 4 || x.shape[1] != c)
            throw Error(Status::invalid_argument, "SpatialTransformer: input " + x.shape.str() + " is not [B, " +
                                                      std::to_string(c) + ", h, w]");
        detail::check_argument_shape("SpatialTransformer", "output", y.shape, x.shape);
        const std::int64_t batch = x.shape[0], tokens = x.shape[2] * x.shape[3], rows = batch * tokens;
        const auto n = static_cast<std::size_t>(rows * c);

        Scratch::Frame frame(scratch);
        T* t = scratch.take<T>(n);       // the residual stream, [B, tokens, C]
        T* work = scratch.take<T>(n);
        // With rounded inputs (see common_rounded_dtype) the LayerNorms and the GEGLU write their
        // outputs in the weights' half type straight into `work` and `gated` (halves in the fp32
        // buffers), and the linear layers read them as such; normed_tokens then only gives a shape.
        // So does the GroupNorm, whose map the transpose to tokens applies: no normalised copy.
        const DType rounded = rounded_inputs_on(ctx) ? rounded_ : DType::f32;
        const bool half = rounded != DType::f32;
        if (half) {
            T* scale = scratch.take<T>(static_cast<std::size_t>(batch * c));
            T* shift = scratch.take<T>(static_cast<std::size_t>(batch * c));
            norm_.affine(ctx, x.data, batch, tokens, scale, shift);
            channels_to_tokens_rounded(ctx, x.data, scale, shift, work, rounded, batch, c, tokens);
            proj_in_.forward_rounded(ctx, work, rounded, rows, t);
        } else {
            T* normed = scratch.take<T>(n);
            norm_.forward(ctx, x.data, normed, batch, tokens, false);
            Backend::channels_to_tokens(ctx, normed, work, batch, c, tokens);
            proj_in_.forward(ctx, work, rows, t);
        }

        const View<T> stream{t, {batch, tokens, c}};
        const View<T> normed_tokens{work, {batch, tokens, c}};
        const void* work_rounded = half ? work : nullptr;
        auto normalize = [&](const LayerNorm<Backend, T>& norm) {
            if (half) norm.forward_rounded(ctx, t, work, rounded, rows);
            else norm.forward(ctx, t, work, rows);
        };
        for (const auto& b : blocks_) {
            normalize(b.norm1);
            b.attn1.forward(ctx, normed_tokens, nullptr, stream, scratch, true, work_rounded);
            normalize(b.norm2);
            b.attn2.forward(ctx, normed_tokens, &context, stream, scratch, true, work_rounded, context_kv, kv_batch);
            if (context_kv) context_kv += b.attn2.context_kv_floats(kv_batch, context.shape[1]);
            normalize(b.norm3);
            Scratch::Frame ff_frame(scratch);
            const std::int64_t ff_rows = std::min(kFeedForwardRows, rows);
            T* hidden = scratch.take<T>(static_cast<std::size_t>(ff_rows * 8 * c));
            T* gated = scratch.take<T>(static_cast<std::size_t>(ff_rows * 4 * c));
            for (std::int64_t r0 = 0; r0 < rows; r0 += ff_rows) {
                const std::int64_t r = std::min(ff_rows, rows - r0);
                if (half) {
                    const auto* normed_rows = reinterpret_cast<const unsigned char*>(work) + r0 * c * dtype_size(rounded);
                    b.ff_in.forward_rounded(ctx, normed_rows, rounded, r, hidden);
                    geglu_rounded(ctx, hidden, gated, rounded, r, 4 * c);
                    b.ff_out.forward_rounded(ctx, gated, rounded, r, t + r0 * c, true);
                } else {
                    b.ff_in.forward(ctx, work + r0 * c, r, hidden);
                    Backend::geglu(ctx, hidden, gated, r, 4 * c);
                    b.ff_out.forward(ctx, gated, r, t + r0 * c, true);
                }
            }
        }
        proj_out_.forward(ctx, t, rows, work);
        if (y.data != x.data) Backend::copy(ctx, x.data, y.data, static_cast<std::int64_t>(n));
        Backend::tokens_to_channels(ctx, work, y.data, batch, c, tokens, true);
    }

private:
    struct Block {
        LayerNorm<Backend, T> norm1, norm2, norm3;
        MultiHeadAttention<Backend, T> attn1, attn2;
        Linear<Backend, T> ff_in, ff_out;
    };

    // The half type every linear fed by a norm or the GEGLU has (f16 or bf16), or f32 when they
    // differ or are fp32: then the blocks run on fp32 inputs.
    DType common_rounded_dtype() const {
        if (blocks_.empty()) return DType::f32;
        const DType d = blocks_.front().ff_in.weight_dtype();
        if ((d != DType::f16 && d != DType::bf16) || proj_in_.weight_dtype() != d) return DType::f32;
        for (const auto& b : blocks_)
            if (b.attn1.rounded_input_dtype() != d || b.attn2.rounded_input_dtype() != d || b.ff_in.weight_dtype() != d ||
                b.ff_out.weight_dtype() != d)
                return DType::f32;
        return d;
    }

    static bool rounded_inputs_on(const typename Backend::Context& ctx) {
        if constexpr (Backend::kRoundedLinearInputs) return ctx.rounded_linear_inputs();
        (void)ctx;
        return false;
    }

    static void channels_to_tokens_rounded(const typename Backend::Context& ctx, const T* x, const T* scale,
                                           const T* shift, T* y, DType rounded, std::int64_t batch, std::int64_t channels,
                                           std::int64_t spatial) {
        if constexpr (Backend::kRoundedLinearInputs) {
            Backend::channels_to_tokens_rounded(ctx, x, scale, shift, y, rounded, batch, channels, spatial);
        } else {
            (void)ctx, (void)x, (void)scale, (void)shift, (void)y, (void)rounded, (void)batch, (void)channels, (void)spatial;
            throw Error(Status::internal, "SpatialTransformer: this backend has no rounded linear inputs");
        }
    }

    static void geglu_rounded(const typename Backend::Context& ctx, const T* hidden, T* gated, DType rounded,
                              std::int64_t rows, std::int64_t inner) {
        if constexpr (Backend::kRoundedLinearInputs) {
            Backend::geglu_rounded(ctx, hidden, gated, rounded, rows, inner);
        } else {
            (void)ctx, (void)hidden, (void)gated, (void)rounded, (void)rows, (void)inner;
            throw Error(Status::internal, "SpatialTransformer: this backend has no rounded linear inputs");
        }
    }

    SpatialTransformerConfig cfg_;
    GroupNorm<Backend, T> norm_;
    Linear<Backend, T> proj_in_, proj_out_;
    std::vector<Block> blocks_;
    DType rounded_ = DType::f32;
};

}  // namespace unclip::nn
