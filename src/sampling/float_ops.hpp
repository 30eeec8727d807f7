#pragma once
// Single-precision operations rounded to float one at a time, whatever the compiler's contraction
// setting: with FMA available (-march=native) GCC and Clang may fuse a * b + c into one fma, which
// rounds once instead of twice. An empty asm statement makes each result a value the compiler must
// materialise, so no fusion crosses it (writing the operation in double and converting back is not
// enough: GCC narrows that to the float operation and then fuses it). Used where a reference's
// float32 rounding is reproduced bit for bit; fused steps of a reference are written as std::fma.
namespace unclip::sampling::detail {

inline float rounded(float x) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __asm__("" : "+x"(x));
#elif defined(__GNUC__) && defined(__aarch64__)
    __asm__("" : "+w"(x));
#endif
    return x;  // MSVC does not contract unless /fp:fast or /fp:contract is given
}

inline float mul(float a, float b) { return rounded(a * b); }
inline float add(float a, float b) { return rounded(a + b); }
inline float sub(float a, float b) { return rounded(a - b); }
inline float div(float a, float b) { return rounded(a / b); }

}  // namespace unclip::sampling::detail
