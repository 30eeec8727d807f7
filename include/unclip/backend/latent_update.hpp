#pragma once
// The element-wise arithmetic of the samplers, the CFG denoiser and inpainting masks, written once
// for the CPU's loop (src/sampling/latent_ops.cpp) and the CUDA kernel (cuda/latent.cu), so that a
// sampling loop can run on the GPU without a host round trip per step. Each kind keeps the
// operation order of the reference it transcribes (comfy/k_diffusion/sampling.py,
// comfy/extra_samplers/uni_pc.py, comfy/samplers.py): the GPU then reproduces the CPU's float32
// results up to the CPU compiler's fused multiply-adds.
#include <cstdint>

#if defined(__CUDACC__)
#define UNCLIP_HOST_DEVICE __host__ __device__
#else
#define UNCLIP_HOST_DEVICE
#endif

namespace unclip::backend {

// out[i] for i in [0, n), from the inputs x0 = in[0][i], x1 = in[1][i], ... and the constants c.
enum class LatentUpdate : int {
    copy,                    // x0
    scale,                   // x0 * c0
    divide,                  // x0 / c0
    difference_over,         // (x0 - x1) / c0
    euler,                   // x0 + ((x1 - x2) / c0) * c1                     (base, x, denoised)
    euler_noisy,             // (x0 + ((x0 - x1) / c0) * c1) + (x2 * c2) * c3   (x, denoised, noise)
    heun,                    // x0 + (((x0 - x1) / c0 + (x2 - x3) / c1) / 2) * c2  (x, D, x2, D2)
    combine,                 // c0 * x0 + c1 * x1
    combine_nested,          // c0 * x0 + c1 * (c2 * x1 + c3 * x2)
    add_scaled_difference,   // x0 + c0 * (x1 - x2)
    data_prediction,         // (x0 - c0 * ((x1 - x2) / c1)) / c2   (UniPC: x, x_k, D(x_k); sigma_vp, t, alpha)
    uni_pc,                  // x0 - c0 * (x1 * c1 + x2 * c2 [first `count`] + c3 * (x3 - x4) [if in[3]])
    cfg_input,               // in[0][i % period] / c0   (the model's rows: x / sqrt(sigma^2 + 1), repeated)
    cfg_denoised,            // D from x (x0) and the model output (in[1]: positive rows, then negative)
    hold_sample,             // x0 * x1 + (x2 + c0 * x3) * (1 - x1)   (x, mask, latent, noise; sigma)
    hold_prediction,         // x0 * x1 + x2 * (1 - x1)               (prediction, mask, latent)
};

struct LatentUpdateArgs {
    LatentUpdate kind = LatentUpdate::copy;
    float* out = nullptr;           // may alias an input read at the same index
    const float* in[5] = {};
    float c[4] = {};
    std::int64_t n = 0;
    std::int64_t period = 0;        // cfg_input: values per copy of x; cfg_denoised: values per half
    int count = 0;                  // uni_pc: differences (0..2) in in[1], in[2]; in[3] and in[4] set: corrector
    bool v_prediction = false;      // cfg_denoised: v (else eps); c0 = 1 / (sigma^2 + 1), c1 = sigma,
    bool guided = false;            //   c2 = sqrt(sigma^2 + 1), c3 = cfg scale; guided: negative rows follow
};

template <LatentUpdate K>
UNCLIP_HOST_DEVICE inline float latent_update_at(const LatentUpdateArgs& u, std::int64_t i) {
    const float* const* in = u.in;
    const float* c = u.c;
    if constexpr (K == LatentUpdate::copy) {
        return in[0][i];
    } else if constexpr (K == LatentUpdate::scale) {
        return in[0][i] * c[0];
    } else if constexpr (K == LatentUpdate::divide) {
        return in[0][i] / c[0];
    } else if constexpr (K == LatentUpdate::difference_over) {
        return (in[0][i] - in[1][i]) / c[0];
    } else if constexpr (K == LatentUpdate::euler) {
        return in[0][i] + ((in[1][i] - in[2][i]) / c[0]) * c[1];
    } else if constexpr (K == LatentUpdate::euler_noisy) {
        const float x = in[0][i];
        return (x + ((x - in[1][i]) / c[0]) * c[1]) + (in[2][i] * c[2]) * c[3];
    } else if constexpr (K == LatentUpdate::heun) {
        const float x = in[0][i];
        const float d = (x - in[1][i]) / c[0], d2 = (in[2][i] - in[3][i]) / c[1];
        return x + ((d + d2) / 2.0f) * c[2];
    } else if constexpr (K == LatentUpdate::combine) {
        return c[0] * in[0][i] + c[1] * in[1][i];
    } else if constexpr (K == LatentUpdate::combine_nested) {
        return c[0] * in[0][i] + c[1] * (c[2] * in[1][i] + c[3] * in[2][i]);
    } else if constexpr (K == LatentUpdate::add_scaled_difference) {
        return in[0][i] + c[0] * (in[1][i] - in[2][i]);
    } else if constexpr (K == LatentUpdate::data_prediction) {
        return (in[0][i] - c[0] * ((in[1][i] - in[2][i]) / c[1])) / c[2];
    } else if constexpr (K == LatentUpdate::uni_pc) {
        float residual = 0.0f;
        if (u.count > 0) residual += in[1][i] * c[1];
        if (u.count > 1) residual += in[2][i] * c[2];
        if (in[3] != nullptr) residual = residual + c[3] * (in[3][i] - in[4][i]);
        return in[0][i] - c[0] * residual;
    } else if constexpr (K == LatentUpdate::cfg_input) {
        return in[0][i % u.period] / c[0];
    } else if constexpr (K == LatentUpdate::cfg_denoised) {
        const float x = in[0][i];
        const auto to_denoised = [&](float out) {
            return u.v_prediction ? x * c[0] - out * c[1] / c[2] : x - out * c[1];
        };
        const float positive = to_denoised(in[1][i]);
        if (!u.guided) return positive;
        const float negative = to_denoised(in[1][u.period + i]);
        return negative + (positive - negative) * c[3];
    } else if constexpr (K == LatentUpdate::hold_sample) {
        const float m = in[1][i];
        return in[0][i] * m + (in[2][i] + c[0] * in[3][i]) * (1.0f - m);
    } else {
        static_assert(K == LatentUpdate::hold_prediction, "every kind has a formula");
        const float m = in[1][i];
        return in[0][i] * m + in[2][i] * (1.0f - m);
    }
}

// Calls fn.template run<K>() for the kind named; false for a value outside the enum.
template <class Fn>
inline bool dispatch_latent_update(LatentUpdate kind, Fn& fn) {
    switch (kind) {
        case LatentUpdate::copy: fn.template run<LatentUpdate::copy>(); return true;
        case LatentUpdate::scale: fn.template run<LatentUpdate::scale>(); return true;
        case LatentUpdate::divide: fn.template run<LatentUpdate::divide>(); return true;
        case LatentUpdate::difference_over: fn.template run<LatentUpdate::difference_over>(); return true;
        case LatentUpdate::euler: fn.template run<LatentUpdate::euler>(); return true;
        case LatentUpdate::euler_noisy: fn.template run<LatentUpdate::euler_noisy>(); return true;
        case LatentUpdate::heun: fn.template run<LatentUpdate::heun>(); return true;
        case LatentUpdate::combine: fn.template run<LatentUpdate::combine>(); return true;
        case LatentUpdate::combine_nested: fn.template run<LatentUpdate::combine_nested>(); return true;
        case LatentUpdate::add_scaled_difference: fn.template run<LatentUpdate::add_scaled_difference>(); return true;
        case LatentUpdate::data_prediction: fn.template run<LatentUpdate::data_prediction>(); return true;
        case LatentUpdate::uni_pc: fn.template run<LatentUpdate::uni_pc>(); return true;
        case LatentUpdate::cfg_input: fn.template run<LatentUpdate::cfg_input>(); return true;
        case LatentUpdate::cfg_denoised: fn.template run<LatentUpdate::cfg_denoised>(); return true;
        case LatentUpdate::hold_sample: fn.template run<LatentUpdate::hold_sample>(); return true;
        case LatentUpdate::hold_prediction: fn.template run<LatentUpdate::hold_prediction>(); return true;
    }
    return false;
}

}  // namespace unclip::backend
