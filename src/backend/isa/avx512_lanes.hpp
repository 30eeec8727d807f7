#pragma once
// Masked AVX-512 loads shared by the packed GEMM, Winograd's transforms and the attention kernels
// (files compiled with the avx512 kernel set's flags only), inlined into their loops.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "unclip/dtype.hpp"

namespace unclip::detail {

// The first `count` of 16 lanes (none for count <= 0, all for count >= 16).
inline __attribute__((always_inline)) __mmask16 lanes(std::int64_t count) {
    return count >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << std::max<std::int64_t>(count, 0)) - 1u);
}

// Up to 16 consecutive elements (lanes in `m`) of an f32, f16 or bf16 array, as fp32; other lanes 0.
inline __attribute__((always_inline)) __m512 load_widened(const void* base, DType dtype, std::int64_t index, __mmask16 m) {
    if (dtype == DType::f32) return _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + index);
    const __m256i bits = _mm256_maskz_loadu_epi16(m, static_cast<const std::uint16_t*>(base) + index);
    if (dtype == DType::f16) return _mm512_cvtph_ps(bits);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));  // bf16: the high half of an fp32
}

}  // namespace unclip::detail
