#pragma once
// The pre-LN residual attention block of both CLIP towers (OpenCLIP ResidualAttentionBlock,
// HF CLIPEncoderLayer):  x += attn(ln_1(x));  x += mlp(ln_2(x)).
#include <algorithm>
#include <string>

#include "unclip/nn/attention.hpp"
#include "unclip/nn/layer_norm.hpp"
#include "unclip/nn/mlp.hpp"

namespace unclip::nn {

struct ResidualAttentionBlockConfig {
    std::int64_t dim = 0, mlp_hidden = 0;
    int heads = 0;
    Activation activation = Activation::gelu;
    bool causal = false;  // the text tower's mask
    float eps = 1e-5f;
};

template <class T>
struct ResidualAttentionBlockWeights {
    LayerNormWeights<T> ln_1;
    AttentionWeights<T> attn;  // attn.in_proj_weight/in_proj_bias, attn.out_proj
    LayerNormWeights<T> ln_2;
    MlpWeights<T> mlp;
};

namespace detail {
inline AttentionConfig block_attention(const ResidualAttentionBlockConfig& c) {
    return {c.dim, 0, c.heads, true, c.causal};
}
inline MlpConfig block_mlp(const ResidualAttentionBlockConfig& c) { return {c.dim, c.mlp_hidden, c.activation}; }
}  // namespace detail

// Keys under `prefix` (e.g. "transformer.resblocks.3."): ln_1, attn, ln_2, mlp (OpenCLIP / LDM names).
template <class T>
ResidualAttentionBlockWeights<T> load_residual_attention_block(const WeightMap& map, const std::string& prefix,
                                                               const ResidualAttentionBlockConfig& cfg) {
    ResidualAttentionBlockWeights<T> w;
    w.ln_1 = load_layer_norm<T>(map, prefix + "ln_1.", {cfg.dim, cfg.eps});
    w.attn = load_attention_fused<T>(map, prefix + "attn.", detail::block_attention(cfg));
    w.ln_2 = load_layer_norm<T>(map, prefix + "ln_2.", {cfg.dim, cfg.eps});
    w.mlp = load_mlp<T>(map, prefix + "mlp.", detail::block_mlp(cfg));
    return w;
}

template <class Backend, class T>
class ResidualAttentionBlock {
public:
    // Throws Error(Status::bad_model) naming the weight whose shape disagrees with cfg.
    ResidualAttentionBlock(const ResidualAttentionBlockConfig& cfg, const ResidualAttentionBlockWeights<T>& w)
        : cfg_(cfg),
          ln_1_({cfg.dim, cfg.eps}, w.ln_1),
          attn_(detail::block_attention(cfg), w.attn),
          ln_2_({cfg.dim, cfg.eps}, w.ln_2),
          mlp_(detail::block_mlp(cfg), w.mlp) {}
    const ResidualAttentionBlockConfig& config() const noexcept { return cfg_; }

    std::size_t scratch_bytes(std::int64_t batch, std::int64_t tokens) const {
        return Scratch::bytes_for<T>(static_cast<std::size_t>(batch * tokens * cfg_.dim)) +
               std::max(attn_.scratch_bytes(batch, tokens, tokens), mlp_.scratch_bytes(batch * tokens));
    }

    // x: [B, L, dim], updated in place (the residual stream).
    void forward(const typename Backend::Context& ctx, View<T> x, Scratch& scratch) const {
        if (x.shape.rank() != 3 || x.shape[2] != cfg_.dim)
            throw Error(Status::invalid_argument, "ResidualAttentionBlock: input " + x.shape.str() + " is not [B, L, " +
                                                      std::to_string(cfg_.dim) + "]");
        const std::int64_t rows = x.shape[0] * x.shape[1];
        Scratch::Frame frame(scratch);
        const View<T> normed{scratch.take<T>(static_cast<std::size_t>(rows * cfg_.dim)), x.shape};
        ln_1_.forward(ctx, x.data, normed.data, rows);
        attn_.forward(ctx, normed, nullptr, x, scratch, /*accumulate=*/true);
        ln_2_.forward(ctx, x.data, normed.data, rows);
        mlp_.forward(ctx, normed.data, rows, x.data, scratch, /*accumulate=*/true);
    }

private:
    ResidualAttentionBlockConfig cfg_;
    LayerNorm<Backend, T> ln_1_;
    MultiHeadAttention<Backend, T> attn_;
    LayerNorm<Backend, T> ln_2_;
    Mlp<Backend, T> mlp_;
};

}  // namespace unclip::nn
