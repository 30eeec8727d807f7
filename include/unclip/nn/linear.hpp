#pragma once
#include <optional>
#include <string>

#include "unclip/backend/cpu.hpp"
#include "unclip/nn/weights.hpp"

namespace unclip::nn {

struct LinearConfig {
    std::int64_t in_features = 0, out_features = 0;
    bool bias = true;
};

template <class T>
struct LinearWeights {
    MatrixView weight;             // [out_features, in_features], f32, f16 or bf16
    std::optional<CView<T>> bias;  // [out_features]
};

template <class T>
LinearWeights<T> load_linear(const WeightMap& map, const std::string& prefix, const LinearConfig& cfg) {
    LinearWeights<T> w;
    w.weight = map.require_matrix(prefix + "weight", {cfg.out_features, cfg.in_features});
    if (cfg.bias) w.bias = map.require<T>(prefix + "bias", {cfg.out_features});
    return w;
}

// y = x W^T + b over rows: x [rows, in_features] -> y [rows, out_features].
template <class Backend, class T>
class Linear {
public:
    Linear(const LinearConfig& cfg, const LinearWeights<T>& w) : cfg_(cfg), w_(w) {
        detail::check_positive("Linear", "in_features", cfg.in_features);
        detail::check_positive("Linear", "out_features", cfg.out_features);
        detail::check_shape("Linear", "weight", w.weight.shape, {cfg.out_features, cfg.in_features});
        if (cfg.bias != w.bias.has_value())
            throw Error(Status::bad_model, cfg.bias ? "Linear: bias missing" : "Linear: unexpected bias");
        if (w.bias) detail::check_shape("Linear", "bias", w.bias->shape, {cfg.out_features});
    }
    const LinearConfig& config() const noexcept { return cfg_; }

    // `accumulate`: y += x W^T + b instead of y = x W^T + b.
    void forward(const typename Backend::Context& ctx, const T* x, std::int64_t rows, T* y,
                 bool accumulate = false) const {
        Backend::linear(ctx, x, rows, cfg_.in_features, cfg_.out_features, w_.weight.data, w_.weight.dtype,
                        w_.bias ? w_.bias->data : nullptr, y, accumulate);
    }

    DType weight_dtype() const noexcept { return w_.weight.dtype; }

    // As forward, with x already rounded to the weights' type (x_dtype == weight_dtype()), as the
    // backends with Backend::kRoundedLinearInputs let the op before write it.
    void forward_rounded(const typename Backend::Context& ctx, const void* x, DType x_dtype, std::int64_t rows, T* y,
                         bool accumulate = false) const {
        if constexpr (Backend::kRoundedLinearInputs) {
            Backend::linear_rounded(ctx, x, x_dtype, rows, cfg_.in_features, cfg_.out_features, w_.weight.data,
                                    w_.weight.dtype, w_.bias ? w_.bias->data : nullptr, y, accumulate);
        } else {
            (void)ctx, (void)x, (void)x_dtype, (void)rows, (void)y, (void)accumulate;
            throw Error(Status::internal, "Linear: this backend has no rounded inputs");
        }
    }

private:
    LinearConfig cfg_;
    LinearWeights<T> w_;
};

}  // namespace unclip::nn
