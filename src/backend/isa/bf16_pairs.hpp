#pragma once
// bf16 operand pairs for vdpbf16ps (AVX-512 BF16), shared by the packed GEMM and the attention
// kernels: a 32-bit word holds two consecutive k values, rounded to nearest even.
#include <immintrin.h>

#define UNCLIP_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

namespace unclip::detail {

// 16 words (even[i], odd[i]).
UNCLIP_BF16_TARGET inline __m512i bf16_pairs(__m512 even, __m512 odd) {
    // cvtne2ps: 16-bit lanes 0-15 from `even`, 16-31 from `odd`; interleave them into (even, odd) words.
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                                6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(interleave, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(odd, even)));
}

// 32 consecutive floats (lo: elements 0-15, hi: 16-31) as 16 words of consecutive pairs.
UNCLIP_BF16_TARGET inline __m512i bf16_consecutive(__m512 lo, __m512 hi) {
    return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}

}  // namespace unclip::detail
