#pragma once
#include <optional>
#include <string>

#include "unclip/backend/cpu.hpp"
#include "unclip/nn/weights.hpp"

namespace unclip::nn {

struct Conv2dConfig {
    std::int64_t in_channels = 0, out_channels = 0;
    int kernel = 3, stride = 1, padding = 1;  // square kernel, zero padding on every side
    bool bias = true;
    int extra_padding_end = 0;  // more zeros at the bottom and right only (the VAE encoder's downsample)
};

template <class T>
struct Conv2dWeights {
    MatrixView weight;             // [out_channels, in_channels, kernel, kernel], f32, f16 or bf16
    std::optional<CView<T>> bias;  // [out_channels]
};

template <class T>
Conv2dWeights<T> load_conv2d(const WeightMap& map, const std::string& prefix, const Conv2dConfig& cfg) {
    Conv2dWeights<T> w;
    w.weight = map.require_matrix(prefix + "weight", {cfg.out_channels, cfg.in_channels, cfg.kernel, cfg.kernel});
    if (cfg.bias) w.bias = map.require<T>(prefix + "bias", {cfg.out_channels});
    return w;
}

namespace detail {
// Whether an upsampling layer hands the convolution its input unexpanded (Conv2d::forward_upsampled):
// where the backend's convolution reads through the upsampling (kConvReadsUpsampledInput; the CPU
// would only build the upsampled tensor in scratch, on top of the module's own buffers) and the
// target is exactly twice the size (ComfyUI's odd sizes take the general nearest resize).
template <class Backend>
bool conv_reads_upsampled(const Shape& low, const Shape& target) {
    return Backend::kConvReadsUpsampledInput && target[2] == 2 * low[2] && target[3] == 2 * low[3];
}
}  // namespace detail

template <class Backend, class T>
class Conv2d {
public:
    Conv2d(const Conv2dConfig& cfg, const Conv2dWeights<T>& w) : cfg_(cfg), w_(w) {
        detail::check_positive("Conv2d", "in_channels", cfg.in_channels);
        detail::check_positive("Conv2d", "out_channels", cfg.out_channels);
        detail::check_positive("Conv2d", "kernel", cfg.kernel);
        detail::check_positive("Conv2d", "stride", cfg.stride);
        if (cfg.padding < 0 || cfg.extra_padding_end < 0)
            throw Error(Status::invalid_argument, "Conv2d: padding must not be negative");
        detail::check_shape("Conv2d", "weight", w.weight.shape,
                            {cfg.out_channels, cfg.in_channels, cfg.kernel, cfg.kernel});
        if (cfg.bias != w.bias.has_value())
            throw Error(Status::bad_model, cfg.bias ? "Conv2d: bias missing" : "Conv2d: unexpected bias");
        if (w.bias) detail::check_shape("Conv2d", "bias", w.bias->shape, {cfg.out_channels});
    }
    const Conv2dConfig& config() const noexcept { return cfg_; }

    // upsample 2: of the input x upsampled by 2 (see forward).
    Shape output_shape(const Shape& x, int upsample = 1) const {
        const auto args = make_args(x, upsample);
        return {x[0], cfg_.out_channels, args.out_height(), args.out_width()};
    }
    // mapped_input: forward() will be given an input_affine.
    std::size_t scratch_bytes(const Shape& x, bool mapped_input = false, int upsample = 1) const {
        auto args = make_args(x, upsample);
        if (mapped_input) args.input_affine.emplace();
        return Backend::conv2d_scratch_bytes(args);
    }

    // x: [B, in_channels, H, W] -> y: output_shape(x). `accumulate`: y += conv(x). input_affine:
    // the convolution reads silu?(x * scale + shift) per (image, channel) instead of x (a
    // GroupNorm folded in, see GroupNorm::affine).
    void forward(const typename Backend::Context& ctx, CView<T> x, View<T> y, Scratch& scratch, bool accumulate = false,
                 const std::optional<backend::InputAffine>& input_affine = std::nullopt) const {
        run(ctx, x, y, scratch, accumulate, input_affine, 1);
    }
    // y = conv(x nearest-upsampled by 2), without storing the upsampled x where the backend can
    // read through it (the CUDA im2col); y: output_shape(x, 2).
    void forward_upsampled(const typename Backend::Context& ctx, CView<T> x, View<T> y, Scratch& scratch) const {
        run(ctx, x, y, scratch, false, std::nullopt, 2);
    }
    // As forward with `bias` ([out_channels], or nullptr for none) in place of the layer's own, for
    // a caller that folds bias() into something else.
    void forward_with_bias(const typename Backend::Context& ctx, CView<T> x, View<T> y, Scratch& scratch, const T* bias,
                           bool accumulate = false,
                           const std::optional<backend::InputAffine>& input_affine = std::nullopt) const {
        run(ctx, x, y, scratch, accumulate, input_affine, 1, &bias);
    }
    const T* bias() const noexcept { return w_.bias ? w_.bias->data : nullptr; }

private:
    void run(const typename Backend::Context& ctx, CView<T> x, View<T> y, Scratch& scratch, bool accumulate,
             const std::optional<backend::InputAffine>& input_affine, int upsample,
             const T* const* bias_override = nullptr) const {
        auto args = make_args(x.shape, upsample);
        detail::check_argument_shape("Conv2d", "output", y.shape, output_shape(x.shape, upsample));
        if (bias_override) args.bias = *bias_override;
        args.x = x.data;
        args.y = y.data;
        args.accumulate = accumulate;
        args.input_affine = input_affine;
        Backend::conv2d(ctx, args, scratch);
    }

    typename Backend::Conv2dArgs make_args(const Shape& x, int upsample) const {
        if (x.rank() != 4 || x[1] != cfg_.in_channels)
            throw Error(Status::invalid_argument, "Conv2d: input " + x.str() + " is not [B, " +
                                                      std::to_string(cfg_.in_channels) + ", H, W]");
        typename Backend::Conv2dArgs a;
        a.weight = w_.weight.data;
        a.weight_dtype = w_.weight.dtype;
        a.bias = w_.bias ? w_.bias->data : nullptr;
        a.batch = x[0];
        a.in_channels = x[1];
        a.height = x[2] * upsample;
        a.width = x[3] * upsample;
        a.input_upsample = upsample;
        a.out_channels = cfg_.out_channels;
        a.kernel_h = a.kernel_w = cfg_.kernel;
        a.stride = cfg_.stride;
        a.pad_top = a.pad_left = cfg_.padding;
        a.pad_bottom = a.pad_right = cfg_.padding + cfg_.extra_padding_end;
        if (a.height + a.pad_top + a.pad_bottom < cfg_.kernel || a.width + a.pad_left + a.pad_right < cfg_.kernel)
            throw Error(Status::invalid_argument, "Conv2d: input " + x.str() + " is smaller than the kernel");
        return a;
    }

    Conv2dConfig cfg_;
    Conv2dWeights<T> w_;
};

}  // namespace unclip::nn
