#pragma once
// The CLIP vision tower whose projected class token is unCLIP's image embedding (OpenCLIP
// VisionTransformer, HF CLIPVisionModelWithProjection, ComfyUI clip_model.py CLIPVision):
//   x = [class_embedding; conv1(pixels) as patch tokens] + positional_embedding
//   x = blocks(ln_pre(x))              (no mask)
//   image_embeds = ln_post(x[:, 0]) @ proj     (not L2-normalised)
#include <string>
#include <vector>

#include "unclip/nn/layer_norm.hpp"
#include "unclip/nn/transformer_block.hpp"

namespace unclip::nn {

struct ClipVisionConfig {
    std::int64_t image_size = 224, patch = 14, width = 1280, mlp_hidden = 5120, embed_dim = 1024;
    int heads = 16, layers = 32;
    Activation activation = Activation::gelu;
    float eps = 1e-5f;

    // OpenCLIP ViT-H/14 (sd21-unclip-h): 32 blocks of width 1280, exact GELU, 1024-d embedding.
    static ClipVisionConfig open_clip_vit_h14() { return {}; }
    // OpenAI CLIP ViT-L/14 (sd21-unclip-l): 24 blocks of width 1024, quick_gelu, 768-d embedding.
    static ClipVisionConfig openai_vit_l14() {
        ClipVisionConfig c;
        c.width = 1024;
        c.mlp_hidden = 4096;
        c.embed_dim = 768;
        c.layers = 24;
        c.activation = Activation::quick_gelu;
        return c;
    }
    std::int64_t grid() const noexcept { return patch > 0 ? image_size / patch : 0; }
    std::int64_t tokens() const noexcept { return grid() * grid() + 1; }
    ResidualAttentionBlockConfig block() const {
        return {width, mlp_hidden, heads, activation, /*causal=*/false, eps};
    }
};

template <class T>
struct ClipVisionWeights {
    CView<T> conv1;                 // conv1.weight [width, 3, patch, patch], no bias
    CView<T> class_embedding;       // [width]
    CView<T> positional_embedding;  // [tokens, width]
    LayerNormWeights<T> ln_pre;
    std::vector<ResidualAttentionBlockWeights<T>> blocks;  // transformer.resblocks.{i}
    LayerNormWeights<T> ln_post;
    CView<T> proj;  // [width, embed_dim], used as x @ proj
};

// OpenCLIP / LDM names under `prefix` ("embedder.model.visual." in an unCLIP checkpoint, or "");
// the OpenAI ViT-L/14 visual uses the same names. Throws Error(Status::bad_model) naming a missing
// or misshapen tensor.
template <class T>
ClipVisionWeights<T> load_clip_vision(const WeightMap& map, const std::string& prefix, const ClipVisionConfig& cfg) {
    ClipVisionWeights<T> w;
    w.conv1 = map.require<T>(prefix + "conv1.weight", {cfg.width, 3, cfg.patch, cfg.patch});
    w.class_embedding = map.require<T>(prefix + "class_embedding", {cfg.width});
    w.positional_embedding = map.require<T>(prefix + "positional_embedding", {cfg.tokens(), cfg.width});
    w.ln_pre = load_layer_norm<T>(map, prefix + "ln_pre.", {cfg.width, cfg.eps});
    for (int i = 0; i < cfg.layers; ++i)
        w.blocks.push_back(load_residual_attention_block<T>(
            map, prefix + "transformer.resblocks." + std::to_string(i) + ".", cfg.block()));
    w.ln_post = load_layer_norm<T>(map, prefix + "ln_post.", {cfg.width, cfg.eps});
    w.proj = map.require<T>(prefix + "proj", {cfg.width, cfg.embed_dim});
    return w;
}

template <class Backend, class T>
class ClipVisionModel {
public:
    // Throws Error(Status::bad_model) naming the weight whose shape disagrees with cfg, and
    // Error(Status::invalid_argument) for an impossible config.
    ClipVisionModel(const ClipVisionConfig& cfg, const ClipVisionWeights<T>& w)
        : cfg_(cfg), w_(w), ln_pre_({cfg.width, cfg.eps}, w.ln_pre), ln_post_({cfg.width, cfg.eps}, w.ln_post) {
        detail::check_positive("ClipVisionModel", "patch", cfg.patch);
        detail::check_positive("ClipVisionModel", "image_size", cfg.image_size);
        detail::check_positive("ClipVisionModel", "embed_dim", cfg.embed_dim);
        if (cfg.image_size % cfg.patch != 0)
            throw Error(Status::invalid_argument, "ClipVisionModel: image_size " + std::to_string(cfg.image_size) +
                                                      " is not a multiple of patch " + std::to_string(cfg.patch));
        detail::check_shape("ClipVisionModel", "conv1.weight", w.conv1.shape, {cfg.width, 3, cfg.patch, cfg.patch});
        detail::check_shape("ClipVisionModel", "class_embedding", w.class_embedding.shape, {cfg.width});
        detail::check_shape("ClipVisionModel", "positional_embedding", w.positional_embedding.shape,
                            {cfg.tokens(), cfg.width});
        detail::check_shape("ClipVisionModel", "proj", w.proj.shape, {cfg.width, cfg.embed_dim});
        if (static_cast<int>(w.blocks.size()) != cfg.layers)
            throw Error(Status::bad_model, "ClipVisionModel: " + std::to_string(w.blocks.size()) +
                                               " blocks, config says " + std::to_string(cfg.layers));
        for (const auto& b : w.blocks) blocks_.emplace_back(cfg.block(), b);
    }
    const ClipVisionConfig& config() const noexcept { return cfg_; }

    std::size_t scratch_bytes(std::int64_t batch) const {
        const std::int64_t tokens = cfg_.tokens(), patches = tokens - 1;
        const std::size_t patch_rows =
            Scratch::bytes_for<T>(static_cast<std::size_t>(batch * patches * 3 * cfg_.patch * cfg_.patch));
        const std::size_t blocks = blocks_.empty() ? 0 : blocks_.front().scratch_bytes(batch, tokens);
        return Scratch::bytes_for<T>(static_cast<std::size_t>(batch * tokens * cfg_.width)) +
               2 * Scratch::bytes_for<T>(static_cast<std::size_t>(batch * cfg_.width)) +
               Scratch::bytes_for<std::int32_t>(static_cast<std::size_t>(batch)) + std::max(patch_rows, blocks);
    }

    // pixels: [B, 3, image_size, image_size], normalised (see clip_preprocess) -> image_embeds: [B, embed_dim].
    // const: one model may serve several threads, each with its own context and scratch.
    void forward(const typename Backend::Context& ctx, CView<T> pixels, View<T> image_embeds, Scratch& scratch) const {
        const std::int64_t size = cfg_.image_size, width = cfg_.width, tokens = cfg_.tokens(), patches = tokens - 1;
        if (pixels.shape.rank() != 4 || pixels.shape[1] != 3 || pixels.shape[2] != size || pixels.shape[3] != size)
            throw Error(Status::invalid_argument, "ClipVisionModel: pixels " + pixels.shape.str() + " are not [B, 3, " +
                                                      std::to_string(size) + ", " + std::to_string(size) + "]");
        const std::int64_t batch = pixels.shape[0], patch_len = 3 * cfg_.patch * cfg_.patch;
        detail::check_argument_shape("ClipVisionModel", "image_embeds", image_embeds.shape, {batch, cfg_.embed_dim});

        Scratch::Frame frame(scratch);
        const View<T> x{scratch.take<T>(static_cast<std::size_t>(batch * tokens * width)), {batch, tokens, width}};
        T* cls = scratch.take<T>(static_cast<std::size_t>(batch * width));
        T* cls_normed = scratch.take<T>(static_cast<std::size_t>(batch * width));
        {
            // The 14x14 stride-14 patch convolution as one GEMM per image on extracted patches,
            // written straight into token rows 1..patches.
            Scratch::Frame patch_frame(scratch);
            T* rows = scratch.take<T>(static_cast<std::size_t>(batch * patches * patch_len));
            Backend::extract_patches(ctx, pixels.data, batch, 3, size, size, static_cast<int>(cfg_.patch), rows);
            const std::int32_t zero = 0;
            for (std::int64_t b = 0; b < batch; ++b) {
                T* xb = x.data + b * tokens * width;
                Backend::gather_rows(ctx, w_.class_embedding.data, &zero, 1, width, xb);
                Backend::gemm(ctx, false, true, patches, width, patch_len, 1.0f, rows + b * patches * patch_len,
                              patch_len, w_.conv1.data, patch_len, 0.0f, xb + width, width);
                Backend::add(ctx, w_.positional_embedding.data, xb, tokens * width);
            }
        }
        ln_pre_.forward(ctx, x.data, x.data, batch * tokens);
        for (const auto& block : blocks_) block.forward(ctx, x, scratch);
        std::vector<std::int32_t> cls_rows(static_cast<std::size_t>(batch));  // host: gather ids live there
        for (std::int64_t b = 0; b < batch; ++b) cls_rows[static_cast<std::size_t>(b)] = static_cast<std::int32_t>(b * tokens);
        Backend::gather_rows(ctx, x.data, cls_rows.data(), batch, width, cls);
        ln_post_.forward(ctx, cls, cls_normed, batch);
        Backend::gemm(ctx, false, false, batch, cfg_.embed_dim, width, 1.0f, cls_normed, width, w_.proj.data,
                      cfg_.embed_dim, 0.0f, image_embeds.data, cfg_.embed_dim);
    }

private:
    ClipVisionConfig cfg_;
    ClipVisionWeights<T> w_;
    LayerNorm<Backend, T> ln_pre_, ln_post_;
    std::vector<ResidualAttentionBlock<Backend, T>> blocks_;
};

}  // namespace unclip::nn
