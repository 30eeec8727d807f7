#pragma once
// The SD 2.x UNet (LDM openaimodel.py UNetModel with use_linear_in_transformer) including the
// unCLIP label embedding: emb = time_embed(tsemb(t)) [+ label_emb(y)]. Block order, skip stack and
// weight names follow the LDM checkpoint (spec §2.2.1, §3.1).
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "unclip/nn/conv2d.hpp"
#include "unclip/nn/linear.hpp"
#include "unclip/nn/resblock.hpp"
#include "unclip/nn/spatial_transformer.hpp"
#include "unclip/nn/timestep_embedding.hpp"

namespace unclip::nn {

struct UNetConfig {
    std::int64_t in_channels = 4, out_channels = 4, model_channels = 320;
    std::vector<int> channel_mult{1, 2, 4, 4};
    int num_res_blocks = 2;
    std::vector<bool> attention_levels{true, true, true, false};  // per level
    std::int64_t head_channels = 64;                             // num_head_channels
    std::int64_t context_dim = 1024;
    int transformer_depth = 1;
    std::int64_t adm_in_channels = 0;  // 2048 unclip-h, 1536 unclip-l, 0 plain SD 2.x (no label_emb)
    int groups = 32;
    std::int64_t time_embed_dim() const noexcept { return 4 * model_channels; }
};

template <class T>
struct UNetLevelBlockWeights {
    std::optional<ResBlockWeights<T>> res;
    std::optional<SpatialTransformerWeights<T>> attn;
    std::optional<Conv2dWeights<T>> resample;  // input: downsample op; output: upsample conv
};

template <class T>
struct UNetWeights {
    LinearWeights<T> time_embed_0, time_embed_2;
    std::optional<LinearWeights<T>> label_emb_0, label_emb_2;
    Conv2dWeights<T> conv_in;                     // input_blocks.0.0
    std::vector<UNetLevelBlockWeights<T>> input_blocks;  // input_blocks.1 ..
    ResBlockWeights<T> middle_res_0, middle_res_2;
    SpatialTransformerWeights<T> middle_attn;
    std::vector<UNetLevelBlockWeights<T>> output_blocks;
    GroupNormWeights<T> out_norm;                 // out.0
    Conv2dWeights<T> out_conv;                    // out.2
};

namespace detail {
// The static structure shared by the loader and the module: which block does what, at which width.
struct UNetBlockSpec {
    std::int64_t in_channels = 0, out_channels = 0;
    bool res = false, attn = false, downsample = false, upsample = false;
};
struct UNetLayout {
    std::vector<UNetBlockSpec> input_blocks;   // excluding conv_in
    std::vector<UNetBlockSpec> output_blocks;
    std::vector<std::int64_t> skip_channels;   // conv_in first
    std::int64_t middle_channels = 0;
};

inline UNetLayout unet_layout(const UNetConfig& c) {
    if (c.channel_mult.empty() || c.attention_levels.size() != c.channel_mult.size())
        throw Error(Status::invalid_argument, "UNet: channel_mult and attention_levels must have one entry per level");
    check_positive("UNet", "model_channels", c.model_channels);
    check_positive("UNet", "num_res_blocks", c.num_res_blocks);
    check_positive("UNet", "head_channels", c.head_channels);
    UNetLayout l;
    std::int64_t ch = c.model_channels;
    l.skip_channels.push_back(ch);
    const auto levels = c.channel_mult.size();
    for (std::size_t level = 0; level < levels; ++level) {
        const std::int64_t out = c.model_channels * c.channel_mult[level];
        for (int i = 0; i < c.num_res_blocks; ++i) {
            l.input_blocks.push_back({ch, out, true, bool(c.attention_levels[level]), false, false});
            ch = out;
            l.skip_channels.push_back(ch);
        }
        if (level + 1 != levels) {
            l.input_blocks.push_back({ch, ch, false, false, true, false});
            l.skip_channels.push_back(ch);
        }
    }
    l.middle_channels = ch;
    std::vector<std::int64_t> skips = l.skip_channels;
    for (std::size_t level = levels; level-- > 0;) {
        const std::int64_t out = c.model_channels * c.channel_mult[level];
        for (int i = 0; i <= c.num_res_blocks; ++i) {
            const std::int64_t skip = skips.back();
            skips.pop_back();
            const bool up = level != 0 && i == c.num_res_blocks;
            l.output_blocks.push_back({ch + skip, out, true, bool(c.attention_levels[level]), false, up});
            ch = out;
        }
    }
    return l;
}

inline SpatialTransformerConfig unet_transformer(const UNetConfig& c, std::int64_t channels) {
    if (channels % c.head_channels != 0)
        throw Error(Status::invalid_argument, "UNet: width " + std::to_string(channels) + " is not a multiple of head_channels " +
                                                  std::to_string(c.head_channels));
    return {channels, static_cast<int>(channels / c.head_channels), c.context_dim, c.transformer_depth, c.groups};
}
inline ResBlockConfig unet_res(const UNetConfig& c, std::int64_t in, std::int64_t out) {
    return {in, out, c.time_embed_dim(), c.groups, 1e-5f};
}
}  // namespace detail

// Keys as in the LDM checkpoint under `prefix` (normally "" for a WeightMap of the
// model.diffusion_model. component).
template <class T>
UNetWeights<T> load_unet(const WeightMap& map, const std::string& prefix, const UNetConfig& cfg) {
    const auto layout = detail::unet_layout(cfg);
    const std::int64_t mc = cfg.model_channels, ted = cfg.time_embed_dim();
    UNetWeights<T> w;
    w.time_embed_0 = load_linear<T>(map, prefix + "time_embed.0.", {mc, ted, true});
    w.time_embed_2 = load_linear<T>(map, prefix + "time_embed.2.", {ted, ted, true});
    if (cfg.adm_in_channels > 0) {
        w.label_emb_0 = load_linear<T>(map, prefix + "label_emb.0.0.", {cfg.adm_in_channels, ted, true});
        w.label_emb_2 = load_linear<T>(map, prefix + "label_emb.0.2.", {ted, ted, true});
    }
    w.conv_in = load_conv2d<T>(map, prefix + "input_blocks.0.0.", {cfg.in_channels, mc, 3, 1, 1, true});
    auto load_block = [&](const std::string& p, const detail::UNetBlockSpec& s, bool output) {
        UNetLevelBlockWeights<T> b;
        if (s.downsample) {
            b.resample = load_conv2d<T>(map, p + "0.op.", {s.in_channels, s.out_channels, 3, 2, 1, true});
            return b;
        }
        b.res = load_resblock<T>(map, p + "0.", detail::unet_res(cfg, s.in_channels, s.out_channels));
        if (s.attn)
            b.attn = load_spatial_transformer<T>(map, p + "1.", detail::unet_transformer(cfg, s.out_channels));
        if (output && s.upsample)
            b.resample = load_conv2d<T>(map, p + (s.attn ? "2" : "1") + ".conv.", {s.out_channels, s.out_channels, 3, 1, 1, true});
        return b;
    };
    for (std::size_t i = 0; i < layout.input_blocks.size(); ++i)
        w.input_blocks.push_back(load_block(prefix + "input_blocks." + std::to_string(i + 1) + ".", layout.input_blocks[i], false));
    const std::int64_t mid = layout.middle_channels;
    w.middle_res_0 = load_resblock<T>(map, prefix + "middle_block.0.", detail::unet_res(cfg, mid, mid));
    w.middle_attn = load_spatial_transformer<T>(map, prefix + "middle_block.1.", detail::unet_transformer(cfg, mid));
    w.middle_res_2 = load_resblock<T>(map, prefix + "middle_block.2.", detail::unet_res(cfg, mid, mid));
    for (std::size_t i = 0; i < layout.output_blocks.size(); ++i)
        w.output_blocks.push_back(load_block(prefix + "output_blocks." + std::to_string(i) + ".", layout.output_blocks[i], true));
    w.out_norm = load_group_norm<T>(map, prefix + "out.0.", {mc, cfg.groups, 1e-5f});
    w.out_conv = load_conv2d<T>(map, prefix + "out.2.", {mc, cfg.out_channels, 3, 1, 1, true});
    return w;
}

template <class Backend, class T>
class UNet {
public:
    UNet(const UNetConfig& cfg, const UNetWeights<T>& w);
    const UNetConfig& config() const noexcept { return cfg_; }

    // Bytes of Scratch that forward() needs for latent shape [B, in_channels, h, w] and a text
    // context of context_len tokens.
    std::size_t scratch_bytes(const Shape& x, std::int64_t context_len) const;

    // x: [B, in_channels, h, w] (any h, w >= 1); timesteps: [B]; context: [B, L, context_dim];
    // y: [B, adm_in_channels] (required iff adm_in_channels > 0, else ignored); out: [B, out_channels, h, w].
    // const: one UNet may serve several threads, each with its own context and scratch.
    void forward(const typename Backend::Context& ctx, CView<T> x, const float* timesteps, CView<T> context,
                 const T* y, View<T> out, Scratch& scratch) const;

    // forward() in two parts, for a caller that records the second as a CUDA graph (a recorded
    // kernel keeps the timestep it was given): embed() writes emb [B, time_embed_dim()], the
    // timestep (and label) embedding that every ResBlock reads, and forward_embedded() runs the
    // network on it. scratch_bytes() covers emb taken from the same arena plus either part.
    void embed(const typename Backend::Context& ctx, const float* timesteps, const T* y, View<T> emb,
               Scratch& scratch) const;
    // context_kv: project_context's keys and values for kv_batch >= B context rows (the first B
    // serve), or null to project them from context here.
    void forward_embedded(const typename Backend::Context& ctx, CView<T> x, CView<T> emb, CView<T> context,
                          View<T> out, Scratch& scratch, const T* context_kv = nullptr, std::int64_t kv_batch = 0) const;

    // Every cross-attention's keys and values depend on the text context alone: a sampling loop
    // projects them once into kv (context_kv_floats of them) and passes them to each step.
    std::int64_t context_kv_floats(std::int64_t batch, std::int64_t context_len) const;
    void project_context(const typename Backend::Context& ctx, CView<T> context, T* kv) const;

private:
    struct LevelBlock {
        std::optional<ResBlock<Backend, T>> res;
        std::optional<SpatialTransformer<Backend, T>> attn;
        std::optional<Conv2d<Backend, T>> resample;
    };
    // Spatial size of every skip entry and of the activation after each block, for one latent size.
    struct Plan {
        std::vector<Shape> skips;
        std::size_t skip_bytes = 0, activation_bytes = 0, concat_bytes = 0, block_scratch = 0;
    };
    void check_latent(const Shape& x) const;
    Plan plan(const Shape& x, std::int64_t context_len) const;
    // The transformers in the order project_context lays out their keys and values.
    std::vector<const SpatialTransformer<Backend, T>*> transformers() const;
    // kv: the next transformer's keys and values (or null), advanced past them.
    void run_transformer(const typename Backend::Context& ctx, const SpatialTransformer<Backend, T>& st, View<T> x,
                         CView<T> context, Scratch& scratch, const T*& kv, std::int64_t kv_batch) const;
    void run_block(const typename Backend::Context& ctx, const LevelBlock& block, CView<T> in, CView<T> emb,
                   CView<T> context, View<T> out, Scratch& scratch, const T*& kv, std::int64_t kv_batch) const;

    UNetConfig cfg_;
    detail::UNetLayout layout_;
    Linear<Backend, T> time_embed_0_, time_embed_2_;
    std::optional<Linear<Backend, T>> label_emb_0_, label_emb_2_;
    Conv2d<Backend, T> conv_in_;
    std::vector<LevelBlock> input_blocks_, output_blocks_;
    ResBlock<Backend, T> middle_res_0_, middle_res_2_;
    SpatialTransformer<Backend, T> middle_attn_;
    GroupNorm<Backend, T> out_norm_;
    Conv2d<Backend, T> out_conv_;
};

}  // namespace unclip::nn

#include "unclip/nn/unet_impl.hpp"
