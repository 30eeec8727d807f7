#pragma once
// Member definitions of nn::AutoencoderKL.
#include <cstring>
#include <vector>

#include "unclip/nn/vae.hpp"

namespace unclip::nn {

namespace detail {
// Two activation buffers used in turn: every step reads one and writes the other.
template <class T>
struct PingPong {
    T* buffers[2];
    int turn = 0;
    PingPong(Scratch& scratch, std::size_t elements) : buffers{scratch.take<T>(elements), scratch.take<T>(elements)} {}
    View<T> fresh(const Shape& shape) {
        turn ^= 1;
        return {buffers[turn], shape};
    }
    View<T> idle(const Shape& shape) const { return {buffers[turn ^ 1], shape}; }
};

// Per-axis tile placement: origins stepping by tile - overlap, the last tile flush with the end.
inline std::vector<std::int64_t> tile_origins(std::int64_t length, std::int64_t tile, std::int64_t overlap, std::int64_t align) {
    if (length <= tile) return {0};
    const std::int64_t stride = std::max<std::int64_t>(align, (tile - overlap) / align * align);
    std::vector<std::int64_t> origins;
    for (std::int64_t o = 0; o + tile < length; o += stride) origins.push_back(o);
    const std::int64_t last = (length - tile) / align * align;
    if (origins.back() != last) origins.push_back(last);
    return origins;
}

// Blending weight of position t in a tile of n along one axis: ramps (t+1)/F up from the start and
// down to the end over F = feather positions.
inline float feather(std::int64_t t, std::int64_t n, std::int64_t f) {
    float w = 1.0f;
    if (f > 0 && t < f) w *= static_cast<float>(t + 1) / static_cast<float>(f);
    if (f > 0 && n - 1 - t < f) w *= static_cast<float>(n - t) / static_cast<float>(f);
    return w;
}

inline void check_tiling(const VaeTiling& t, std::int64_t align) {
    if (t.tile <= 0 || t.overlap < 0 || t.overlap >= t.tile || t.tile % align != 0 || t.overlap % align != 0)
        throw Error(Status::invalid_argument, "VAE tiling: tile " + std::to_string(t.tile) + " and overlap " +
                                                  std::to_string(t.overlap) + " must satisfy 0 <= overlap < tile, multiples of " +
                                                  std::to_string(align));
}
}  // namespace detail

template <class Backend, class T>
typename AutoencoderKL<Backend, T>::Mid AutoencoderKL<Backend, T>::make_mid(const VaeMidWeights<T>& w, std::int64_t width) const {
    return Mid{ResBlock<Backend, T>(detail::vae_res(cfg_, width, width), w.block_1),
               ResBlock<Backend, T>(detail::vae_res(cfg_, width, width), w.block_2),
               GroupNorm<Backend, T>({width, cfg_.groups, cfg_.eps}, w.attn_1.norm),
               MultiHeadAttention<Backend, T>(detail::vae_attention(width), w.attn_1.attn)};
}

template <class Backend, class T>
AutoencoderKL<Backend, T>::AutoencoderKL(const VaeConfig& cfg, const std::optional<VaeEncoderWeights<T>>& encoder,
                                         const std::optional<VaeDecoderWeights<T>>& decoder)
    : cfg_(cfg) {
    if (cfg.ch_mult.empty()) throw Error(Status::invalid_argument, "VAE: ch_mult is empty");
    const std::size_t levels = cfg.ch_mult.size();
    const std::int64_t top = detail::vae_width(cfg, levels - 1);
    if (encoder) {
        const auto& e = *encoder;
        if (e.down.size() != levels) throw Error(Status::bad_model, "VAE encoder: level count disagrees with ch_mult");
        std::vector<Level> down;
        std::int64_t width = cfg.ch;
        for (std::size_t i = 0; i < levels; ++i) {
            Level level;
            const std::int64_t out = detail::vae_width(cfg, i);
            if (e.down[i].blocks.size() != static_cast<std::size_t>(cfg.num_res_blocks))
                throw Error(Status::bad_model, "VAE encoder: block count disagrees with num_res_blocks");
            for (const auto& b : e.down[i].blocks) {
                level.blocks.emplace_back(detail::vae_res(cfg, width, out), b);
                width = out;
            }
            if ((i + 1 != levels) != e.down[i].resample.has_value())
                throw Error(Status::bad_model, "VAE encoder: downsample presence disagrees with the level");
            if (e.down[i].resample) level.resample.emplace(Conv2dConfig{width, width, 3, 2, 0, true, 1}, *e.down[i].resample);
            down.push_back(std::move(level));
        }
        encoder_.emplace(Encoder{Conv2d<Backend, T>({cfg.image_channels, cfg.ch, 3, 1, 1, true}, e.conv_in), std::move(down),
                                 make_mid(e.mid, top), GroupNorm<Backend, T>({top, cfg.groups, cfg.eps}, e.norm_out),
                                 Conv2d<Backend, T>({top, 2 * cfg.z_channels, 3, 1, 1, true}, e.conv_out),
                                 Conv2d<Backend, T>({2 * cfg.z_channels, 2 * cfg.embed_dim, 1, 1, 0, true}, e.quant_conv)});
    }
    if (decoder) {
        const auto& d = *decoder;
        if (d.up.size() != levels) throw Error(Status::bad_model, "VAE decoder: level count disagrees with ch_mult");
        std::vector<Level> up(levels);
        std::int64_t width = top;
        for (std::size_t i = levels; i-- > 0;) {
            const std::int64_t out = detail::vae_width(cfg, i);
            if (d.up[i].blocks.size() != static_cast<std::size_t>(cfg.num_res_blocks + 1))
                throw Error(Status::bad_model, "VAE decoder: block count disagrees with num_res_blocks + 1");
            for (const auto& b : d.up[i].blocks) {
                up[i].blocks.emplace_back(detail::vae_res(cfg, width, out), b);
                width = out;
            }
            if ((i != 0) != d.up[i].resample.has_value())
                throw Error(Status::bad_model, "VAE decoder: upsample presence disagrees with the level");
            if (d.up[i].resample) up[i].resample.emplace(Conv2dConfig{width, width, 3, 1, 1, true}, *d.up[i].resample);
        }
        decoder_.emplace(Decoder{Conv2d<Backend, T>({cfg.embed_dim, cfg.z_channels, 1, 1, 0, true}, d.post_quant_conv),
                                 Conv2d<Backend, T>({cfg.z_channels, top, 3, 1, 1, true}, d.conv_in), make_mid(d.mid, top),
                                 std::move(up), GroupNorm<Backend, T>({cfg.ch * cfg.ch_mult[0], cfg.groups, cfg.eps}, d.norm_out),
                                 Conv2d<Backend, T>({cfg.ch * cfg.ch_mult[0], cfg.image_channels, 3, 1, 1, true}, d.conv_out)});
    }
}

template <class Backend, class T>
std::size_t AutoencoderKL<Backend, T>::mid_scratch_bytes(const Mid& mid, const Shape& x) const {
    const auto n = Scratch::bytes_for<T>(static_cast<std::size_t>(x.numel()));
    const std::int64_t tokens = x[2] * x[3];
    return std::max({mid.block_1.scratch_bytes(x), mid.block_2.scratch_bytes(x),
                     3 * n + mid.attn.scratch_bytes(x[0], tokens, tokens)});
}

template <class Backend, class T>
void AutoencoderKL<Backend, T>::run_mid(const typename Backend::Context& ctx, const Mid& mid, View<T>& cur, View<T>* spare,
                                        Scratch& scratch) const {
    // cur -> block_1 -> spare; attention in place (residual); block_2 -> back into cur's buffer.
    View<T> h{spare->data, cur.shape};
    mid.block_1.forward(ctx, cur, {}, h, scratch);
    {
        Scratch::Frame frame(scratch);
        const std::int64_t batch = h.shape[0], c = h.shape[1], tokens = h.shape[2] * h.shape[3];
        const auto n = static_cast<std::size_t>(h.numel());
        T* normed = scratch.take<T>(n);
        T* seq = scratch.take<T>(n);
        T* attended = scratch.take<T>(n);
        mid.attn_norm.forward(ctx, h.data, normed, batch, tokens, false);
        Backend::channels_to_tokens(ctx, normed, seq, batch, c, tokens);
        mid.attn.forward(ctx, CView<T>{seq, {batch, tokens, c}}, nullptr, View<T>{attended, {batch, tokens, c}}, scratch);
        Backend::tokens_to_channels(ctx, attended, h.data, batch, c, tokens, true);
    }
    mid.block_2.forward(ctx, h, {}, cur, scratch);
}

template <class Backend, class T>
std::size_t AutoencoderKL<Backend, T>::decoder_walk(const Shape& latent, std::size_t* inner_scratch) const {
    if (!decoder_) throw Error(Status::invalid_argument, "VAE: this model has no decoder");
    if (latent.rank() != 4 || latent[1] != cfg_.embed_dim || latent[0] < 1 || latent[2] < 1 || latent[3] < 1)
        throw Error(Status::invalid_argument, "VAE decode: latent " + latent.str() + " is not [B, " +
                                                  std::to_string(cfg_.embed_dim) + ", h, w]");
    const auto& d = *decoder_;
    const std::int64_t batch = latent[0];
    std::int64_t h = latent[2], w = latent[3], width = detail::vae_width(cfg_, cfg_.ch_mult.size() - 1);
    std::size_t largest = 0, inner = 0;
    auto activation = [&](std::int64_t c) { largest = std::max(largest, static_cast<std::size_t>(batch * c * h * w)); };
    activation(cfg_.z_channels);
    activation(width);
    inner = std::max({d.post_quant_conv.scratch_bytes(latent), d.conv_in.scratch_bytes({batch, cfg_.z_channels, h, w}),
                      mid_scratch_bytes(d.mid, {batch, width, h, w})});
    for (std::size_t i = cfg_.ch_mult.size(); i-- > 0;) {
        for (const auto& b : d.up[i].blocks) {
            inner = std::max(inner, b.scratch_bytes({batch, width, h, w}));
            width = b.config().out_channels;
            activation(width);
        }
        if (d.up[i].resample) {
            const Shape low{batch, width, h, w};
            h *= 2;
            w *= 2;
            activation(width);
            const Shape up{batch, width, h, w};
            inner = std::max(inner, detail::conv_reads_upsampled<Backend>(low, up)
                                        ? d.up[i].resample->scratch_bytes(low, false, 2)
                                        : d.up[i].resample->scratch_bytes(up));
        }
    }
    inner = std::max(inner, d.conv_out.scratch_bytes({batch, width, h, w}));
    if (inner_scratch) *inner_scratch = inner;
    return largest;
}

template <class Backend, class T>
std::size_t AutoencoderKL<Backend, T>::decode_scratch_bytes(const Shape& latent) const {
    std::size_t inner = 0;
    const std::size_t largest = decoder_walk(latent, &inner);
    return 2 * Scratch::bytes_for<T>(largest) + inner;
}

template <class Backend, class T>
void AutoencoderKL<Backend, T>::decode(const typename Backend::Context& ctx, CView<T> latent, View<T> image, Scratch& scratch) const {
    const std::size_t largest = decoder_walk(latent.shape, nullptr);
    const auto& d = *decoder_;
    const std::int64_t batch = latent.shape[0], f = cfg_.downscale();
    detail::check_argument_shape("VAE decode", "image", image.shape,
                        {batch, cfg_.image_channels, latent.shape[2] * f, latent.shape[3] * f});
    Scratch::Frame frame(scratch);
    detail::PingPong<T> buffers(scratch, largest);
    auto fresh = [&](const Shape& shape) { return buffers.fresh(shape); };
    std::int64_t h = latent.shape[2], w = latent.shape[3];
    const std::int64_t top = detail::vae_width(cfg_, cfg_.ch_mult.size() - 1);
    View<T> z = fresh({batch, cfg_.z_channels, h, w});
    d.post_quant_conv.forward(ctx, latent, z, scratch);
    View<T> cur = fresh({batch, top, h, w});
    d.conv_in.forward(ctx, z, cur, scratch);
    View<T> spare = buffers.idle(cur.shape);
    run_mid(ctx, d.mid, cur, &spare, scratch);
    for (std::size_t i = cfg_.ch_mult.size(); i-- > 0;) {
        for (const auto& b : d.up[i].blocks) {
            View<T> next = fresh({batch, b.config().out_channels, h, w});
            b.forward(ctx, cur, {}, next, scratch);
            cur = next;
        }
        if (d.up[i].resample) {
            const Shape up_shape{batch, cur.shape[1], 2 * h, 2 * w};
            if (detail::conv_reads_upsampled<Backend>(cur.shape, up_shape)) {
                View<T> next = fresh(up_shape);
                d.up[i].resample->forward_upsampled(ctx, cur, next, scratch);
                cur = next;
            } else {
                View<T> up = fresh(up_shape);
                Backend::upsample_nearest(ctx, cur.data, up.data, batch, cur.shape[1], h, w, 2 * h, 2 * w);
                View<T> next = fresh(up_shape);
                d.up[i].resample->forward(ctx, up, next, scratch);
                cur = next;
            }
            h *= 2;
            w *= 2;
        }
    }
    View<T> normed = fresh(cur.shape);
    d.norm_out.forward(ctx, cur.data, normed.data, batch, h * w, true);
    d.conv_out.forward(ctx, normed, image, scratch);
}

template <class Backend, class T>
std::size_t AutoencoderKL<Backend, T>::encoder_walk(const Shape& image, std::size_t* inner_scratch) const {
    if (!encoder_) throw Error(Status::invalid_argument, "VAE: this model has no encoder");
    const std::int64_t f = cfg_.downscale();
    if (image.rank() != 4 || image[1] != cfg_.image_channels || image[0] < 1 || image[2] < f || image[3] < f ||
        image[2] % f != 0 || image[3] % f != 0)
        throw Error(Status::invalid_argument, "VAE encode: image " + image.str() + " is not [B, " +
                                                  std::to_string(cfg_.image_channels) + ", H, W] with H, W multiples of " +
                                                  std::to_string(f));
    const auto& e = *encoder_;
    const std::int64_t batch = image[0];
    std::int64_t h = image[2], w = image[3], width = cfg_.ch;
    std::size_t largest = 0, inner = e.conv_in.scratch_bytes(image);
    auto activation = [&](std::int64_t c) { largest = std::max(largest, static_cast<std::size_t>(batch * c * h * w)); };
    activation(width);
    for (const auto& level : e.down) {
        for (const auto& b : level.blocks) {
            inner = std::max(inner, b.scratch_bytes({batch, width, h, w}));
            width = b.config().out_channels;
            activation(width);
        }
        if (level.resample) {
            inner = std::max(inner, level.resample->scratch_bytes({batch, width, h, w}));
            h /= 2;
            w /= 2;
        }
    }
    activation(2 * cfg_.z_channels);
    inner = std::max({inner, mid_scratch_bytes(e.mid, {batch, width, h, w}), e.conv_out.scratch_bytes({batch, width, h, w}),
                      e.quant_conv.scratch_bytes({batch, 2 * cfg_.z_channels, h, w})});
    if (inner_scratch) *inner_scratch = inner;
    return largest;
}

template <class Backend, class T>
std::size_t AutoencoderKL<Backend, T>::encode_scratch_bytes(const Shape& image) const {
    std::size_t inner = 0;
    const std::size_t largest = encoder_walk(image, &inner);
    return 2 * Scratch::bytes_for<T>(largest) + inner;
}

template <class Backend, class T>
void AutoencoderKL<Backend, T>::encode(const typename Backend::Context& ctx, CView<T> image, View<T> moments, Scratch& scratch) const {
    const std::size_t largest = encoder_walk(image.shape, nullptr);
    const auto& e = *encoder_;
    const std::int64_t batch = image.shape[0], f = cfg_.downscale();
    detail::check_argument_shape("VAE encode", "moments", moments.shape,
                        {batch, 2 * cfg_.embed_dim, image.shape[2] / f, image.shape[3] / f});
    Scratch::Frame frame(scratch);
    detail::PingPong<T> buffers(scratch, largest);
    auto fresh = [&](const Shape& shape) { return buffers.fresh(shape); };
    std::int64_t h = image.shape[2], w = image.shape[3];
    View<T> cur = fresh({batch, cfg_.ch, h, w});
    e.conv_in.forward(ctx, image, cur, scratch);
    for (const auto& level : e.down) {
        for (const auto& b : level.blocks) {
            View<T> next = fresh({batch, b.config().out_channels, h, w});
            b.forward(ctx, cur, {}, next, scratch);
            cur = next;
        }
        if (level.resample) {
            h /= 2;
            w /= 2;
            View<T> next = fresh({batch, cur.shape[1], h, w});
            level.resample->forward(ctx, cur, next, scratch);
            cur = next;
        }
    }
    View<T> spare = buffers.idle(cur.shape);
    run_mid(ctx, e.mid, cur, &spare, scratch);
    View<T> normed = fresh(cur.shape);
    e.norm_out.forward(ctx, cur.data, normed.data, batch, h * w, true);
    View<T> raw = fresh({batch, 2 * cfg_.z_channels, h, w});
    e.conv_out.forward(ctx, normed, raw, scratch);
    e.quant_conv.forward(ctx, raw, moments, scratch);
}

template <class Backend, class T>
template <class Run>
void AutoencoderKL<Backend, T>::blend_tiles(const typename Backend::Context& ctx, CView<T> in, View<T> out, std::int64_t in_tile, std::int64_t in_overlap,
                                            std::int64_t in_align, std::int64_t scale_num, std::int64_t scale_den,
                                            std::int64_t out_channels, Scratch& scratch, Run&& run) const {
    // Output position p of a tile covering input [o, o + n) maps to input o + p * scale_den / scale_num.
    const std::int64_t batch = in.shape[0], in_c = in.shape[1], in_h = in.shape[2], in_w = in.shape[3];
    const std::int64_t out_h = out.shape[2], out_w = out.shape[3];
    const auto ys = detail::tile_origins(in_h, in_tile, in_overlap, in_align);
    const auto xs = detail::tile_origins(in_w, in_tile, in_overlap, in_align);
    const std::int64_t th = std::min(in_tile, in_h), tw = std::min(in_tile, in_w);
    const std::int64_t oth = th * scale_num / scale_den, otw = tw * scale_num / scale_den;
    const std::int64_t feather = in_overlap * scale_num / scale_den;

    // The tiles run on the backend; cutting and blending happen in host copies (for the CPU
    // backend, plain copies), since tiling is for images whose decode dominates anyway.
    Scratch::Frame frame(scratch);
    T* tile_in = scratch.take<T>(static_cast<std::size_t>(batch * in_c * th * tw));
    T* tile_out = scratch.take<T>(static_cast<std::size_t>(batch * out_channels * oth * otw));
    std::vector<T> in_host(static_cast<std::size_t>(in.numel())), out_host(static_cast<std::size_t>(out.numel()), T(0));
    std::vector<T> tile_in_host(static_cast<std::size_t>(batch * in_c * th * tw));
    std::vector<T> tile_out_host(static_cast<std::size_t>(batch * out_channels * oth * otw));
    std::vector<float> weight(static_cast<std::size_t>(out_h * out_w), 0.0f);
    Backend::download(ctx, in.data, in_host.data(), in.numel());
    for (std::int64_t y0 : ys)
        for (std::int64_t x0 : xs) {
            for (std::int64_t bc = 0; bc < batch * in_c; ++bc)
                for (std::int64_t y = 0; y < th; ++y)
                    std::memcpy(tile_in_host.data() + (bc * th + y) * tw, in_host.data() + (bc * in_h + y0 + y) * in_w + x0,
                                sizeof(T) * static_cast<std::size_t>(tw));
            Backend::upload(ctx, tile_in_host.data(), tile_in, static_cast<std::int64_t>(tile_in_host.size()));
            run(CView<T>{tile_in, {batch, in_c, th, tw}}, View<T>{tile_out, {batch, out_channels, oth, otw}});
            Backend::download(ctx, tile_out, tile_out_host.data(), static_cast<std::int64_t>(tile_out_host.size()));
            const std::int64_t oy0 = y0 * scale_num / scale_den, ox0 = x0 * scale_num / scale_den;
            for (std::int64_t y = 0; y < oth; ++y)
                for (std::int64_t x = 0; x < otw; ++x) {
                    const float m = detail::feather(y, oth, ys.size() > 1 ? feather : 0) * detail::feather(x, otw, xs.size() > 1 ? feather : 0);
                    weight[static_cast<std::size_t>((oy0 + y) * out_w + ox0 + x)] += m;
                    for (std::int64_t bc = 0; bc < batch * out_channels; ++bc)
                        out_host[static_cast<std::size_t>((bc * out_h + oy0 + y) * out_w + ox0 + x)] +=
                            m * tile_out_host[static_cast<std::size_t>((bc * oth + y) * otw + x)];
                }
        }
    for (std::int64_t bc = 0; bc < batch * out_channels; ++bc)
        for (std::int64_t p = 0; p < out_h * out_w; ++p)
            out_host[static_cast<std::size_t>(bc * out_h * out_w + p)] /= weight[static_cast<std::size_t>(p)];
    Backend::upload(ctx, out_host.data(), out.data, out.numel());
}

template <class Backend, class T>
std::size_t AutoencoderKL<Backend, T>::tiled_decode_scratch_bytes(const Shape& latent, const VaeTiling& tiling) const {
    detail::check_tiling(tiling, 1);
    const std::int64_t th = std::min(tiling.tile, latent[2]), tw = std::min(tiling.tile, latent[3]), f = cfg_.downscale();
    const Shape tile{latent[0], latent[1], th, tw};
    return Scratch::bytes_for<T>(static_cast<std::size_t>(tile.numel())) +
           Scratch::bytes_for<T>(static_cast<std::size_t>(latent[0] * cfg_.image_channels * th * f * tw * f)) +
           Scratch::bytes_for<float>(static_cast<std::size_t>(latent[2] * f * latent[3] * f)) + decode_scratch_bytes(tile);
}

template <class Backend, class T>
void AutoencoderKL<Backend, T>::decode_tiled(const typename Backend::Context& ctx, CView<T> latent, View<T> image,
                                             const VaeTiling& tiling, Scratch& scratch) const {
    decoder_walk(latent.shape, nullptr);
    detail::check_tiling(tiling, 1);
    const std::int64_t f = cfg_.downscale();
    detail::check_argument_shape("VAE decode", "image", image.shape,
                        {latent.shape[0], cfg_.image_channels, latent.shape[2] * f, latent.shape[3] * f});
    blend_tiles(ctx, latent, image, tiling.tile, tiling.overlap, 1, f, 1, cfg_.image_channels, scratch,
                [&](CView<T> tile, View<T> out) { decode(ctx, tile, out, scratch); });
}

template <class Backend, class T>
std::size_t AutoencoderKL<Backend, T>::tiled_encode_scratch_bytes(const Shape& image, const VaeTiling& tiling) const {
    const std::int64_t f = cfg_.downscale();
    detail::check_tiling(tiling, f);
    const std::int64_t th = std::min(tiling.tile, image[2]), tw = std::min(tiling.tile, image[3]);
    const Shape tile{image[0], image[1], th, tw};
    return Scratch::bytes_for<T>(static_cast<std::size_t>(tile.numel())) +
           Scratch::bytes_for<T>(static_cast<std::size_t>(image[0] * 2 * cfg_.embed_dim * (th / f) * (tw / f))) +
           Scratch::bytes_for<float>(static_cast<std::size_t>((image[2] / f) * (image[3] / f))) + encode_scratch_bytes(tile);
}

template <class Backend, class T>
void AutoencoderKL<Backend, T>::encode_tiled(const typename Backend::Context& ctx, CView<T> image, View<T> moments,
                                             const VaeTiling& tiling, Scratch& scratch) const {
    encoder_walk(image.shape, nullptr);
    const std::int64_t f = cfg_.downscale();
    detail::check_tiling(tiling, f);
    detail::check_argument_shape("VAE encode", "moments", moments.shape,
                        {image.shape[0], 2 * cfg_.embed_dim, image.shape[2] / f, image.shape[3] / f});
    blend_tiles(ctx, image, moments, tiling.tile, tiling.overlap, f, 1, f, 2 * cfg_.embed_dim, scratch,
                [&](CView<T> tile, View<T> out) { encode(ctx, tile, out, scratch); });
}

}  // namespace unclip::nn
