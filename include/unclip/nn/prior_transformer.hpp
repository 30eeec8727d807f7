#pragma once
// The unCLIP prior that turns a CLIP text encoding into a CLIP image embedding: diffusers
// PriorTransformer (models/transformers/prior_transformer.py) as Karlo (kakaobrain/karlo-v1-alpha)
// and Stable unCLIP-L use it. For one sequence with n text tokens (n <= num_embeddings):
//   tokens = [encoder_hidden_states_proj(text_hidden[0..n)),   // the text tokens
//             embedding_proj(norm?(text_embedding)),          // the projected text embedding
//             time_embedding(sinusoid(t)),                     // the timestep
//             proj_in(x_t),                                    // the noisy image embedding
//             prd_embedding]                                   // the readout token
//   tokens += positional_embedding (text tokens at 0..n, the four others at num_embeddings..+3)
//   tokens = norm_in?(tokens); blocks (pre-LN self-attention, causal; GELU feed-forward)
//   out = proj_to_clip_embeddings(norm_out(last token))
// diffusers masks padded text tokens with an additive -10000 on top of its causal -10000; every
// row keeps its start token, so the masked weights are exp(-10000 + s) = 0 exactly in float, and
// dropping the padded tokens instead gives the same numbers. This module therefore takes the
// number of valid text tokens per sequence (the tokenizer's attention mask, a prefix of ones)
// and runs each sequence unpadded.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "unclip/nn/layer_norm.hpp"
#include "unclip/nn/linear.hpp"
#include "unclip/nn/timestep_embedding.hpp"
#include "unclip/nn/transformer_block.hpp"

namespace unclip::nn {

struct PriorTransformerConfig {
    int heads = 32, head_dim = 64, layers = 20;
    std::int64_t embedding_dim = 768;  // image embedding and text hidden width (Karlo: CLIP ViT-L/14)
    std::int64_t num_embeddings = 77;  // text tokens
    std::int64_t time_embed_dim = 0;   // 0 = inner_dim()
    std::int64_t embedding_proj_dim = 0;  // width of the projected text embedding; 0 = embedding_dim
    bool norm_in = false;              // norm_in_type "layer"
    bool embedding_proj_norm = false;  // embedding_proj_norm_type "layer"
    float eps = 1e-5f;                 // every LayerNorm (PyTorch's default)

    std::int64_t inner_dim() const noexcept { return static_cast<std::int64_t>(heads) * head_dim; }
    std::int64_t time_dim() const noexcept { return time_embed_dim > 0 ? time_embed_dim : inner_dim(); }
    std::int64_t text_embed_dim() const noexcept { return embedding_proj_dim > 0 ? embedding_proj_dim : embedding_dim; }
    // Sequence length with every text token: text + text embedding, time, x_t, readout.
    std::int64_t max_tokens() const noexcept { return num_embeddings + 4; }
    ResidualAttentionBlockConfig block() const {
        return {inner_dim(), 4 * inner_dim(), heads, Activation::gelu, /*causal=*/true, eps};
    }
};

template <class T>
struct PriorTransformerWeights {
    LinearWeights<T> time_linear_1, time_linear_2;   // time_embedding.linear_1 / linear_2
    LinearWeights<T> proj_in;                        // [inner, embedding_dim]
    std::optional<LayerNormWeights<T>> embedding_proj_norm;
    LinearWeights<T> embedding_proj;                 // [inner, text_embed_dim]
    LinearWeights<T> encoder_hidden_states_proj;     // [inner, embedding_dim]
    CView<T> positional_embedding;                   // [1, num_embeddings + 4, inner]
    CView<T> prd_embedding;                          // [1, 1, inner]
    std::optional<LayerNormWeights<T>> norm_in;
    // transformer_blocks.{i}: norm1 -> ln_1, attn1.to_q/to_k/to_v/to_out.0 (with biases) -> attn,
    // norm3 -> ln_2, ff.net.0.proj / ff.net.2 -> mlp (a BasicTransformerBlock without
    // cross-attention is a pre-LN residual attention block).
    std::vector<ResidualAttentionBlockWeights<T>> blocks;
    LayerNormWeights<T> norm_out;
    LinearWeights<T> proj_to_clip_embeddings;        // [embedding_dim, inner]
    CView<T> clip_mean, clip_std;                    // [1, embedding_dim]: post_process_latents
};

// diffusers names under `prefix` (a prior/ folder's weights use none). Throws
// Error(Status::bad_model) naming a missing or misshapen tensor.
template <class T>
PriorTransformerWeights<T> load_prior_transformer(const WeightMap& map, const std::string& prefix,
                                                  const PriorTransformerConfig& cfg) {
    const std::int64_t inner = cfg.inner_dim(), e = cfg.embedding_dim;
    PriorTransformerWeights<T> w;
    w.time_linear_1 = load_linear<T>(map, prefix + "time_embedding.linear_1.", {inner, cfg.time_dim(), true});
    w.time_linear_2 = load_linear<T>(map, prefix + "time_embedding.linear_2.", {cfg.time_dim(), inner, true});
    w.proj_in = load_linear<T>(map, prefix + "proj_in.", {e, inner, true});
    if (cfg.embedding_proj_norm)
        w.embedding_proj_norm = load_layer_norm<T>(map, prefix + "embedding_proj_norm.", {cfg.text_embed_dim(), cfg.eps});
    w.embedding_proj = load_linear<T>(map, prefix + "embedding_proj.", {cfg.text_embed_dim(), inner, true});
    w.encoder_hidden_states_proj = load_linear<T>(map, prefix + "encoder_hidden_states_proj.", {e, inner, true});
    w.positional_embedding = map.require<T>(prefix + "positional_embedding", {1, cfg.max_tokens(), inner});
    w.prd_embedding = map.require<T>(prefix + "prd_embedding", {1, 1, inner});
    if (cfg.norm_in) w.norm_in = load_layer_norm<T>(map, prefix + "norm_in.", {inner, cfg.eps});
    const ResidualAttentionBlockConfig bc = cfg.block();
    for (int i = 0; i < cfg.layers; ++i) {
        const std::string p = prefix + "transformer_blocks." + std::to_string(i) + ".";
        ResidualAttentionBlockWeights<T> b;
        b.ln_1 = load_layer_norm<T>(map, p + "norm1.", {inner, cfg.eps});
        b.attn = load_attention_split<T>(map, p + "attn1.", {inner, 0, cfg.heads, /*qkv_bias=*/true, /*causal=*/true});
        b.ln_2 = load_layer_norm<T>(map, p + "norm3.", {inner, cfg.eps});
        b.mlp.fc = load_linear<T>(map, p + "ff.net.0.proj.", {inner, bc.mlp_hidden, true});
        b.mlp.proj = load_linear<T>(map, p + "ff.net.2.", {bc.mlp_hidden, inner, true});
        w.blocks.push_back(b);
    }
    w.norm_out = load_layer_norm<T>(map, prefix + "norm_out.", {inner, cfg.eps});
    w.proj_to_clip_embeddings = load_linear<T>(map, prefix + "proj_to_clip_embeddings.", {inner, e, true});
    w.clip_mean = map.require<T>(prefix + "clip_mean", {1, e});
    w.clip_std = map.require<T>(prefix + "clip_std", {1, e});
    return w;
}

template <class Backend, class T>
class PriorTransformer {
public:
    // Throws Error(Status::bad_model) naming the weight whose shape disagrees with cfg, and
    // Error(Status::invalid_argument) for an impossible config.
    PriorTransformer(const PriorTransformerConfig& cfg, const PriorTransformerWeights<T>& w)
        : cfg_(cfg),
          w_(w),
          time_1_({cfg.inner_dim(), cfg.time_dim(), true}, w.time_linear_1),
          time_2_({cfg.time_dim(), cfg.inner_dim(), true}, w.time_linear_2),
          proj_in_({cfg.embedding_dim, cfg.inner_dim(), true}, w.proj_in),
          embedding_proj_({cfg.text_embed_dim(), cfg.inner_dim(), true}, w.embedding_proj),
          hidden_proj_({cfg.embedding_dim, cfg.inner_dim(), true}, w.encoder_hidden_states_proj),
          norm_out_({cfg.inner_dim(), cfg.eps}, w.norm_out),
          to_clip_({cfg.inner_dim(), cfg.embedding_dim, true}, w.proj_to_clip_embeddings) {
        detail::check_positive("PriorTransformer", "heads", cfg.heads);
        detail::check_positive("PriorTransformer", "head_dim", cfg.head_dim);
        detail::check_positive("PriorTransformer", "num_embeddings", cfg.num_embeddings);
        if (cfg.layers < 0) throw Error(Status::invalid_argument, "PriorTransformer: layers must not be negative");
        if (cfg.inner_dim() % 2 != 0)
            throw Error(Status::invalid_argument, "PriorTransformer: the sinusoidal time embedding needs an even width");
        const std::int64_t inner = cfg.inner_dim();
        detail::check_shape("PriorTransformer", "positional_embedding", w.positional_embedding.shape, {1, cfg.max_tokens(), inner});
        detail::check_shape("PriorTransformer", "prd_embedding", w.prd_embedding.shape, {1, 1, inner});
        detail::check_shape("PriorTransformer", "clip_mean", w.clip_mean.shape, {1, cfg.embedding_dim});
        detail::check_shape("PriorTransformer", "clip_std", w.clip_std.shape, {1, cfg.embedding_dim});
        if (cfg.norm_in != w.norm_in.has_value() || cfg.embedding_proj_norm != w.embedding_proj_norm.has_value())
            throw Error(Status::bad_model, "PriorTransformer: norm_in / embedding_proj_norm weights disagree with the config");
        if (static_cast<int>(w.blocks.size()) != cfg.layers)
            throw Error(Status::bad_model, "PriorTransformer: " + std::to_string(w.blocks.size()) + " blocks, config says " +
                                               std::to_string(cfg.layers));
        if (w.norm_in) norm_in_.emplace(LayerNormConfig{inner, cfg.eps}, *w.norm_in);
        if (w.embedding_proj_norm) embedding_norm_.emplace(LayerNormConfig{cfg.text_embed_dim(), cfg.eps}, *w.embedding_proj_norm);
        for (const auto& b : w.blocks) blocks_.emplace_back(cfg.block(), b);
    }
    const PriorTransformerConfig& config() const noexcept { return cfg_; }

    std::size_t scratch_bytes() const {
        const auto inner = static_cast<std::size_t>(cfg_.inner_dim()), tokens = static_cast<std::size_t>(cfg_.max_tokens());
        const auto widest = static_cast<std::size_t>(std::max({cfg_.time_dim(), cfg_.inner_dim(), cfg_.embedding_dim,
                                                               cfg_.text_embed_dim()}));
        return Scratch::bytes_for<T>(tokens * inner) + 3 * Scratch::bytes_for<T>(widest) +
               (blocks_.empty() ? 0 : blocks_.front().scratch_bytes(1, cfg_.max_tokens()));
    }

    // One denoising call for B sequences (host memory for the shapes and lengths):
    //   x: [B, embedding_dim] the noisy image embeddings, timestep: the diffusion timestep,
    //   text_embedding: [B, text_embed_dim], text_hidden: [B, num_embeddings, embedding_dim],
    //   text_lengths[b]: valid text tokens of sequence b (1..num_embeddings; the rest is padding),
    //   out: [B, embedding_dim] the predicted image embeddings (before post_process).
    // Throws Error(Status::invalid_argument) for wrong shapes or lengths.
    // const: one model may serve several threads, each with its own context and scratch.
    void forward(const typename Backend::Context& ctx, CView<T> x, float timestep, CView<T> text_embedding,
                 CView<T> text_hidden, const std::int64_t* text_lengths, View<T> out, Scratch& scratch) const {
        const std::int64_t batch = x.shape.rank() == 2 ? x.shape[0] : 0, e = cfg_.embedding_dim, inner = cfg_.inner_dim();
        detail::check_argument_shape("PriorTransformer", "x", x.shape, {batch, e});
        detail::check_argument_shape("PriorTransformer", "text_embedding", text_embedding.shape, {batch, cfg_.text_embed_dim()});
        detail::check_argument_shape("PriorTransformer", "text_hidden", text_hidden.shape, {batch, cfg_.num_embeddings, e});
        detail::check_argument_shape("PriorTransformer", "out", out.shape, {batch, e});
        if (!std::isfinite(timestep)) throw Error(Status::invalid_argument, "PriorTransformer: timestep is not finite");
        for (std::int64_t b = 0; b < batch; ++b)
            if (!text_lengths || text_lengths[b] < 1 || text_lengths[b] > cfg_.num_embeddings)
                throw Error(Status::invalid_argument, "PriorTransformer: text length of sequence " + std::to_string(b) +
                                                          " outside [1, " + std::to_string(cfg_.num_embeddings) + "]");
        const T* pos = w_.positional_embedding.data;
        for (std::int64_t b = 0; b < batch; ++b) {
            Scratch::Frame frame(scratch);
            const std::int64_t n = text_lengths[b], len = n + 4;
            const std::size_t widest = static_cast<std::size_t>(std::max({cfg_.time_dim(), inner, e, cfg_.text_embed_dim()}));
            const View<T> tokens{scratch.take<T>(static_cast<std::size_t>(cfg_.max_tokens() * inner)), {1, len, inner}};
            T* a = scratch.take<T>(widest);
            T* c = scratch.take<T>(widest);
            T* readout = scratch.take<T>(widest);
            // [n, inner] text tokens
            hidden_proj_.forward(ctx, text_hidden.data + b * cfg_.num_embeddings * e, n, tokens.data);
            // text embedding
            const T* te = text_embedding.data + b * cfg_.text_embed_dim();
            if (embedding_norm_) {
                embedding_norm_->forward(ctx, te, a, 1);
                te = a;
            }
            embedding_proj_.forward(ctx, te, 1, tokens.data + n * inner);
            // timestep: Timesteps(inner, flip_sin_to_cos=True, shift 0) -> linear_1 -> SiLU -> linear_2
            timestep_embedding(&timestep, 1, inner, c);
            time_1_.forward(ctx, c, 1, a);
            Backend::silu(ctx, a, a, cfg_.time_dim());
            time_2_.forward(ctx, a, 1, tokens.data + (n + 1) * inner);
            proj_in_.forward(ctx, x.data + b * e, 1, tokens.data + (n + 2) * inner);
            std::copy(w_.prd_embedding.data, w_.prd_embedding.data + inner, tokens.data + (n + 3) * inner);
            Backend::add(ctx, pos, tokens.data, n * inner);
            Backend::add(ctx, pos + cfg_.num_embeddings * inner, tokens.data + n * inner, 4 * inner);
            if (norm_in_) norm_in_->forward(ctx, tokens.data, tokens.data, len);
            for (const auto& block : blocks_) block.forward(ctx, tokens, scratch);
            norm_out_.forward(ctx, tokens.data + (len - 1) * inner, readout, 1);
            to_clip_.forward(ctx, readout, 1, out.data + b * e);
        }
    }

    // post_process_latents: x * clip_std + clip_mean over [rows, embedding_dim], in place (host memory).
    void post_process(T* x, std::int64_t rows) const {
        const std::int64_t e = cfg_.embedding_dim;
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t i = 0; i < e; ++i)
                x[r * e + i] = static_cast<T>(static_cast<float>(x[r * e + i]) * static_cast<float>(w_.clip_std.data[i]) +
                                              static_cast<float>(w_.clip_mean.data[i]));
    }

private:
    PriorTransformerConfig cfg_;
    PriorTransformerWeights<T> w_;
    Linear<Backend, T> time_1_, time_2_, proj_in_, embedding_proj_, hidden_proj_;
    std::optional<LayerNorm<Backend, T>> norm_in_, embedding_norm_;
    std::vector<ResidualAttentionBlock<Backend, T>> blocks_;
    LayerNorm<Backend, T> norm_out_;
    Linear<Backend, T> to_clip_;
};

extern template class PriorTransformer<CpuBackend, float>;  // defined in src/nn/prior_transformer.cpp

}  // namespace unclip::nn
