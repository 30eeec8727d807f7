#pragma once
#include <string>

#include "unclip/backend/cpu.hpp"
#include "unclip/nn/weights.hpp"

namespace unclip::nn {

struct GroupNormConfig {
    std::int64_t channels = 0;
    int groups = 32;
    float eps = 1e-5f;
};

template <class T>
struct GroupNormWeights {
    CView<T> weight;  // [channels]
    CView<T> bias;    // [channels]
};

template <class T>
GroupNormWeights<T> load_group_norm(const WeightMap& map, const std::string& prefix, const GroupNormConfig& cfg) {
    return {map.require<T>(prefix + "weight", {cfg.channels}), map.require<T>(prefix + "bias", {cfg.channels})};
}

// GroupNorm with an optional SiLU fused into the same pass (the order every UNet/VAE block uses).
template <class Backend, class T>
class GroupNorm {
public:
    GroupNorm(const GroupNormConfig& cfg, const GroupNormWeights<T>& w) : cfg_(cfg), w_(w) {
        detail::check_positive("GroupNorm", "channels", cfg.channels);
        detail::check_positive("GroupNorm", "groups", cfg.groups);
        if (cfg.channels % cfg.groups != 0)
            throw Error(Status::invalid_argument, "GroupNorm: " + std::to_string(cfg.channels) +
                                                      " channels do not split into " + std::to_string(cfg.groups) +
                                                      " groups");
        if (!(cfg.eps > 0.0f)) throw Error(Status::invalid_argument, "GroupNorm: eps must be positive");
        detail::check_shape("GroupNorm", "weight", w.weight.shape, {cfg.channels});
        detail::check_shape("GroupNorm", "bias", w.bias.shape, {cfg.channels});
    }
    const GroupNormConfig& config() const noexcept { return cfg_; }

    // x, y: [B, channels, spatial...] with `spatial` elements per channel; may alias.
    void forward(const typename Backend::Context& ctx, const T* x, T* y, std::int64_t batch, std::int64_t spatial,
                 bool silu) const {
        Backend::group_norm(ctx, x, w_.weight.data, w_.bias.data, y, batch, cfg_.channels, spatial, cfg_.groups,
                            cfg_.eps, silu);
    }
    // The per-(image, channel) map forward() applies: normalised x = x * scale + shift, scale and
    // shift [batch * channels]; for a convolution to apply while it reads x (Conv2d::forward).
    // addend [batch * channels]: the map of GroupNorm(x + addend), still applied to x.
    void affine(const typename Backend::Context& ctx, const T* x, std::int64_t batch, std::int64_t spatial, T* scale,
                T* shift, const T* addend = nullptr) const {
        Backend::group_norm_affine(ctx, x, w_.weight.data, w_.bias.data, batch, cfg_.channels, spatial, cfg_.groups,
                                   cfg_.eps, scale, shift, addend);
    }

private:
    GroupNormConfig cfg_;
    GroupNormWeights<T> w_;
};

}  // namespace unclip::nn
