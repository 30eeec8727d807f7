#pragma once
// The CLIP text tower SD 2.x conditions on (OpenCLIP ViT-H/14 text transformer; LDM
// FrozenOpenCLIPEmbedder, ComfyUI clip_model.py CLIPTextModel_):
//   x = token_embedding[ids] + positional_embedding
//   x = blocks(x) with a causal mask and no padding mask
//   hidden = ln_final(output of block `output_layer`)        -> the UNet's context
//   pooled = ln_final(output of the last block)[first end token] @ text_projection
#include <algorithm>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "unclip/nn/layer_norm.hpp"
#include "unclip/nn/transformer_block.hpp"
#include "unclip/text/prompt.hpp"

namespace unclip::nn {

struct ClipTextConfig {
    std::int64_t vocab = 49408, context = 77, width = 1024, mlp_hidden = 4096;
    int heads = 16, layers = 24;
    // The block whose output (after ln_final) is `hidden`: 0-based, or negative from the end as
    // ComfyUI counts (-1 = last, -2 = penultimate, what SD 2.x uses with all 24 LDM blocks).
    // A diffusers text_encoder/ keeps 23 blocks: layers = 23 with output_layer = -1 is the same.
    int output_layer = -2;
    Activation activation = Activation::gelu;
    float eps = 1e-5f;
    std::int64_t embed_dim = 1024;  // text_projection width; 0 = no projection (no pooled output)
    std::int32_t end_id = 49407;    // the pooled output is read at the first such token

    // OpenCLIP ViT-H/14 as SD 2.x uses it (LDM checkpoints: 24 blocks, penultimate output).
    static ClipTextConfig open_clip_vit_h14() { return {}; }
    // The diffusers SD 2.x text_encoder/: 23 blocks, last output, no projection.
    static ClipTextConfig diffusers_sd2() {
        ClipTextConfig c;
        c.layers = 23;
        c.output_layer = -1;
        c.embed_dim = 0;
        return c;
    }
    // The 0-based block index output_layer refers to; throws Error(Status::invalid_argument) when
    // it is outside [0, layers).
    int output_block() const {
        const int index = output_layer < 0 ? layers + output_layer : output_layer;
        if (index < 0 || index >= layers)
            throw Error(Status::invalid_argument, "ClipTextConfig: output_layer " + std::to_string(output_layer) +
                                                      " is outside a " + std::to_string(layers) + "-block tower");
        return index;
    }
    ResidualAttentionBlockConfig block() const {
        return {width, mlp_hidden, heads, activation, /*causal=*/true, eps};
    }
};

template <class T>
struct ClipTextWeights {
    CView<T> token_embedding;       // token_embedding.weight [vocab, width]
    CView<T> positional_embedding;  // positional_embedding [context, width]
    std::vector<ResidualAttentionBlockWeights<T>> blocks;  // transformer.resblocks.{i}
    LayerNormWeights<T> ln_final;
    std::optional<CView<T>> text_projection;  // [width, embed_dim], used as x @ P
};

// LDM / OpenCLIP names under `prefix` ("cond_stage_model.model." in an SD 2.x checkpoint, or "").
// Only the first cfg.layers blocks are read; text_projection only when cfg.embed_dim > 0.
// Throws Error(Status::bad_model) naming a missing or misshapen tensor.
template <class T>
ClipTextWeights<T> load_clip_text(const WeightMap& map, const std::string& prefix, const ClipTextConfig& cfg) {
    ClipTextWeights<T> w;
    w.token_embedding = map.require<T>(prefix + "token_embedding.weight", {cfg.vocab, cfg.width});
    w.positional_embedding = map.require<T>(prefix + "positional_embedding", {cfg.context, cfg.width});
    for (int i = 0; i < cfg.layers; ++i)
        w.blocks.push_back(load_residual_attention_block<T>(
            map, prefix + "transformer.resblocks." + std::to_string(i) + ".", cfg.block()));
    w.ln_final = load_layer_norm<T>(map, prefix + "ln_final.", {cfg.width, cfg.eps});
    if (cfg.embed_dim > 0) w.text_projection = map.require<T>(prefix + "text_projection", {cfg.width, cfg.embed_dim});
    return w;
}

template <class Backend, class T>
class ClipTextModel {
public:
    // Throws Error(Status::bad_model) naming the weight whose shape disagrees with cfg, and
    // Error(Status::invalid_argument) for an impossible config.
    ClipTextModel(const ClipTextConfig& cfg, const ClipTextWeights<T>& w)
        : cfg_(cfg), output_block_(cfg.output_block()), w_(w), ln_final_({cfg.width, cfg.eps}, w.ln_final) {
        detail::check_positive("ClipTextModel", "vocab", cfg.vocab);
        detail::check_positive("ClipTextModel", "context", cfg.context);
        detail::check_shape("ClipTextModel", "token_embedding", w.token_embedding.shape, {cfg.vocab, cfg.width});
        detail::check_shape("ClipTextModel", "positional_embedding", w.positional_embedding.shape,
                            {cfg.context, cfg.width});
        if (static_cast<int>(w.blocks.size()) != cfg.layers)
            throw Error(Status::bad_model, "ClipTextModel: " + std::to_string(w.blocks.size()) +
                                               " blocks, config says " + std::to_string(cfg.layers));
        if ((cfg.embed_dim > 0) != w.text_projection.has_value())
            throw Error(Status::bad_model, cfg.embed_dim > 0 ? "ClipTextModel: text_projection missing"
                                                             : "ClipTextModel: unexpected text_projection");
        if (w.text_projection)
            detail::check_shape("ClipTextModel", "text_projection", w.text_projection->shape, {cfg.width, cfg.embed_dim});
        for (const auto& b : w.blocks) blocks_.emplace_back(cfg.block(), b);
    }
    const ClipTextConfig& config() const noexcept { return cfg_; }

    std::size_t scratch_bytes(std::int64_t batch, std::int64_t tokens) const {
        const auto rows = static_cast<std::size_t>(batch * tokens);
        return Scratch::bytes_for<T>(rows * static_cast<std::size_t>(cfg_.width)) +
               2 * Scratch::bytes_for<T>(static_cast<std::size_t>(batch * cfg_.width)) +
               Scratch::bytes_for<std::int32_t>(static_cast<std::size_t>(batch)) +
               (blocks_.empty() ? 0 : blocks_.front().scratch_bytes(batch, tokens));
    }

    // tokens: [B, L] ids with L <= context (host memory) -> hidden: [B, L, width] and, when
    // `pooled` is given (needs a projection), pooled: [B, embed_dim]. Throws
    // Error(Status::invalid_argument) for a token id outside the vocabulary or wrong shapes.
    // const: one model may serve several threads, each with its own context and scratch.
    void forward(const typename Backend::Context& ctx, CView<std::int32_t> tokens, View<T> hidden, View<T>* pooled,
                 Scratch& scratch) const {
        if (tokens.shape.rank() != 2 || tokens.shape[1] < 1 || tokens.shape[1] > cfg_.context)
            throw Error(Status::invalid_argument, "ClipTextModel: tokens " + tokens.shape.str() + " are not [B, L <= " +
                                                      std::to_string(cfg_.context) + "]");
        const std::int64_t batch = tokens.shape[0], len = tokens.shape[1], rows = batch * len, width = cfg_.width;
        detail::check_argument_shape("ClipTextModel", "hidden", hidden.shape, {batch, len, width});
        if (pooled) {
            if (!w_.text_projection)
                throw Error(Status::invalid_argument, "ClipTextModel: pooled output needs text_projection");
            detail::check_argument_shape("ClipTextModel", "pooled", pooled->shape, {batch, cfg_.embed_dim});
        }
        for (std::int64_t i = 0; i < rows; ++i)
            if (tokens.data[i] < 0 || tokens.data[i] >= cfg_.vocab)
                throw Error(Status::invalid_argument, "ClipTextModel: token id " + std::to_string(tokens.data[i]) +
                                                          " at position " + std::to_string(i) +
                                                          " is outside the vocabulary of " + std::to_string(cfg_.vocab));

        Scratch::Frame frame(scratch);
        const View<T> x{scratch.take<T>(static_cast<std::size_t>(rows * width)), {batch, len, width}};  // residual stream
        T* pooled_rows = scratch.take<T>(static_cast<std::size_t>(batch * width));    // [B, width]
        T* pooled_normed = scratch.take<T>(static_cast<std::size_t>(batch * width));  // [B, width]

        Backend::gather_rows(ctx, w_.token_embedding.data, tokens.data, rows, width, x.data);
        for (std::int64_t b = 0; b < batch; ++b) Backend::add(ctx, w_.positional_embedding.data, x.data + b * len * width, len * width);
        // Blocks after the output block only matter for the pooled output.
        const int last = pooled ? cfg_.layers - 1 : output_block_;
        for (int i = 0; i <= last; ++i) {
            blocks_[static_cast<std::size_t>(i)].forward(ctx, x, scratch);
            if (i == output_block_) ln_final_.forward(ctx, x.data, hidden.data, rows);
        }
        if (!pooled) return;
        // First end token of each sequence; the last position when there is none (ComfyUI
        // sd1_clip.py counts tokens up to the first end token; transformers would take 0).
        std::vector<std::int32_t> end_rows(static_cast<std::size_t>(batch));  // host: gather ids live there
        for (std::int64_t b = 0; b < batch; ++b) {
            std::int64_t at = len - 1;
            for (std::int64_t j = 0; j < len; ++j)
                if (tokens.data[b * len + j] == cfg_.end_id) {
                    at = j;
                    break;
                }
            end_rows[static_cast<std::size_t>(b)] = static_cast<std::int32_t>(b * len + at);
        }
        Backend::gather_rows(ctx, x.data, end_rows.data(), batch, width, pooled_rows);
        ln_final_.forward(ctx, pooled_rows, pooled_normed, batch);
        Backend::gemm(ctx, false, false, batch, cfg_.embed_dim, width, 1.0f, pooled_normed, width,
                      w_.text_projection->data, cfg_.embed_dim, 0.0f, pooled->data, cfg_.embed_dim);
    }

private:
    ClipTextConfig cfg_;
    int output_block_;
    ClipTextWeights<T> w_;
    LayerNorm<Backend, T> ln_final_;
    std::vector<ResidualAttentionBlock<Backend, T>> blocks_;
};

// Bytes of Scratch that encode_prompt needs for `tokens`.
template <class Backend, class T>
std::size_t encode_prompt_scratch_bytes(const ClipTextModel<Backend, T>& model, const text::PromptTokens& tokens) {
    const std::int64_t batch = tokens.chunks() + (tokens.weighted() ? 1 : 0), len = text::kClipContextLength;
    const auto& cfg = model.config();
    return model.scratch_bytes(batch, len) +
           Scratch::bytes_for<T>(static_cast<std::size_t>(batch * len * cfg.width)) +
           Scratch::bytes_for<T>(static_cast<std::size_t>(batch * std::max<std::int64_t>(cfg.embed_dim, 1))) +
           Scratch::bytes_for<std::int32_t>(static_cast<std::size_t>(batch * len));
}

// ComfyUI's encode_token_weights for SD 2.x: every 77-token chunk is encoded in one batch (plus
// the empty prompt [start, end, 0...] when any weight differs from 1), each token with weight
// w != 1 becomes empty + (z - empty) * w (w rounded to float, as PyTorch applies a Python float
// to a float32 tensor), and the chunks are concatenated along the token axis.
//   cond: [1, 77 * chunks, width]; pooled (optional): [1, embed_dim], from the first chunk.
// cond and pooled are host memory whatever the backend: the weighting runs on the host.
// `pooled` is kept out of template argument deduction so that a plain nullptr works.
template <class Backend, class T>
void encode_prompt(const typename Backend::Context& ctx, const ClipTextModel<Backend, T>& model,
                   const text::PromptTokens& tokens, View<T> cond, typename std::enable_if<true, View<T>>::type* pooled,
                   Scratch& scratch) {
    const auto& cfg = model.config();
    const std::int64_t chunks = tokens.chunks(), len = text::kClipContextLength, width = cfg.width;
    if (chunks < 1 || static_cast<std::int64_t>(tokens.ids.size()) != chunks * len ||
        tokens.weights.size() != tokens.ids.size())
        throw Error(Status::invalid_argument, "encode_prompt: tokens are not whole 77-token chunks");
    detail::check_argument_shape("encode_prompt", "cond", cond.shape, {1, chunks * len, width});
    if (pooled) detail::check_argument_shape("encode_prompt", "pooled", pooled->shape, {1, cfg.embed_dim});
    const bool weighted = tokens.weighted();
    const std::int64_t batch = chunks + (weighted ? 1 : 0);

    Scratch::Frame frame(scratch);
    std::vector<std::int32_t> ids(tokens.ids.begin(), tokens.ids.end());
    if (weighted) {
        ids.resize(static_cast<std::size_t>(batch * len), text::kClipPadId);
        ids[static_cast<std::size_t>(chunks * len)] = tokens.ids[0];  // the start id
        ids[static_cast<std::size_t>(chunks * len + 1)] = cfg.end_id;
    }
    const View<T> hidden{scratch.take<T>(static_cast<std::size_t>(batch * len * width)), {batch, len, width}};
    View<T> all_pooled{scratch.take<T>(static_cast<std::size_t>(batch * std::max<std::int64_t>(cfg.embed_dim, 1))),
                       {batch, cfg.embed_dim}};
    model.forward(ctx, CView<std::int32_t>{ids.data(), {batch, len}}, hidden, pooled ? &all_pooled : nullptr, scratch);

    std::vector<T> host_hidden(static_cast<std::size_t>(hidden.numel()));
    Backend::download(ctx, hidden.data, host_hidden.data(), hidden.numel());
    const T* empty_hidden = host_hidden.data() + chunks * len * width;
    for (std::int64_t i = 0; i < chunks * len; ++i) {
        const T* z = host_hidden.data() + i * width;
        T* out = cond.data + i * width;
        const double w = tokens.weights[static_cast<std::size_t>(i)];
        if (w == 1.0) {
            std::copy(z, z + width, out);
            continue;
        }
        const float wf = static_cast<float>(w);
        const T* e = empty_hidden + (i % len) * width;
        for (std::int64_t c = 0; c < width; ++c) out[c] = (z[c] - e[c]) * wf + e[c];
    }
    if (pooled) Backend::download(ctx, all_pooled.data, pooled->data, cfg.embed_dim);
}

}  // namespace unclip::nn
