#pragma once
// Storage types and their conversions. Arithmetic always runs in float; Half and BFloat16 are
// only storage. Scalar conversions are exact IEEE round-to-nearest-even and header-only; the bulk
// conversions use F16C / AVX-512 when the CPU has them and give bit-identical results.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "unclip/detail/export.hpp"

namespace unclip {

enum class DType : std::uint8_t { f32, f16, bf16 };

constexpr std::size_t dtype_size(DType dtype) noexcept { return dtype == DType::f32 ? 4 : 2; }
constexpr std::string_view dtype_name(DType dtype) noexcept {
    return dtype == DType::f32 ? "F32" : dtype == DType::f16 ? "F16" : "BF16";  // safetensors spelling
}

namespace detail {
inline std::uint32_t float_bits(float value) noexcept {
    std::uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits;
}
inline float bits_float(std::uint32_t bits) noexcept {
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
}

// Binary16 from binary32 by integer arithmetic, so that the result does not depend on the FPU's
// rounding or flush-to-zero mode.
inline std::uint16_t float_to_half_bits(float value) noexcept {
    const std::uint32_t bits = float_bits(value);
    const std::uint32_t sign = (bits >> 16) & 0x8000u;
    const std::uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude >= 0x7f800000u) {  // inf stays inf; NaN stays a quiet NaN with its top payload
        return static_cast<std::uint16_t>(
            sign | (magnitude > 0x7f800000u ? 0x7e00u | ((magnitude >> 13) & 0x3ffu) : 0x7c00u));
    }
    const int exponent = static_cast<int>(magnitude >> 23);
    if (exponent >= 143) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 2^16: overflow
    std::uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;  // 24 significant bits
    int shift;                    // how many low bits of the 24-bit significand are dropped
    std::uint32_t half_exponent;  // biased binary16 exponent of the result before rounding
    if (exponent >= 113) {        // a normal binary16 number
        shift = 13;
        half_exponent = static_cast<std::uint32_t>(exponent - 112);
    } else {                      // binary16 subnormal: unit 2^-24
        shift = 126 - exponent;
        half_exponent = 0;
        if (shift > 24) return static_cast<std::uint16_t>(sign);  // below 2^-25: rounds to zero
    }
    const std::uint32_t kept = mantissa >> shift;
    const std::uint32_t dropped = mantissa & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1);
    // The implicit bit of a normal number lands in the exponent field, hence the "- 1".
    std::uint32_t result = half_exponent == 0 ? kept : ((half_exponent - 1u) << 10) + kept;
    if (dropped > halfway || (dropped == halfway && (result & 1u))) ++result;  // carries into exponent
    return static_cast<std::uint16_t>(sign | result);
}

inline float half_bits_to_float(std::uint16_t half) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(half & 0x8000u) << 16;
    const std::uint32_t exponent = (half >> 10) & 0x1fu;
    const std::uint32_t mantissa = half & 0x3ffu;
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24 is exact in binary32
        const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
        return bits_float(sign | float_bits(magnitude));
    }
    if (exponent == 31) return bits_float(sign | 0x7f800000u | (mantissa << 13));
    return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

inline std::uint16_t float_to_bfloat16_bits(float value) noexcept {
    const std::uint32_t bits = float_bits(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
    return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

inline float bfloat16_bits_to_float(std::uint16_t value) noexcept {
    return bits_float(static_cast<std::uint32_t>(value) << 16);
}
}  // namespace detail

// IEEE binary16 storage.
struct Half {
    std::uint16_t bits = 0;
    Half() = default;
    explicit Half(float value) noexcept : bits(detail::float_to_half_bits(value)) {}
    static Half from_bits(std::uint16_t raw) noexcept {
        Half h;
        h.bits = raw;
        return h;
    }
    explicit operator float() const noexcept { return detail::half_bits_to_float(bits); }
};

// bfloat16 storage: the top half of a binary32.
struct BFloat16 {
    std::uint16_t bits = 0;
    BFloat16() = default;
    explicit BFloat16(float value) noexcept : bits(detail::float_to_bfloat16_bits(value)) {}
    static BFloat16 from_bits(std::uint16_t raw) noexcept {
        BFloat16 b;
        b.bits = raw;
        return b;
    }
    explicit operator float() const noexcept { return detail::bfloat16_bits_to_float(bits); }
};

static_assert(sizeof(Half) == 2 && sizeof(BFloat16) == 2, "storage types must be 2 bytes");

template <class T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::f32; };
template <> struct DTypeOf<Half> { static constexpr DType value = DType::f16; };
template <> struct DTypeOf<BFloat16> { static constexpr DType value = DType::bf16; };
template <class T> inline constexpr DType dtype_of = DTypeOf<T>::value;

// Bulk conversions over n elements; source and destination must not overlap. Results are
// bit-identical to the scalar conversions above on every CPU.
UNCLIP_CXX_API void convert(const float* src, Half* dst, std::size_t n) noexcept;
UNCLIP_CXX_API void convert(const Half* src, float* dst, std::size_t n) noexcept;
UNCLIP_CXX_API void convert(const float* src, BFloat16* dst, std::size_t n) noexcept;
UNCLIP_CXX_API void convert(const BFloat16* src, float* dst, std::size_t n) noexcept;

// Which vector path the bulk conversions take on this CPU: "avx512", "f16c" or "portable".
UNCLIP_CXX_API const char* convert_isa() noexcept;

}  // namespace unclip
