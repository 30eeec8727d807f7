// Bulk dtype conversions. The library is built for baseline x86-64 unless UNCLIP_NATIVE is set, so
// the vector paths are compiled with target attributes and chosen once at run time.
// f16: F16C / AVX-512F hardware conversions are exact (round to nearest even, subnormals kept,
// FTZ/DAZ do not apply to them). bf16: integer rounding in vector registers, because the
// AVX512_BF16 instruction flushes subnormals and would disagree with the scalar path.
#include <cstddef>
#include <cstdint>

#include "unclip/dtype.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define UNCLIP_X86_DISPATCH 1
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns inside its own AVX-512 intrinsic headers (the undefined "__Y" pass-through operand).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace unclip {
namespace {

enum class Isa { portable, f16c, avx512 };

#if UNCLIP_X86_DISPATCH
// CPUID leaf 1, ECX bit 29: clang before 15 does not know "f16c" in __builtin_cpu_supports.
bool cpu_has_f16c() noexcept {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}

Isa detect_isa() noexcept {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return Isa::avx512;
    if (cpu_has_f16c() && __builtin_cpu_supports("avx2")) return Isa::f16c;
    return Isa::portable;
}

__attribute__((target("avx512f,avx512bw"))) void f32_to_f16_avx512(const float* src, Half* dst, std::size_t n) {
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), h);
    }
    for (; i < n; ++i) dst[i] = Half(src[i]);
}

__attribute__((target("avx512f,avx512bw"))) void f16_to_f32_avx512(const Half* src, float* dst, std::size_t n) {
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
    for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

__attribute__((target("avx512f,avx512bw"))) void f32_to_bf16_avx512(const float* src, BFloat16* dst, std::size_t n) {
    const __m512i rounding_bias = _mm512_set1_epi32(0x7fff);
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
    const __m512i inf_bits = _mm512_set1_epi32(0x7f800000);
    const __m512i quiet_bit = _mm512_set1_epi32(0x00400000);
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i bits = _mm512_loadu_si512(src + i);
        const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), one);
        __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(rounding_bias, lsb));
        const __mmask16 is_nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, abs_mask), inf_bits);
        rounded = _mm512_mask_mov_epi32(rounded, is_nan, _mm512_or_si512(bits, quiet_bit));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded, 16)));
    }
    for (; i < n; ++i) dst[i] = BFloat16(src[i]);
}

__attribute__((target("avx512f,avx512bw"))) void bf16_to_f32_avx512(const BFloat16* src, float* dst, std::size_t n) {
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
        _mm512_storeu_si512(dst + i, _mm512_slli_epi32(wide, 16));
    }
    for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

__attribute__((target("avx2,f16c"))) void f32_to_f16_f16c(const float* src, Half* dst, std::size_t n) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
    }
    for (; i < n; ++i) dst[i] = Half(src[i]);
}

__attribute__((target("avx2,f16c"))) void f16_to_f32_f16c(const Half* src, float* dst, std::size_t n) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

__attribute__((target("avx2"))) void bf16_to_f32_avx2(const BFloat16* src, float* dst, std::size_t n) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_slli_epi32(wide, 16));
    }
    for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}
#else
Isa detect_isa() noexcept { return Isa::portable; }
#endif

Isa isa() noexcept {
    static const Isa detected = detect_isa();
    return detected;
}

}  // namespace

const char* convert_isa() noexcept {
    return isa() == Isa::avx512 ? "avx512" : isa() == Isa::f16c ? "f16c" : "portable";
}

void convert(const float* src, Half* dst, std::size_t n) noexcept {
#if UNCLIP_X86_DISPATCH
    if (isa() == Isa::avx512) return f32_to_f16_avx512(src, dst, n);
    if (isa() == Isa::f16c) return f32_to_f16_f16c(src, dst, n);
#endif
    for (std::size_t i = 0; i < n; ++i) dst[i] = Half(src[i]);
}

void convert(const Half* src, float* dst, std::size_t n) noexcept {
#if UNCLIP_X86_DISPATCH
    if (isa() == Isa::avx512) return f16_to_f32_avx512(src, dst, n);
    if (isa() == Isa::f16c) return f16_to_f32_f16c(src, dst, n);
#endif
    for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

void convert(const float* src, BFloat16* dst, std::size_t n) noexcept {
#if UNCLIP_X86_DISPATCH
    if (isa() == Isa::avx512) return f32_to_bf16_avx512(src, dst, n);
#endif
    for (std::size_t i = 0; i < n; ++i) dst[i] = BFloat16(src[i]);
}

void convert(const BFloat16* src, float* dst, std::size_t n) noexcept {
#if UNCLIP_X86_DISPATCH
    if (isa() == Isa::avx512) return bf16_to_f32_avx512(src, dst, n);
    if (isa() == Isa::f16c) return bf16_to_f32_avx2(src, dst, n);
#endif
    for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

}  // namespace unclip
