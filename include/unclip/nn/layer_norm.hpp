#pragma once
#include <string>

#include "unclip/backend/cpu.hpp"
#include "unclip/nn/weights.hpp"

namespace unclip::nn {

struct LayerNormConfig {
    std::int64_t dim = 0;
    float eps = 1e-5f;
};

template <class T>
struct LayerNormWeights {
    CView<T> weight;  // [dim]
    CView<T> bias;    // [dim]
};

template <class T>
LayerNormWeights<T> load_layer_norm(const WeightMap& map, const std::string& prefix, const LayerNormConfig& cfg) {
    return {map.require<T>(prefix + "weight", {cfg.dim}), map.require<T>(prefix + "bias", {cfg.dim})};
}

// LayerNorm over the last dimension of [rows, dim].
template <class Backend, class T>
class LayerNorm {
public:
    LayerNorm(const LayerNormConfig& cfg, const LayerNormWeights<T>& w) : cfg_(cfg), w_(w) {
        detail::check_positive("LayerNorm", "dim", cfg.dim);
        if (!(cfg.eps > 0.0f)) throw Error(Status::invalid_argument, "LayerNorm: eps must be positive");
        detail::check_shape("LayerNorm", "weight", w.weight.shape, {cfg.dim});
        detail::check_shape("LayerNorm", "bias", w.bias.shape, {cfg.dim});
    }
    const LayerNormConfig& config() const noexcept { return cfg_; }

    // x, y: [rows, dim]; may alias.
    void forward(const typename Backend::Context& ctx, const T* x, T* y, std::int64_t rows) const {
        Backend::layer_norm(ctx, x, w_.weight.data, w_.bias.data, y, rows, cfg_.dim, cfg_.eps);
    }

    // y: [rows, dim] rounded to y_dtype (f16 or bf16), for linear layers' forward_rounded
    // (backends with Backend::kRoundedLinearInputs).
    void forward_rounded(const typename Backend::Context& ctx, const T* x, void* y, DType y_dtype,
                         std::int64_t rows) const {
        if constexpr (Backend::kRoundedLinearInputs) {
            Backend::layer_norm_rounded(ctx, x, w_.weight.data, w_.bias.data, y, y_dtype, rows, cfg_.dim, cfg_.eps);
        } else {
            (void)ctx, (void)x, (void)y, (void)y_dtype, (void)rows;
            throw Error(Status::internal, "LayerNorm: this backend has no rounded outputs");
        }
    }

private:
    LayerNormConfig cfg_;
    LayerNormWeights<T> w_;
};

}  // namespace unclip::nn
