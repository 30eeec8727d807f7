#pragma once
// Sinusoidal timestep embedding (LDM util.py timestep_embedding; diffusers Timesteps with
// flip_sin_to_cos=True, freq_shift=0): out = [cos(t f_0..f_{h-1}), sin(t f_0..f_{h-1})] with
// f_i = exp(-ln(10000) i / h), h = dim / 2. Computed in float32 in the same order as PyTorch so
// that the UNet's first layer sees the reference's rounding.
#include <cmath>
#include <cstdint>

namespace unclip::nn {

// timesteps: [batch]; out: [batch, dim]; dim even.
inline void timestep_embedding(const float* timesteps, std::int64_t batch, std::int64_t dim, float* out,
                               float max_period = 10000.0f) {
    const std::int64_t half = dim / 2;
    const float log_period = std::log(max_period);
    for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t i = 0; i < half; ++i) {
            const float exponent = -log_period * static_cast<float>(i) / static_cast<float>(half);
            const float arg = timesteps[b] * std::exp(exponent);
            out[b * dim + i] = std::cos(arg);
            out[b * dim + half + i] = std::sin(arg);
        }
}

}  // namespace unclip::nn
