#pragma once
// AutoencoderKL of SD 2.x (LDM model.py Encoder/Decoder, diffusers AutoencoderKL): the decoder turns
// a latent into an image in [-1, 1] (not clamped), the encoder turns an image into the posterior
// moments (mean, log-variance). Latents here are unscaled: multiply by scaling_factor (0.18215)
// before sampling and divide after. Tiled variants bound the memory of large images.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "unclip/nn/attention.hpp"
#include "unclip/nn/conv2d.hpp"
#include "unclip/nn/group_norm.hpp"
#include "unclip/nn/resblock.hpp"

namespace unclip::nn {

struct VaeConfig {
    std::int64_t image_channels = 3, ch = 128;
    std::vector<int> ch_mult{1, 2, 4, 4};
    int num_res_blocks = 2;
    std::int64_t z_channels = 4, embed_dim = 4;
    int groups = 32;
    float eps = 1e-6f;
    float scaling_factor = 0.18215f;
    int downscale() const noexcept { return 1 << (ch_mult.size() - 1); }
};

// The mid-block self-attention (LDM AttnBlock): one head over all h*w positions, q/k/v/proj_out
// stored as 1x1 convolutions.
template <class T>
struct VaeAttentionWeights {
    GroupNormWeights<T> norm;
    AttentionWeights<T> attn;
};

template <class T>
struct VaeMidWeights {
    ResBlockWeights<T> block_1, block_2;
    VaeAttentionWeights<T> attn_1;
};

template <class T>
struct VaeLevelWeights {
    std::vector<ResBlockWeights<T>> blocks;
    std::optional<Conv2dWeights<T>> resample;  // encoder: downsample.conv; decoder: upsample.conv
};

template <class T>
struct VaeEncoderWeights {
    Conv2dWeights<T> conv_in;
    std::vector<VaeLevelWeights<T>> down;  // encoder.down.{i}
    VaeMidWeights<T> mid;
    GroupNormWeights<T> norm_out;
    Conv2dWeights<T> conv_out;             // -> 2 * z_channels
    Conv2dWeights<T> quant_conv;           // 1x1, 2z -> 2 embed
};

template <class T>
struct VaeDecoderWeights {
    Conv2dWeights<T> post_quant_conv;      // 1x1, embed -> z
    Conv2dWeights<T> conv_in;
    VaeMidWeights<T> mid;
    std::vector<VaeLevelWeights<T>> up;    // decoder.up.{i}, i = 0 is the full-resolution level
    GroupNormWeights<T> norm_out;
    Conv2dWeights<T> conv_out;
};

namespace detail {
inline ResBlockConfig vae_res(const VaeConfig& c, std::int64_t in, std::int64_t out) { return {in, out, 0, c.groups, c.eps}; }
inline AttentionConfig vae_attention(std::int64_t channels) { return {channels, 0, 1, true, false}; }
inline std::int64_t vae_width(const VaeConfig& c, std::size_t level) { return c.ch * c.ch_mult[level]; }

// A matrix like any Linear's, so that a GPU copy keeps it in half precision for the tensor cores.
template <class T>
LinearWeights<T> pointwise_as_linear(const WeightMap& map, const std::string& prefix, std::int64_t channels) {
    const MatrixView w = map.require_matrix(prefix + "weight", {channels, channels, 1, 1});
    return {MatrixView{w.data, w.dtype, {channels, channels}}, map.require<T>(prefix + "bias", {channels})};
}

template <class T>
VaeMidWeights<T> load_vae_mid(const WeightMap& map, const std::string& prefix, const VaeConfig& c, std::int64_t width) {
    VaeMidWeights<T> m;
    m.block_1 = load_vae_resblock<T>(map, prefix + "block_1.", vae_res(c, width, width));
    m.block_2 = load_vae_resblock<T>(map, prefix + "block_2.", vae_res(c, width, width));
    const std::string a = prefix + "attn_1.";
    m.attn_1.norm = load_group_norm<T>(map, a + "norm.", {width, c.groups, c.eps});
    m.attn_1.attn.q = pointwise_as_linear<T>(map, a + "q.", width);
    m.attn_1.attn.k = pointwise_as_linear<T>(map, a + "k.", width);
    m.attn_1.attn.v = pointwise_as_linear<T>(map, a + "v.", width);
    m.attn_1.attn.out = pointwise_as_linear<T>(map, a + "proj_out.", width);
    return m;
}
}  // namespace detail

// Keys as in the LDM checkpoint under `prefix` (normally "" for the first_stage_model. component).
template <class T>
VaeEncoderWeights<T> load_vae_encoder(const WeightMap& map, const std::string& prefix, const VaeConfig& c) {
    VaeEncoderWeights<T> w;
    const std::string e = prefix + "encoder.";
    w.conv_in = load_conv2d<T>(map, e + "conv_in.", {c.image_channels, c.ch, 3, 1, 1, true});
    std::int64_t width = c.ch;
    for (std::size_t i = 0; i < c.ch_mult.size(); ++i) {
        VaeLevelWeights<T> level;
        const std::int64_t out = detail::vae_width(c, i);
        for (int j = 0; j < c.num_res_blocks; ++j) {
            level.blocks.push_back(load_vae_resblock<T>(map, e + "down." + std::to_string(i) + ".block." + std::to_string(j) + ".",
                                                        detail::vae_res(c, width, out)));
            width = out;
        }
        if (i + 1 != c.ch_mult.size())
            level.resample = load_conv2d<T>(map, e + "down." + std::to_string(i) + ".downsample.conv.", {width, width, 3, 2, 0, true, 1});
        w.down.push_back(level);
    }
    w.mid = detail::load_vae_mid<T>(map, e + "mid.", c, width);
    w.norm_out = load_group_norm<T>(map, e + "norm_out.", {width, c.groups, c.eps});
    w.conv_out = load_conv2d<T>(map, e + "conv_out.", {width, 2 * c.z_channels, 3, 1, 1, true});
    w.quant_conv = load_conv2d<T>(map, prefix + "quant_conv.", {2 * c.z_channels, 2 * c.embed_dim, 1, 1, 0, true});
    return w;
}

template <class T>
VaeDecoderWeights<T> load_vae_decoder(const WeightMap& map, const std::string& prefix, const VaeConfig& c) {
    VaeDecoderWeights<T> w;
    const std::string d = prefix + "decoder.";
    w.post_quant_conv = load_conv2d<T>(map, prefix + "post_quant_conv.", {c.embed_dim, c.z_channels, 1, 1, 0, true});
    std::int64_t width = detail::vae_width(c, c.ch_mult.size() - 1);
    w.conv_in = load_conv2d<T>(map, d + "conv_in.", {c.z_channels, width, 3, 1, 1, true});
    w.mid = detail::load_vae_mid<T>(map, d + "mid.", c, width);
    w.up.resize(c.ch_mult.size());
    for (std::size_t i = c.ch_mult.size(); i-- > 0;) {
        VaeLevelWeights<T>& level = w.up[i];
        const std::int64_t out = detail::vae_width(c, i);
        for (int j = 0; j <= c.num_res_blocks; ++j) {
            level.blocks.push_back(load_vae_resblock<T>(map, d + "up." + std::to_string(i) + ".block." + std::to_string(j) + ".",
                                                        detail::vae_res(c, width, out)));
            width = out;
        }
        if (i != 0) level.resample = load_conv2d<T>(map, d + "up." + std::to_string(i) + ".upsample.conv.", {width, width, 3, 1, 1, true});
    }
    w.norm_out = load_group_norm<T>(map, d + "norm_out.", {width, c.groups, c.eps});
    w.conv_out = load_conv2d<T>(map, d + "conv_out.", {width, c.image_channels, 3, 1, 1, true});
    return w;
}

// Tiling of the VAE: tiles overlap by `overlap` and are blended with weights that ramp linearly
// over the overlap on every side (ComfyUI's tiled_scale), so seams vanish.
struct VaeTiling {
    std::int64_t tile = 64;     // latent units for decode (512 px), pixels for encode
    std::int64_t overlap = 8;   // same units (64 px for decode)
};

template <class Backend, class T>
class AutoencoderKL {
public:
    // Either part may be absent (a decode-only pipeline skips the encoder weights).
    AutoencoderKL(const VaeConfig& cfg, const std::optional<VaeEncoderWeights<T>>& encoder,
                  const std::optional<VaeDecoderWeights<T>>& decoder);
    const VaeConfig& config() const noexcept { return cfg_; }
    bool has_encoder() const noexcept { return encoder_.has_value(); }
    bool has_decoder() const noexcept { return decoder_.has_value(); }

    // latent: [B, embed_dim, h, w] unscaled -> image: [B, image_channels, h * f, w * f], f = downscale().
    std::size_t decode_scratch_bytes(const Shape& latent) const;
    void decode(const typename Backend::Context& ctx, CView<T> latent, View<T> image, Scratch& scratch) const;

    // image: [B, image_channels, H, W] in [-1, 1], H and W multiples of downscale()
    // -> moments: [B, 2 * embed_dim, H / f, W / f] (mean channels first, then log-variance).
    std::size_t encode_scratch_bytes(const Shape& image) const;
    void encode(const typename Backend::Context& ctx, CView<T> image, View<T> moments, Scratch& scratch) const;

    // The same in overlapping tiles; scratch as decode_scratch_bytes / encode_scratch_bytes of one tile
    // plus the blending weights (tiled_*_scratch_bytes).
    std::size_t tiled_decode_scratch_bytes(const Shape& latent, const VaeTiling& tiling) const;
    void decode_tiled(const typename Backend::Context& ctx, CView<T> latent, View<T> image, const VaeTiling& tiling,
                      Scratch& scratch) const;
    std::size_t tiled_encode_scratch_bytes(const Shape& image, const VaeTiling& tiling) const;
    void encode_tiled(const typename Backend::Context& ctx, CView<T> image, View<T> moments, const VaeTiling& tiling,
                      Scratch& scratch) const;

private:
    struct Mid {
        ResBlock<Backend, T> block_1, block_2;
        GroupNorm<Backend, T> attn_norm;
        MultiHeadAttention<Backend, T> attn;
    };
    struct Level {
        std::vector<ResBlock<Backend, T>> blocks;
        std::optional<Conv2d<Backend, T>> resample;
    };
    struct Encoder {
        Conv2d<Backend, T> conv_in;
        std::vector<Level> down;
        Mid mid;
        GroupNorm<Backend, T> norm_out;
        Conv2d<Backend, T> conv_out, quant_conv;
    };
    struct Decoder {
        Conv2d<Backend, T> post_quant_conv, conv_in;
        Mid mid;
        std::vector<Level> up;
        GroupNorm<Backend, T> norm_out;
        Conv2d<Backend, T> conv_out;
    };
    Mid make_mid(const VaeMidWeights<T>& w, std::int64_t width) const;
    // Largest activation (elements) of a decode/encode of this shape; the sub-modules' scratch in *inner.
    std::size_t decoder_walk(const Shape& latent, std::size_t* inner_scratch) const;
    std::size_t encoder_walk(const Shape& image, std::size_t* inner_scratch) const;
    // Runs `run(tile_in, tile_out)` over overlapping tiles of `in` and blends the results into `out`.
    template <class Run>
    void blend_tiles(const typename Backend::Context& ctx, CView<T> in, View<T> out, std::int64_t in_tile, std::int64_t in_overlap, std::int64_t in_align,
                     std::int64_t scale_num, std::int64_t scale_den, std::int64_t out_channels, Scratch& scratch,
                     Run&& run) const;
    std::size_t mid_scratch_bytes(const Mid& mid, const Shape& x) const;
    void run_mid(const typename Backend::Context& ctx, const Mid& mid, View<T>& cur, View<T>* spare, Scratch& scratch) const;

    VaeConfig cfg_;
    std::optional<Encoder> encoder_;
    std::optional<Decoder> decoder_;
};

}  // namespace unclip::nn

#include "unclip/nn/vae_impl.hpp"
