#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "test_support.hpp"
#include "unclip/dtype.hpp"

using namespace unclip;

namespace {
float from_bits(std::uint32_t bits) { return detail::bits_float(bits); }

// bfloat16 rounding decided in double arithmetic, independently of the integer trick under test:
// the two bfloat16 neighbours of x and which one is nearer (ties to the even one).
std::uint16_t reference_bf16(float x) {
    const std::uint32_t bits = detail::float_bits(x);
    if (std::isinf(x)) return static_cast<std::uint16_t>(bits >> 16);
    const std::uint32_t lower = bits & 0xffff0000u;
    const std::uint32_t upper = lower + 0x10000u;  // next bfloat16 away from zero
    // Past the largest finite value the next step is 2^128, as if the exponent were unbounded.
    const double upper_value = (upper & 0x7f800000u) == 0x7f800000u ? std::copysign(std::ldexp(1.0, 128), x)
                                                                      : static_cast<double>(from_bits(upper));
    const double dl = std::fabs(static_cast<double>(from_bits(lower)) - x);
    const double du = std::fabs(upper_value - x);
    if (dl < du || (dl == du && ((lower >> 16) & 1u) == 0)) return static_cast<std::uint16_t>(lower >> 16);
    return static_cast<std::uint16_t>(upper >> 16);
}

// Float bit patterns covering every exponent, the rounding boundaries around each, and a spread
// of mantissas.
std::vector<float> probe_floats() {
    std::vector<float> values;
    for (std::uint32_t sign = 0; sign < 2; ++sign)
        for (std::uint32_t exponent = 0; exponent < 255; ++exponent)
            for (std::uint32_t m : {0x000000u, 0x000001u, 0x000fffu, 0x001000u, 0x001001u, 0x002000u, 0x003000u,
                                    0x007fffu, 0x008000u, 0x008001u, 0x018000u, 0x3fffffu, 0x400000u, 0x7fe000u,
                                    0x7ff000u, 0x7fefffu, 0x7fffffu, 0x123456u, 0x654321u, 0x5a5a5au})
                values.push_back(from_bits((sign << 31) | (exponent << 23) | m));
    std::uint32_t state = 12345;  // xorshift: many arbitrary patterns, NaNs excluded
    for (int i = 0; i < 200000; ++i) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        if ((state & 0x7f800000u) != 0x7f800000u) values.push_back(from_bits(state));
    }
    values.push_back(std::numeric_limits<float>::infinity());
    values.push_back(-std::numeric_limits<float>::infinity());
    return values;
}
}  // namespace

TEST_SUITE("foundation") {

TEST_CASE("float to half rounds to nearest even at known values") {
    const struct {
        float value;
        std::uint16_t bits;
    } cases[] = {
        {0.0f, 0x0000},          {-0.0f, 0x8000},          {1.0f, 0x3c00},
        {-2.0f, 0xc000},         {0.1f, 0x2e66},           {65504.0f, 0x7bff},
        {65519.99f, 0x7bff},     {65520.0f, 0x7c00},       {1e6f, 0x7c00},
        {std::ldexp(1.0f, -14), 0x0400},                   {std::ldexp(1.0f, -24), 0x0001},
        {std::ldexp(1.0f, -25), 0x0000},                   {std::ldexp(1.5f, -25), 0x0001},
        {std::ldexp(1.5f, -24), 0x0002},                   {std::ldexp(2.5f, -24), 0x0002},
        {std::ldexp(1023.0f, -24), 0x03ff},                {std::ldexp(1023.5f, -24), 0x0400},
        {1.0f + std::ldexp(1.0f, -11), 0x3c00},            {1.0f + std::ldexp(3.0f, -11), 0x3c02},
        {std::numeric_limits<float>::infinity(), 0x7c00},  {-std::numeric_limits<float>::infinity(), 0xfc00},
        {std::numeric_limits<float>::denorm_min(), 0x0000},
    };
    for (const auto& c : cases) {
        INFO("value " << c.value);
        CHECK(Half(c.value).bits == c.bits);
    }
    const Half nan(std::numeric_limits<float>::quiet_NaN());
    CHECK((nan.bits & 0x7c00) == 0x7c00);
    CHECK((nan.bits & 0x03ff) != 0);
}

TEST_CASE("half to float is exact for subnormals, infinities and NaN") {
    CHECK(static_cast<float>(Half::from_bits(0x0001)) == std::ldexp(1.0f, -24));
    CHECK(static_cast<float>(Half::from_bits(0x03ff)) == std::ldexp(1023.0f, -24));
    CHECK(static_cast<float>(Half::from_bits(0x7bff)) == 65504.0f);
    CHECK(static_cast<float>(Half::from_bits(0x7c00)) == std::numeric_limits<float>::infinity());
    CHECK(static_cast<float>(Half::from_bits(0xfc00)) == -std::numeric_limits<float>::infinity());
    CHECK(std::isnan(static_cast<float>(Half::from_bits(0x7e00))));
    CHECK(std::signbit(static_cast<float>(Half::from_bits(0x8000))));
}

#if defined(__FLT16_MAX__)
TEST_CASE("half conversions agree with the compiler's _Float16 for every half and many floats") {
    for (std::uint32_t h = 0; h < 0x10000u; ++h) {
        _Float16 reference;
        const auto bits = static_cast<std::uint16_t>(h);
        std::memcpy(&reference, &bits, sizeof bits);
        const float expected = static_cast<float>(reference);
        const float actual = static_cast<float>(Half::from_bits(bits));
        if (std::isnan(expected)) REQUIRE(std::isnan(actual));
        else REQUIRE(detail::float_bits(actual) == detail::float_bits(expected));
    }
    for (float x : probe_floats()) {
        const _Float16 reference = static_cast<_Float16>(x);
        std::uint16_t expected;
        std::memcpy(&expected, &reference, sizeof expected);
        INFO("float bits " << detail::float_bits(x));
        REQUIRE(Half(x).bits == expected);
    }
}
#endif

TEST_CASE("float to bfloat16 rounds to nearest even, keeps subnormals and quiets NaN") {
    CHECK(BFloat16(1.0f).bits == 0x3f80);
    CHECK(BFloat16(1.0f + std::ldexp(1.0f, -8)).bits == 0x3f80);        // tie to even
    CHECK(BFloat16(1.0f + std::ldexp(3.0f, -8)).bits == 0x3f82);        // tie to even, upwards
    CHECK(BFloat16(from_bits(0x000116c2u)).bits == 0x0001);              // subnormal survives
    CHECK(BFloat16(from_bits(0x7f7fffffu)).bits == 0x7f80);              // FLT_MAX rounds to inf
    CHECK(BFloat16(-std::numeric_limits<float>::infinity()).bits == 0xff80);
    const BFloat16 nan(from_bits(0x7f800001u));  // signalling NaN whose payload sits in the low bits
    CHECK(std::isnan(static_cast<float>(nan)));
    for (float x : probe_floats()) {
        INFO("float bits " << detail::float_bits(x));
        REQUIRE(BFloat16(x).bits == reference_bf16(x));
    }
}

TEST_CASE("bulk conversions are bit-identical to the scalar ones for every length") {
    MESSAGE("bulk conversion path: " << convert_isa());
    std::vector<float> src = probe_floats();
    src.push_back(std::numeric_limits<float>::quiet_NaN());
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{8}, std::size_t{15},
                          std::size_t{16}, std::size_t{17}, std::size_t{33}, src.size()}) {
        std::vector<Half> halves(n);
        std::vector<BFloat16> brains(n);
        convert(src.data(), halves.data(), n);
        convert(src.data(), brains.data(), n);
        std::vector<float> back_h(n), back_b(n);
        convert(halves.data(), back_h.data(), n);
        convert(brains.data(), back_b.data(), n);
        for (std::size_t i = 0; i < n; ++i) {
            INFO("n " << n << " index " << i);
            REQUIRE(halves[i].bits == Half(src[i]).bits);
            REQUIRE(brains[i].bits == BFloat16(src[i]).bits);
            REQUIRE(detail::float_bits(back_h[i]) == detail::float_bits(static_cast<float>(halves[i])));
            REQUIRE(detail::float_bits(back_b[i]) == detail::float_bits(static_cast<float>(brains[i])));
        }
    }
}

}  // TEST_SUITE
