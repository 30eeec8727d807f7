#pragma once
// Single-precision arithmetic rounded exactly once per operation, whatever the compiler's FMA
// contraction setting (-march=native lets it turn a*b + c into one fma): the product or sum of two
// floats is formed in double and rounded to float, which equals the float operation (53 >= 2*24 + 2
// bits, so the double rounding is innocuous), and the conversion keeps the operations apart. Used
// where a reference's float32 rounding must be reproduced bit for bit.
namespace unclip::sampling::detail {
inline float mul(float a, float b) { return static_cast<float>(static_cast<double>(a) * b); }
inline float add(float a, float b) { return static_cast<float>(static_cast<double>(a) + b); }
inline float sub(float a, float b) { return static_cast<float>(static_cast<double>(a) - b); }
inline float div(float a, float b) { return static_cast<float>(static_cast<double>(a) / b); }
}  // namespace unclip::sampling::detail
