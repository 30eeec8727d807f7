#pragma once
// The argument structs of the convolution and attention primitives, the same for every backend
// (CpuBackend::Conv2dArgs and CudaBackend::Conv2dArgs name these). Pointers are the backend's
// memory: host for the CPU, device for CUDA.
#include <cstdint>
#include <optional>
#include <string>

#include "unclip/dtype.hpp"
#include "unclip/error.hpp"

namespace unclip::backend {

// A per-(image, channel) affine map, optionally followed by SiLU: GroupNorm (+ SiLU) in the form a
// convolution can apply while it reads its input. scale and shift: [batch * channels].
struct InputAffine {
    const float* scale = nullptr;
    const float* shift = nullptr;
    bool silu = false;
};

struct Conv2dArgs {
    const float* x = nullptr;         // [B, C_in, H, W]
    const void* weight = nullptr;     // [C_out, C_in, kernel_h, kernel_w]
    DType weight_dtype = DType::f32;  // f32, f16 or bf16
    const float* bias = nullptr;      // [C_out] or nullptr
    float* y = nullptr;               // [B, C_out, H_out, W_out]
    std::int64_t batch = 0, in_channels = 0, height = 0, width = 0, out_channels = 0;
    int kernel_h = 1, kernel_w = 1, stride = 1, pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
    bool accumulate = false;  // y += conv(x) instead of y = conv(x)
    // When set, the convolution reads silu?(x * scale[b, c] + shift[b, c]) in place of x (the
    // zero padding stays zero): a GroupNorm folded into it. conv2d_scratch_bytes needs only to
    // know that it is set; conv2d needs both pointers.
    std::optional<InputAffine> input_affine;
    // 2: the convolution reads x nearest-upsampled by 2 (the upsampling layers of the UNet and
    // VAE) without the upsampled tensor being stored: x is then [B, C_in, H / 2, W / 2], and
    // height and width give the upsampled H and W (both even). 1: x as it is.
    int input_upsample = 1;
    // Throws Error(Status::invalid_argument), the message starting with `who`, unless
    // input_upsample is 1, or 2 to an even height and width.
    void check_input_upsample(const char* who) const {
        if (input_upsample == 1 || (input_upsample == 2 && height % 2 == 0 && width % 2 == 0)) return;
        throw Error(Status::invalid_argument, std::string(who) + ": input upsampling by " + std::to_string(input_upsample) +
                                                  " to " + std::to_string(height) + "x" + std::to_string(width) +
                                                  " (1, or 2 to an even size)");
    }
    std::int64_t out_height() const noexcept { return (height + pad_top + pad_bottom - kernel_h) / stride + 1; }
    std::int64_t out_width() const noexcept { return (width + pad_left + pad_right - kernel_w) / stride + 1; }
};

// Scaled dot-product attention per head: q, k, v and out are [batch, tokens, heads * head_dim] with
// arbitrary token and batch strides (so q, k and v may be column ranges of one fused projection).
struct AttentionArgs {
    const float* q = nullptr;
    const float* k = nullptr;
    const float* v = nullptr;
    float* out = nullptr;
    std::int64_t batch = 0, q_len = 0, kv_len = 0;
    int heads = 0, head_dim = 0;
    std::int64_t q_stride = 0, k_stride = 0, v_stride = 0, out_stride = 0;  // elements between tokens
    std::int64_t q_batch_stride = 0, k_batch_stride = 0, v_batch_stride = 0, out_batch_stride = 0;
    bool causal = false;  // query i sees keys j <= i
    float scale = 0.0f;   // 0: 1 / sqrt(head_dim)
};

}  // namespace unclip::backend
