#include "unclip/sampling/rng.hpp"

#include <cmath>
#include <cstring>
#include <string>

#include "sampling/float_ops.hpp"
#include "unclip/error.hpp"

namespace unclip::sampling {

namespace {

using detail::add;
using detail::mul;
using detail::rounded;
using detail::sub;

inline std::uint32_t bits(float x) {
    std::uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    return u;
}
inline float from_bits(std::uint32_t u) {
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}

// One lane of avx_mathfun.h log256_ps (Cephes logf, as PyTorch ships it), for x in (0, 1].
// PyTorch compiles its AVX2 kernels with -mfma, and GCC fuses a multiply into the add or subtract
// that is its only use (taking the first such multiply in program order when both operands are
// products): those steps are std::fma here. Checked bit for bit against torch 2.15.
float avx2_log(float x) {
    const float min_norm_pos = from_bits(0x00800000u);
    x = x < min_norm_pos ? min_norm_pos : x;
    auto imm0 = static_cast<std::int32_t>(bits(x) >> 23);
    x = from_bits((bits(x) & ~0x7f800000u) | bits(0.5f));
    imm0 -= 0x7f;
    float e = add(static_cast<float>(imm0), 1.0f);
    const bool below = x < static_cast<float>(0.707106781186547524);
    const float tmp0 = below ? x : 0.0f;
    x = sub(x, 1.0f);
    e = sub(e, below ? 1.0f : 0.0f);
    x = add(x, tmp0);
    const float z = mul(x, x);
    // The constants are double literals rounded to float, as the header's initialisers are.
    static const double p[9] = {7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1,
                                -1.2420140846E-1, +1.4249322787E-1, -1.6668057665E-1,
                                +2.0000714765E-1, -2.4999993993E-1, +3.3333331174E-1};
    float y = static_cast<float>(p[0]);
    for (int i = 1; i < 9; ++i) y = rounded(std::fma(y, x, static_cast<float>(p[i])));
    y = mul(y, x);
    y = rounded(std::fma(y, z, mul(e, static_cast<float>(-2.12194440e-4))));  // y*z comes first
    y = sub(y, mul(z, 0.5f));  // z * 0.5 is exact: fused or not, one rounding
    x = add(x, y);
    return rounded(std::fma(e, 0.693359375f, x));
}

// One lane of avx_mathfun.h sincos256_ps (Cephes sinf/cosf), for x >= 0, fused as above.
void avx2_sincos(float x, float* s, float* c) {
    std::uint32_t sign_sin = bits(x) & 0x80000000u;
    x = from_bits(bits(x) & 0x7fffffffu);
    float y = mul(x, static_cast<float>(1.27323954473516));  // 4/pi
    auto j = static_cast<std::int32_t>(y);                     // cvttps: truncation
    j = (j + 1) & ~1;
    y = static_cast<float>(j);
    const std::uint32_t swap_sign_sin = (static_cast<std::uint32_t>(j) & 4u) << 29;
    const bool poly2 = (j & 2) == 0;  // the sine polynomial for sin, the cosine one for cos
    x = rounded(std::fma(y, -0.78515625f, x));
    x = rounded(std::fma(y, -2.4187564849853515625e-4f, x));
    x = rounded(std::fma(y, static_cast<float>(-3.77489497744594108e-8), x));
    const std::uint32_t sign_cos = (~static_cast<std::uint32_t>(j - 2) & 4u) << 29;
    sign_sin ^= swap_sign_sin;

    const float z = mul(x, x);
    float yc = rounded(std::fma(static_cast<float>(2.443315711809948E-005), z,
                                static_cast<float>(-1.388731625493765E-003)));
    yc = rounded(std::fma(yc, z, static_cast<float>(4.166664568298827E-002)));
    yc = mul(yc, z);
    yc = rounded(std::fma(yc, z, -mul(z, 0.5f)));
    yc = add(yc, 1.0f);

    float ys = rounded(std::fma(static_cast<float>(-1.9515295891E-4), z, static_cast<float>(8.3321608736E-3)));
    ys = rounded(std::fma(ys, z, static_cast<float>(-1.6666654611E-1)));
    ys = mul(ys, z);
    ys = rounded(std::fma(ys, x, x));

    // Lane selection as in the vector code: the sine takes ys where poly2, else yc; the cosine the
    // other one. (x - x_selected) + 0 keeps the sign of zero exactly as the masked subtraction does.
    const float sin_part = poly2 ? add(0.0f, ys) : add(yc, 0.0f);
    const float cos_part = poly2 ? add(sub(yc, 0.0f), sub(ys, ys)) : add(sub(yc, yc), sub(ys, 0.0f));
    *s = from_bits(bits(sin_part) ^ sign_sin);
    *c = from_bits(bits(cos_part) ^ sign_cos);
}

// Box-Muller on 16 uniforms in place: u[j] gives the radius, u[j + 8] the angle.
void normal_fill_16(float* data, RandnKernel kernel) {
    for (int j = 0; j < 8; ++j) {
        const float u1 = 1.0f - data[j];  // exact: u is a multiple of 2^-24 in [0, 1)
        const float u2 = data[j + 8];
        if (kernel == RandnKernel::avx2) {
            const float radius = std::sqrt(mul(-2.0f, avx2_log(u1)));
            const float theta = mul(static_cast<float>(2.0f * 3.14159265358979323846), u2);
            float s, c;
            avx2_sincos(theta, &s, &c);
            data[j] = mul(radius, c);  // fmadd(n, std = 1, mean = 0) is exact
            data[j + 8] = mul(radius, s);
        } else {
            const float radius = std::sqrt(-2.0f * std::log(u1));
            const auto theta = static_cast<float>(2.0 * 3.14159265358979323846 * static_cast<double>(u2));
            data[j] = mul(radius, std::cos(theta));
            data[j + 8] = mul(radius, std::sin(theta));
        }
    }
}

}  // namespace

const char* randn_kernel_name(RandnKernel kernel) noexcept {
    return kernel == RandnKernel::avx2 ? "avx2" : "generic";
}

RandnKernel randn_kernel_from_name(std::string_view name) {
    if (name == "avx2") return RandnKernel::avx2;
    if (name == "generic") return RandnKernel::generic;
    throw Error(Status::invalid_argument,
                "unknown randn kernel '" + std::string(name) + "' (valid: avx2, generic)");
}

TorchGenerator::TorchGenerator(std::uint64_t seed, RandnKernel kernel) : kernel_(kernel) { manual_seed(seed); }

void TorchGenerator::manual_seed(std::uint64_t seed) {
    seed_ = seed;
    engine_.seed(static_cast<std::uint32_t>(seed & 0xffffffffu));
    next_double_normal_.reset();
}

std::uint32_t TorchGenerator::random() { return static_cast<std::uint32_t>(engine_()); }

std::uint64_t TorchGenerator::random64() {
    const std::uint64_t hi = random();
    const std::uint64_t lo = random();
    return (hi << 32) | lo;
}

float TorchGenerator::uniform_float() {
    return static_cast<float>(random() & 0xFFFFFFu) * (1.0f / 16777216.0f);
}

double TorchGenerator::uniform_double() {
    return static_cast<double>(random64() & ((std::uint64_t{1} << 53) - 1)) * (1.0 / 9007199254740992.0);
}

double TorchGenerator::normal_double() {
    if (next_double_normal_) {
        const double cached = *next_double_normal_;
        next_double_normal_.reset();
        return cached;
    }
    const double u1 = uniform_double();
    const double u2 = uniform_double();
    const double r = std::sqrt(-2.0 * std::log1p(-u2));
    const double theta = 2.0 * 3.14159265358979323846 * u1;
    next_double_normal_ = r * std::sin(theta);
    return r * std::cos(theta);
}

void TorchGenerator::randn(float* out, std::size_t n) {
    if (n < 16) {
        for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(normal_double());
        return;
    }
    for (std::size_t i = 0; i < n; ++i) out[i] = uniform_float();
    for (std::size_t i = 0; i + 16 <= n; i += 16) normal_fill_16(out + i, kernel_);
    if (n % 16 != 0) {
        float* tail = out + n - 16;
        for (int i = 0; i < 16; ++i) tail[i] = uniform_float();
        normal_fill_16(tail, kernel_);
    }
}

std::vector<float> TorchGenerator::randn(std::size_t n) {
    std::vector<float> out(n);
    randn(out.data(), n);
    return out;
}

}  // namespace unclip::sampling
