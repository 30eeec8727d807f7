#pragma once
// GroupNorm's per-channel affine map (and SiLU) on the CPU, shared by CpuBackend::group_norm and
// the convolution's input_affine, so that both write the same bits.
#include <cmath>
#include <cstdint>

namespace unclip::detail {

inline float affine_silu(float x, float scale, float shift, bool silu) {
    const float v = x * scale + shift;
    return silu ? v / (1.0f + std::exp(-v)) : v;
}

// scale = rstd * gamma, shift = beta - mean * scale for channels [c0, c0 + n). With `added` (the
// statistics were of x + added[c]), the map still takes x: shift = beta - (mean - added[c]) * scale.
inline void group_affine(double mean, double rstd, const float* gamma, const float* beta, std::int64_t c0,
                         std::int64_t n, float* scale, float* shift, const float* added = nullptr) {
    for (std::int64_t c = 0; c < n; ++c) {
        scale[c] = static_cast<float>(rstd) * gamma[c0 + c];
        const float centre = added ? static_cast<float>(mean) - added[c] : static_cast<float>(mean);
        shift[c] = beta[c0 + c] - centre * scale[c];
    }
}

}  // namespace unclip::detail
