#pragma once
// Member definitions of nn::UNet (kept apart so that unet.hpp reads as the interface).
#include <cstring>

#include "unclip/nn/unet.hpp"

namespace unclip::nn {

template <class Backend, class T>
UNet<Backend, T>::UNet(const UNetConfig& cfg, const UNetWeights<T>& w)
    : cfg_(cfg),
      layout_(detail::unet_layout(cfg)),
      time_embed_0_({cfg.model_channels, cfg.time_embed_dim(), true}, w.time_embed_0),
      time_embed_2_({cfg.time_embed_dim(), cfg.time_embed_dim(), true}, w.time_embed_2),
      conv_in_({cfg.in_channels, cfg.model_channels, 3, 1, 1, true}, w.conv_in),
      middle_res_0_(detail::unet_res(cfg, layout_.middle_channels, layout_.middle_channels), w.middle_res_0),
      middle_res_2_(detail::unet_res(cfg, layout_.middle_channels, layout_.middle_channels), w.middle_res_2),
      middle_attn_(detail::unet_transformer(cfg, layout_.middle_channels), w.middle_attn),
      out_norm_({cfg.model_channels, cfg.groups, 1e-5f}, w.out_norm),
      out_conv_({cfg.model_channels, cfg.out_channels, 3, 1, 1, true}, w.out_conv) {
    const std::int64_t ted = cfg.time_embed_dim();
    if ((cfg.adm_in_channels > 0) != (w.label_emb_0.has_value() && w.label_emb_2.has_value()))
        throw Error(Status::bad_model, cfg.adm_in_channels > 0 ? "UNet: label_emb missing (adm_in_channels > 0)"
                                                               : "UNet: unexpected label_emb (adm_in_channels is 0)");
    if (w.label_emb_0) {
        label_emb_0_.emplace(LinearConfig{cfg.adm_in_channels, ted, true}, *w.label_emb_0);
        label_emb_2_.emplace(LinearConfig{ted, ted, true}, *w.label_emb_2);
    }
    if (w.input_blocks.size() != layout_.input_blocks.size() || w.output_blocks.size() != layout_.output_blocks.size())
        throw Error(Status::bad_model, "UNet: block count disagrees with the config");
    auto make = [&](const detail::UNetBlockSpec& s, const UNetLevelBlockWeights<T>& bw) {
        LevelBlock b;
        if (s.downsample) {
            if (!bw.resample) throw Error(Status::bad_model, "UNet: downsample weights missing");
            b.resample.emplace(Conv2dConfig{s.in_channels, s.out_channels, 3, 2, 1, true}, *bw.resample);
            return b;
        }
        if (!bw.res) throw Error(Status::bad_model, "UNet: ResBlock weights missing");
        b.res.emplace(detail::unet_res(cfg, s.in_channels, s.out_channels), *bw.res);
        if (s.attn != bw.attn.has_value()) throw Error(Status::bad_model, "UNet: transformer presence disagrees with the config");
        if (bw.attn) b.attn.emplace(detail::unet_transformer(cfg, s.out_channels), *bw.attn);
        if (s.upsample != bw.resample.has_value()) throw Error(Status::bad_model, "UNet: upsample presence disagrees with the config");
        if (bw.resample) b.resample.emplace(Conv2dConfig{s.out_channels, s.out_channels, 3, 1, 1, true}, *bw.resample);
        return b;
    };
    for (std::size_t i = 0; i < layout_.input_blocks.size(); ++i) input_blocks_.push_back(make(layout_.input_blocks[i], w.input_blocks[i]));
    for (std::size_t i = 0; i < layout_.output_blocks.size(); ++i) output_blocks_.push_back(make(layout_.output_blocks[i], w.output_blocks[i]));
}

template <class Backend, class T>
void UNet<Backend, T>::check_latent(const Shape& x) const {
    if (x.rank() != 4 || x[1] != cfg_.in_channels || x[0] < 1 || x[2] < 1 || x[3] < 1)
        throw Error(Status::invalid_argument, "UNet: latent " + x.str() + " is not [B, " + std::to_string(cfg_.in_channels) + ", h, w]");
}

template <class Backend, class T>
typename UNet<Backend, T>::Plan UNet<Backend, T>::plan(const Shape& x, std::int64_t context_len) const {
    check_latent(x);
    const std::int64_t batch = x[0];
    Plan p;
    auto shape = [&](std::int64_t c, std::int64_t h, std::int64_t w) { return Shape{batch, c, h, w}; };
    auto bytes = [](const Shape& s) { return Scratch::bytes_for<T>(static_cast<std::size_t>(s.numel())); };
    auto grow = [](std::size_t& slot, std::size_t value) { slot = std::max(slot, value); };

    std::int64_t h = x[2], w = x[3];
    Shape cur = shape(cfg_.model_channels, h, w);
    p.skips.push_back(cur);
    grow(p.block_scratch, conv_in_.scratch_bytes(x));
    for (std::size_t i = 0; i < input_blocks_.size(); ++i) {
        const auto& b = input_blocks_[i];
        const auto& s = layout_.input_blocks[i];
        if (s.downsample) {
            grow(p.block_scratch, b.resample->scratch_bytes(cur));
            h = (h + 1) / 2;
            w = (w + 1) / 2;
        } else {
            grow(p.block_scratch, b.res->scratch_bytes(cur));
            if (b.attn) grow(p.block_scratch, b.attn->scratch_bytes(shape(s.out_channels, h, w), context_len));
        }
        cur = shape(s.out_channels, h, w);
        p.skips.push_back(cur);
    }
    grow(p.activation_bytes, bytes(cur));
    grow(p.block_scratch, middle_res_0_.scratch_bytes(cur));
    grow(p.block_scratch, middle_attn_.scratch_bytes(cur, context_len));
    std::vector<Shape> pending = p.skips;
    for (std::size_t i = 0; i < output_blocks_.size(); ++i) {
        const auto& b = output_blocks_[i];
        const auto& s = layout_.output_blocks[i];
        pending.pop_back();
        const Shape cat = shape(s.in_channels, h, w);
        grow(p.concat_bytes, bytes(cat));
        grow(p.block_scratch, b.res->scratch_bytes(cat));
        cur = shape(s.out_channels, h, w);
        grow(p.activation_bytes, bytes(cur));
        if (b.attn) grow(p.block_scratch, b.attn->scratch_bytes(cur, context_len));
        if (s.upsample) {
            // ComfyUI resizes to the next skip's exact size, so odd sizes survive the round trip.
            const Shape low = cur;
            h = pending.back()[2];
            w = pending.back()[3];
            const Shape up = shape(s.out_channels, h, w);
            grow(p.concat_bytes, bytes(up));
            grow(p.activation_bytes, bytes(up));
            grow(p.block_scratch, detail::conv_reads_upsampled<Backend>(low, up) ? b.resample->scratch_bytes(low, false, 2)
                                                                               : b.resample->scratch_bytes(up));
        }
    }
    grow(p.block_scratch, out_conv_.scratch_bytes(cur));
    for (const Shape& s : p.skips) p.skip_bytes += bytes(s);
    return p;
}

template <class Backend, class T>
std::size_t UNet<Backend, T>::scratch_bytes(const Shape& x, std::int64_t context_len) const {
    const Plan p = plan(x, context_len);
    const auto emb = Scratch::bytes_for<T>(static_cast<std::size_t>(x[0] * cfg_.time_embed_dim()));
    return p.skip_bytes + 2 * p.activation_bytes + p.concat_bytes + 3 * emb + p.block_scratch;
}

template <class Backend, class T>
std::vector<const SpatialTransformer<Backend, T>*> UNet<Backend, T>::transformers() const {
    std::vector<const SpatialTransformer<Backend, T>*> all;
    for (const auto& b : input_blocks_)
        if (b.attn) all.push_back(&*b.attn);
    all.push_back(&middle_attn_);
    for (const auto& b : output_blocks_)
        if (b.attn) all.push_back(&*b.attn);
    return all;
}

template <class Backend, class T>
std::int64_t UNet<Backend, T>::context_kv_floats(std::int64_t batch, std::int64_t context_len) const {
    std::int64_t total = 0;
    for (const auto* t : transformers()) total += t->context_kv_floats(batch, context_len);
    return total;
}

template <class Backend, class T>
void UNet<Backend, T>::project_context(const typename Backend::Context& ctx, CView<T> context, T* kv) const {
    if (context.shape.rank() != 3 || context.shape[0] < 1 || context.shape[2] != cfg_.context_dim)
        throw Error(Status::invalid_argument, "UNet: context " + context.shape.str() + " is not [B, L, " +
                                                  std::to_string(cfg_.context_dim) + "]");
    for (const auto* t : transformers()) {
        t->project_context(ctx, context, kv);
        kv += t->context_kv_floats(context.shape[0], context.shape[1]);
    }
}

template <class Backend, class T>
void UNet<Backend, T>::run_transformer(const typename Backend::Context& ctx, const SpatialTransformer<Backend, T>& st,
                                       View<T> x, CView<T> context, Scratch& scratch, const T*& kv,
                                       std::int64_t kv_batch) const {
    st.forward(ctx, x, context, x, scratch, kv, kv_batch);
    if (kv) kv += st.context_kv_floats(kv_batch, context.shape[1]);
}

template <class Backend, class T>
void UNet<Backend, T>::run_block(const typename Backend::Context& ctx, const LevelBlock& block, CView<T> in,
                                 CView<T> emb, CView<T> context, View<T> out, Scratch& scratch, const T*& kv,
                                 std::int64_t kv_batch) const {
    if (block.res) {
        block.res->forward(ctx, in, emb, out, scratch);
        if (block.attn) run_transformer(ctx, *block.attn, out, context, scratch, kv, kv_batch);
    } else {
        block.resample->forward(ctx, in, out, scratch);
    }
}

template <class Backend, class T>
void UNet<Backend, T>::forward(const typename Backend::Context& ctx, CView<T> x, const float* timesteps,
                               CView<T> context, const T* y, View<T> out, Scratch& scratch) const {
    check_latent(x.shape);
    const std::int64_t batch = x.shape[0];
    Scratch::Frame frame(scratch);
    const View<T> emb{scratch.take<T>(static_cast<std::size_t>(batch * cfg_.time_embed_dim())), {batch, cfg_.time_embed_dim()}};
    embed(ctx, timesteps, y, emb, scratch);
    forward_embedded(ctx, x, emb, context, out, scratch);
}

template <class Backend, class T>
void UNet<Backend, T>::embed(const typename Backend::Context& ctx, const float* timesteps, const T* y, View<T> emb,
                             Scratch& scratch) const {
    const std::int64_t ted = cfg_.time_embed_dim();
    if (emb.shape.rank() != 2 || emb.shape[0] < 1 || emb.shape[1] != ted)
        throw Error(Status::invalid_argument, "UNet: embedding " + emb.shape.str() + " is not [B, " + std::to_string(ted) + "]");
    const std::int64_t batch = emb.shape[0];
    if (label_emb_0_ && !y) throw Error(Status::invalid_argument, "UNet: this model needs the ADM vector y");
    Scratch::Frame frame(scratch);
    // [B, model_channels] sinusoid -> [B, 4*model_channels].
    T* temb = scratch.take<T>(static_cast<std::size_t>(batch * ted));
    T* hidden = scratch.take<T>(static_cast<std::size_t>(batch * ted));
    Backend::timestep_embedding(ctx, timesteps, batch, cfg_.model_channels, temb);
    time_embed_0_.forward(ctx, temb, batch, hidden);
    Backend::silu(ctx, hidden, hidden, batch * ted);
    time_embed_2_.forward(ctx, hidden, batch, emb.data);
    if (label_emb_0_) {
        label_emb_0_->forward(ctx, y, batch, hidden);
        Backend::silu(ctx, hidden, hidden, batch * ted);
        label_emb_2_->forward(ctx, hidden, batch, emb.data, /*accumulate=*/true);
    }
}

template <class Backend, class T>
void UNet<Backend, T>::forward_embedded(const typename Backend::Context& ctx, CView<T> x, CView<T> emb,
                                        CView<T> context, View<T> out, Scratch& scratch, const T* context_kv,
                                        std::int64_t kv_batch) const {
    const Plan p = plan(x.shape, context.shape.rank() == 3 ? context.shape[1] : 1);
    const std::int64_t batch = x.shape[0];
    if (context.shape.rank() != 3 || context.shape[0] != batch || context.shape[2] != cfg_.context_dim)
        throw Error(Status::invalid_argument, "UNet: context " + context.shape.str() + " is not [" + std::to_string(batch) +
                                                  ", L, " + std::to_string(cfg_.context_dim) + "]");
    if (emb.shape != Shape{batch, cfg_.time_embed_dim()})
        throw Error(Status::invalid_argument, "UNet: embedding " + emb.shape.str() + " is not [" + std::to_string(batch) +
                                                  ", " + std::to_string(cfg_.time_embed_dim()) + "]");
    detail::check_argument_shape("UNet", "output", out.shape, Shape{batch, cfg_.out_channels, x.shape[2], x.shape[3]});
    if (context_kv && kv_batch < batch)
        throw Error(Status::invalid_argument, "UNet: keys and values projected for " + std::to_string(kv_batch) +
                                                  " context rows, the latent has " + std::to_string(batch));
    const T* kv = context_kv;

    Scratch::Frame frame(scratch);
    std::vector<View<T>> skips;
    for (const Shape& s : p.skips) skips.push_back({scratch.take<T>(static_cast<std::size_t>(s.numel())), s});
    T* buffers[2] = {scratch.take<T>(p.activation_bytes / sizeof(T)), scratch.take<T>(p.activation_bytes / sizeof(T))};
    T* cat = scratch.take<T>(p.concat_bytes / sizeof(T));

    conv_in_.forward(ctx, x, skips[0], scratch);
    for (std::size_t i = 0; i < input_blocks_.size(); ++i)
        run_block(ctx, input_blocks_[i], skips[i], emb, context, skips[i + 1], scratch, kv, kv_batch);

    // Middle, then the decoder side alternating between the two activation buffers.
    int free_buffer = 0;
    auto next_buffer = [&](const Shape& shape) {
        View<T> v{buffers[free_buffer], shape};
        free_buffer ^= 1;
        return v;
    };
    View<T> cur = next_buffer(skips.back().shape);
    middle_res_0_.forward(ctx, skips.back(), emb, cur, scratch);
    run_transformer(ctx, middle_attn_, cur, context, scratch, kv, kv_batch);
    {
        View<T> next = next_buffer(cur.shape);
        middle_res_2_.forward(ctx, cur, emb, next, scratch);
        cur = next;
    }
    for (std::size_t i = 0; i < output_blocks_.size(); ++i) {
        const auto& block = output_blocks_[i];
        const View<T> skip = skips.back();
        skips.pop_back();
        const std::int64_t c1 = cur.shape[1], c2 = skip.shape[1], spatial = skip.shape[2] * skip.shape[3];
        if (cur.shape[2] != skip.shape[2] || cur.shape[3] != skip.shape[3])
            throw Error(Status::internal, "UNet: decoder " + cur.shape.str() + " and skip " + skip.shape.str() + " disagree");
        const View<T> joined{cat, {batch, c1 + c2, skip.shape[2], skip.shape[3]}};  // [h, skip] along channels
        Backend::concat_channels(ctx, cur.data, c1, skip.data, c2, cat, batch, spatial);
        View<T> next = next_buffer({batch, layout_.output_blocks[i].out_channels, skip.shape[2], skip.shape[3]});
        block.res->forward(ctx, joined, emb, next, scratch);
        if (block.attn) run_transformer(ctx, *block.attn, next, context, scratch, kv, kv_batch);
        cur = next;
        if (block.resample) {
            const Shape& target = skips.back().shape;
            View<T> conv_out = next_buffer({batch, cur.shape[1], target[2], target[3]});
            if (detail::conv_reads_upsampled<Backend>(cur.shape, target)) {
                block.resample->forward_upsampled(ctx, cur, conv_out, scratch);
            } else {
                const View<T> up{cat, conv_out.shape};
                Backend::upsample_nearest(ctx, cur.data, up.data, batch, cur.shape[1], cur.shape[2], cur.shape[3], target[2],
                                          target[3]);
                block.resample->forward(ctx, up, conv_out, scratch);
            }
            cur = conv_out;
        }
    }
    View<T> normed = next_buffer(cur.shape);
    out_norm_.forward(ctx, cur.data, normed.data, batch, cur.shape[2] * cur.shape[3], true);
    out_conv_.forward(ctx, normed, out, scratch);
}

}  // namespace unclip::nn
