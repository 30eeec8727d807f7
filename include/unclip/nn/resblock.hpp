#pragma once
// The residual block of the UNet (LDM openaimodel.py ResBlock; diffusers ResnetBlock2D) and of the
// VAE (LDM model.py ResnetBlock, emb_channels 0):
//   h = conv1(SiLU(GN(x))) [+ Linear(SiLU(emb))[:, :, None, None]]
//   y = skip(x) + conv2(SiLU(GN(h)))      skip = identity, or a 1x1 conv when channels change
#include <algorithm>
#include <optional>
#include <string>

#include "unclip/nn/conv2d.hpp"
#include "unclip/nn/group_norm.hpp"
#include "unclip/nn/linear.hpp"

namespace unclip::nn {

struct ResBlockConfig {
    std::int64_t in_channels = 0, out_channels = 0;
    std::int64_t emb_channels = 1280;  // 0: no timestep embedding (the VAE's blocks)
    int groups = 32;
    float eps = 1e-5f;
};

// Views into the mapped checkpoint or the device weight buffer; nothing here is owned.
template <class T>
struct ResBlockWeights {
    GroupNormWeights<T> in_norm;           // in_layers.0
    Conv2dWeights<T> in_conv;              // in_layers.2
    std::optional<LinearWeights<T>> emb_proj;  // emb_layers.1, iff emb_channels > 0
    GroupNormWeights<T> out_norm;          // out_layers.0
    Conv2dWeights<T> out_conv;             // out_layers.3
    std::optional<Conv2dWeights<T>> skip;  // skip_connection, iff in_channels != out_channels
};

namespace detail {
inline GroupNormConfig resblock_norm(const ResBlockConfig& c, std::int64_t channels) {
    return {channels, c.groups, c.eps};
}
inline Conv2dConfig resblock_conv(std::int64_t in, std::int64_t out) { return {in, out, 3, 1, 1, true}; }
inline Conv2dConfig resblock_skip(const ResBlockConfig& c) { return {c.in_channels, c.out_channels, 1, 1, 0, true}; }
inline LinearConfig resblock_emb(const ResBlockConfig& c) { return {c.emb_channels, c.out_channels, true}; }
}  // namespace detail

// Keys as in the LDM checkpoint, under `prefix` (e.g. "model.diffusion_model.input_blocks.1.0.").
template <class T>
ResBlockWeights<T> load_resblock(const WeightMap& map, const std::string& prefix, const ResBlockConfig& cfg) {
    ResBlockWeights<T> w;
    w.in_norm = load_group_norm<T>(map, prefix + "in_layers.0.", detail::resblock_norm(cfg, cfg.in_channels));
    w.in_conv = load_conv2d<T>(map, prefix + "in_layers.2.", detail::resblock_conv(cfg.in_channels, cfg.out_channels));
    if (cfg.emb_channels > 0) w.emb_proj = load_linear<T>(map, prefix + "emb_layers.1.", detail::resblock_emb(cfg));
    w.out_norm = load_group_norm<T>(map, prefix + "out_layers.0.", detail::resblock_norm(cfg, cfg.out_channels));
    w.out_conv =
        load_conv2d<T>(map, prefix + "out_layers.3.", detail::resblock_conv(cfg.out_channels, cfg.out_channels));
    if (cfg.in_channels != cfg.out_channels)
        w.skip = load_conv2d<T>(map, prefix + "skip_connection.", detail::resblock_skip(cfg));
    return w;
}

// VAE names (LDM model.py ResnetBlock): norm1, conv1, norm2, conv2, nin_shortcut.
template <class T>
ResBlockWeights<T> load_vae_resblock(const WeightMap& map, const std::string& prefix, const ResBlockConfig& cfg) {
    if (cfg.emb_channels != 0) throw Error(Status::invalid_argument, "VAE ResnetBlock: emb_channels must be 0");
    ResBlockWeights<T> w;
    w.in_norm = load_group_norm<T>(map, prefix + "norm1.", detail::resblock_norm(cfg, cfg.in_channels));
    w.in_conv = load_conv2d<T>(map, prefix + "conv1.", detail::resblock_conv(cfg.in_channels, cfg.out_channels));
    w.out_norm = load_group_norm<T>(map, prefix + "norm2.", detail::resblock_norm(cfg, cfg.out_channels));
    w.out_conv = load_conv2d<T>(map, prefix + "conv2.", detail::resblock_conv(cfg.out_channels, cfg.out_channels));
    if (cfg.in_channels != cfg.out_channels)
        w.skip = load_conv2d<T>(map, prefix + "nin_shortcut.", detail::resblock_skip(cfg));
    return w;
}

template <class Backend, class T>
class ResBlock {
public:
    // Throws Error(Status::bad_model) naming the weight whose shape disagrees with cfg.
    ResBlock(const ResBlockConfig& cfg, const ResBlockWeights<T>& w)
        : cfg_(cfg),
          in_norm_(detail::resblock_norm(cfg, cfg.in_channels), w.in_norm),
          in_conv_(detail::resblock_conv(cfg.in_channels, cfg.out_channels), w.in_conv),
          out_norm_(detail::resblock_norm(cfg, cfg.out_channels), w.out_norm),
          out_conv_(detail::resblock_conv(cfg.out_channels, cfg.out_channels), w.out_conv) {
        const bool needs_skip = cfg.in_channels != cfg.out_channels;
        if (needs_skip != w.skip.has_value())
            throw Error(Status::bad_model, needs_skip ? "ResBlock: skip_connection missing (channels change)"
                                                      : "ResBlock: unexpected skip_connection (channels equal)");
        if (w.skip) skip_.emplace(detail::resblock_skip(cfg), *w.skip);
        if ((cfg.emb_channels > 0) != w.emb_proj.has_value())
            throw Error(Status::bad_model, cfg.emb_channels > 0 ? "ResBlock: emb_layers missing" : "ResBlock: unexpected emb_layers");
        if (w.emb_proj) emb_proj_.emplace(detail::resblock_emb(cfg), *w.emb_proj);
    }
    const ResBlockConfig& config() const noexcept { return cfg_; }

    // Bytes of Scratch that forward() needs for input shape x (the caller provides them).
    std::size_t scratch_bytes(const Shape& x) const {
        const Shape out_shape{x[0], cfg_.out_channels, x[2], x[3]};
        const auto n_out = static_cast<std::size_t>(out_shape.numel());
        const std::size_t convs = std::max({in_conv_.scratch_bytes(x, true), out_conv_.scratch_bytes(out_shape, true),
                                            skip_ ? skip_->scratch_bytes(x) : std::size_t{0}});
        return Scratch::bytes_for<T>(n_out) + 2 * Scratch::bytes_for<T>(static_cast<std::size_t>(x[0] * affine_channels())) +
               Scratch::bytes_for<T>(static_cast<std::size_t>(x[0] * (cfg_.emb_channels + cfg_.out_channels))) + convs;
    }

    // x: [B, in_channels, h, w], emb: [B, emb_channels] (ignored when emb_channels is 0)
    // -> y: [B, out_channels, h, w]; y must not alias x.
    // const: one block may serve several threads, each with its own context and scratch.
    // Each GroupNorm + SiLU is folded into the convolution after it (GroupNorm::affine), so no
    // normalised copy of x or h is written; h is never given its bias or the embedding either.
    void forward(const typename Backend::Context& ctx, CView<T> x, CView<T> emb, View<T> y, Scratch& scratch) const {
        if (x.shape.rank() != 4 || x.shape[1] != cfg_.in_channels)
            throw Error(Status::invalid_argument, "ResBlock: input " + x.shape.str() + " is not [B, " +
                                                      std::to_string(cfg_.in_channels) + ", h, w]");
        const std::int64_t batch = x.shape[0], spatial = x.shape[2] * x.shape[3];
        if (emb_proj_) detail::check_argument_shape("ResBlock", "emb", emb.shape, {batch, cfg_.emb_channels});
        const Shape out_shape{batch, cfg_.out_channels, x.shape[2], x.shape[3]};
        detail::check_argument_shape("ResBlock", "output", y.shape, out_shape);

        Scratch::Frame frame(scratch);
        View<T> h{scratch.take<T>(static_cast<std::size_t>(out_shape.numel())), out_shape};
        T* scale = scratch.take<T>(static_cast<std::size_t>(batch * affine_channels()));
        T* shift = scratch.take<T>(static_cast<std::size_t>(batch * affine_channels()));
        T* emb_act = scratch.take<T>(static_cast<std::size_t>(batch * (cfg_.emb_channels + cfg_.out_channels)));
        T* emb_out = emb_act + batch * cfg_.emb_channels;

        in_norm_.affine(ctx, x.data, batch, spatial, scale, shift);
        in_conv_.forward_with_bias(ctx, x, h, scratch, nullptr, false, backend::InputAffine{scale, shift, true});
        // What h lacks, per (image, channel): the first convolution's bias plus the timestep
        // embedding's projection. The second GroupNorm takes it into its statistics and its map,
        // so no pass over h adds it.
        const T* bias = in_conv_.bias();
        const T* addend = nullptr;
        if (emb_proj_) {
            Backend::silu(ctx, emb.data, emb_act, batch * cfg_.emb_channels);
            emb_proj_->forward(ctx, emb_act, batch, emb_out);
            if (bias) Backend::add_row_bias(ctx, emb_out, bias, batch, cfg_.out_channels);
            addend = emb_out;
        } else if (bias) {
            for (std::int64_t b = 0; b < batch; ++b) Backend::copy(ctx, bias, emb_out + b * cfg_.out_channels, cfg_.out_channels);
            addend = emb_out;
        }
        out_norm_.affine(ctx, h.data, batch, spatial, scale, shift, addend);
        const backend::InputAffine out_map{scale, shift, true};
        const T* skip_bias = skip_ ? skip_->bias() : nullptr;
        const T* out_bias = out_conv_.bias();
        if (skip_bias && out_bias) {
            // Both biases in the skip convolution's one pass (emb_out is free again: the map above
            // has read the addend).
            T* both = emb_out;
            Backend::copy(ctx, out_bias, both, cfg_.out_channels);
            Backend::add(ctx, skip_bias, both, cfg_.out_channels);
            skip_->forward_with_bias(ctx, x, y, scratch, both);
            out_conv_.forward_with_bias(ctx, h, y, scratch, nullptr, /*accumulate=*/true, out_map);
            return;
        }
        if (!skip_ && out_bias) {
            // The residual is x itself: its copy takes the second convolution's bias.
            Backend::add_channel_bias(ctx, x.data, out_bias, y.data, batch, cfg_.out_channels, spatial);
            out_conv_.forward_with_bias(ctx, h, y, scratch, nullptr, /*accumulate=*/true, out_map);
            return;
        }
        if (skip_) skip_->forward(ctx, x, y, scratch);
        else Backend::copy(ctx, x.data, y.data, x.numel());
        out_conv_.forward(ctx, h, y, scratch, /*accumulate=*/true, out_map);
    }

private:
    // The scale/shift buffers serve both norms in turn.
    std::int64_t affine_channels() const noexcept { return std::max(cfg_.in_channels, cfg_.out_channels); }

    ResBlockConfig cfg_;
    GroupNorm<Backend, T> in_norm_;
    Conv2d<Backend, T> in_conv_;
    std::optional<Linear<Backend, T>> emb_proj_;
    GroupNorm<Backend, T> out_norm_;
    Conv2d<Backend, T> out_conv_;
    std::optional<Conv2d<Backend, T>> skip_;
};

}  // namespace unclip::nn
