// The ops that hand linear layers their inputs already rounded (CudaBackend::kRoundedLinearInputs):
// layer_norm_rounded, geglu_rounded and channels_to_tokens_rounded must write exactly the fp32 op's values rounded to nearest
// (f16 and bf16, aligned and misaligned outputs, nothing outside them), and linear_rounded on such
// inputs must give what linear gives on the fp32 values.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "cuda_test_support.hpp"
#include "unclip/dtype.hpp"
#include "unclip/error.hpp"
#include "unclip/tensor.hpp"

using namespace unclip;
using cuda_test::all_finite;
using cuda_test::DeviceFloats;
using cuda_test::random_floats;
using cuda_test::relative_l2;

namespace {

constexpr std::int64_t kGuardHalves = 64;

// n halves in device memory starting `offset` halves past a 16-byte boundary, between NaN-poisoned
// guards: read() returns the n halves and fails the test case if any other half changed.
class GuardedHalves {
public:
    GuardedHalves(std::int64_t n, std::int64_t offset)
        : n_(n), offset_(offset), floats_((2 * kGuardHalves + offset + n + 1) / 2) {
        float first = 0.0f;  // waits for the poison copy, as GuardedFloats does
        cuda::copy(&first, floats_.get(), sizeof first, cuda::CopyKind::device_to_host);
        poison_ = halves_of(floats_.read_raw());
    }
    void* get() const noexcept { return reinterpret_cast<std::uint16_t*>(floats_.get()) + kGuardHalves + offset_; }
    std::vector<std::uint16_t> read(const CudaBackend::Context& ctx) const {
        const std::vector<std::uint16_t> all = halves_of(floats_.read(ctx));
        const auto first = static_cast<std::size_t>(kGuardHalves + offset_), last = first + static_cast<std::size_t>(n_);
        bool untouched = true;
        for (std::size_t i = 0; i < all.size(); ++i)
            if ((i < first || i >= last) && all[i] != poison_[i]) untouched = false;
        CHECK_MESSAGE(untouched, "a kernel wrote outside its output");
        return {all.begin() + static_cast<std::ptrdiff_t>(first), all.begin() + static_cast<std::ptrdiff_t>(last)};
    }

private:
    struct RawFloats : DeviceFloats {
        using DeviceFloats::DeviceFloats;
        std::vector<float> read_raw() const {
            std::vector<float> host(static_cast<std::size_t>(size()));
            cuda::copy(host.data(), get(), host.size() * sizeof(float), cuda::CopyKind::device_to_host);
            return host;
        }
    };
    static std::vector<std::uint16_t> halves_of(const std::vector<float>& floats) {
        std::vector<std::uint16_t> halves(floats.size() * 2);
        std::memcpy(halves.data(), floats.data(), floats.size() * sizeof(float));
        return halves;
    }
    std::int64_t n_, offset_;
    RawFloats floats_;
    std::vector<std::uint16_t> poison_;
};

std::vector<std::uint16_t> rounded_on_host(const std::vector<float>& values, DType dtype) {
    std::vector<std::uint16_t> bits(values.size());
    for (std::size_t i = 0; i < values.size(); ++i)
        bits[i] = dtype == DType::f16 ? detail::float_to_half_bits(values[i]) : detail::float_to_bfloat16_bits(values[i]);
    return bits;
}

std::size_t size_of(std::int64_t n) { return static_cast<std::size_t>(n); }

// How many halves differ from the expected bits (0 is the claim).
std::int64_t mismatches(const std::vector<std::uint16_t>& got, const std::vector<std::uint16_t>& want) {
    REQUIRE(got.size() == want.size());
    std::int64_t count = 0;
    for (std::size_t i = 0; i < got.size(); ++i) count += got[i] != want[i];
    return count;
}

// write(y, dtype) for f16 and bf16, into an aligned and a misaligned output: every half must be
// `values` rounded to nearest, and nothing else written.
void check_rounded_writes(const CudaBackend::Context& gpu, const std::vector<float>& values,
                          const std::function<void(void*, DType)>& write) {
    REQUIRE(all_finite(values));
    for (const DType dtype : {DType::f16, DType::bf16})
        for (const std::int64_t offset : {0, 1}) {
            CAPTURE(dtype_name(dtype));
            CAPTURE(offset);
            const GuardedHalves y(static_cast<std::int64_t>(values.size()), offset);
            write(y.get(), dtype);
            CHECK(mismatches(y.read(gpu), rounded_on_host(values, dtype)) == 0);
        }
}

std::string failure_of(const std::function<void()>& call) {
    try {
        call();
    } catch (const Error& e) {
        CHECK(e.status() == Status::invalid_argument);
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST_SUITE("cuda") {

TEST_CASE("layer_norm_rounded writes the fp32 layer norm rounded to f16 or bf16, aligned or not, and nothing else") {
    const CudaBackend::Context gpu;
    struct Shape {
        std::int64_t rows, cols;
    };
    for (const Shape s : {Shape{1, 1}, Shape{3, 5}, Shape{2, 4}, Shape{77, 1024}, Shape{2 * 48 * 48, 640}}) {
        CAPTURE(s.rows);
        CAPTURE(s.cols);
        const std::int64_t n = s.rows * s.cols;
        const DeviceFloats x(gpu, random_floats(size_of(n), 21, -2.0f, 6.0f));
        const DeviceFloats gamma(gpu, random_floats(size_of(s.cols), 22, 0.5f, 1.5f));
        const DeviceFloats beta(gpu, random_floats(size_of(s.cols), 23));
        DeviceFloats fp32(n);
        CudaBackend::layer_norm(gpu, x.get(), gamma.get(), beta.get(), fp32.get(), s.rows, s.cols, 1e-5f);
        check_rounded_writes(gpu, fp32.read(gpu), [&](void* y, DType dtype) {
            CudaBackend::layer_norm_rounded(gpu, x.get(), gamma.get(), beta.get(), y, dtype, s.rows, s.cols, 1e-5f);
        });
    }
    const GuardedHalves y(4, 0);
    CHECK(failure_of([&] {
              CudaBackend::layer_norm_rounded(gpu, nullptr, nullptr, nullptr, y.get(), DType::f32, 1, 4, 1e-5f);
          }).find("output dtype F32") != std::string::npos);
    y.read(gpu);  // untouched
}

TEST_CASE("geglu_rounded writes the fp32 geglu rounded to f16 or bf16, aligned or not, and nothing else") {
    const CudaBackend::Context gpu;
    struct Shape {
        std::int64_t rows, inner;
    };
    for (const Shape s : {Shape{1, 1}, Shape{3, 5}, Shape{2, 4}, Shape{77, 1023}, Shape{2 * 48 * 48, 2560}}) {
        CAPTURE(s.rows);
        CAPTURE(s.inner);
        const std::int64_t n = s.rows * s.inner;
        const DeviceFloats x(gpu, random_floats(size_of(2 * n), 31, -4.0f, 4.0f));
        DeviceFloats fp32(n);
        CudaBackend::geglu(gpu, x.get(), fp32.get(), s.rows, s.inner);
        check_rounded_writes(gpu, fp32.read(gpu), [&](void* y, DType dtype) {
            CudaBackend::geglu_rounded(gpu, x.get(), y, dtype, s.rows, s.inner);
        });
    }
    const GuardedHalves y(4, 0);
    CHECK(failure_of([&] { CudaBackend::geglu_rounded(gpu, nullptr, y.get(), DType::f32, 1, 4); })
              .find("output dtype F32") != std::string::npos);
    y.read(gpu);  // untouched
}

TEST_CASE("channels_to_tokens_rounded writes the GroupNorm-mapped tokens rounded to f16 or bf16, and nothing else") {
    const CudaBackend::Context gpu;
    struct Shape {
        std::int64_t batch, channels, spatial;
    };
    for (const Shape s : {Shape{1, 1, 1}, Shape{2, 5, 7}, Shape{1, 33, 65}, Shape{2, 320, 24 * 24}}) {
        CAPTURE(s.batch);
        CAPTURE(s.channels);
        CAPTURE(s.spatial);
        const std::int64_t n = s.batch * s.channels * s.spatial;
        const std::vector<float> x = random_floats(size_of(n), 51, -3.0f, 3.0f);
        const std::vector<float> scale = random_floats(size_of(s.batch * s.channels), 52, 0.2f, 2.0f);
        const std::vector<float> shift = random_floats(size_of(s.batch * s.channels), 53);
        // The kernel's one fma per value, in the token-major order it writes.
        std::vector<float> want(size_of(n));
        for (std::int64_t b = 0; b < s.batch; ++b)
            for (std::int64_t c = 0; c < s.channels; ++c)
                for (std::int64_t p = 0; p < s.spatial; ++p) {
                    const auto affine = size_of(b * s.channels + c);
                    want[size_of((b * s.spatial + p) * s.channels + c)] =
                        std::fma(x[size_of((b * s.channels + c) * s.spatial + p)], scale[affine], shift[affine]);
                }
        const DeviceFloats dx(gpu, x), dscale(gpu, scale), dshift(gpu, shift);
        check_rounded_writes(gpu, want, [&](void* y, DType dtype) {
            CudaBackend::channels_to_tokens_rounded(gpu, dx.get(), dscale.get(), dshift.get(), y, dtype, s.batch, s.channels,
                                                    s.spatial);
        });
    }
    const GuardedHalves y(4, 0);
    CHECK(failure_of([&] {
              CudaBackend::channels_to_tokens_rounded(gpu, nullptr, nullptr, nullptr, y.get(), DType::f32, 1, 2, 2);
          }).find("output dtype F32") != std::string::npos);
    y.read(gpu);  // untouched
}

TEST_CASE("linear_rounded on rounded inputs gives linear's result, and refuses inputs of another dtype") {
    CudaBackend::Context gpu;
    struct Shape {
        std::int64_t rows, in, out;
    };
    for (const bool epilogue : {false, true}) {
        gpu.set_bias_epilogue(epilogue);
        for (const Shape s : {Shape{3, 8, 5}, Shape{77, 320, 1024}, Shape{2 * 24 * 24, 1280, 1280}})
            for (const DType dtype : {DType::f16, DType::bf16})
                for (const bool accumulate : {false, true}) {
                    CAPTURE(epilogue);
                    CAPTURE(s.rows);
                    CAPTURE(s.in);
                    CAPTURE(dtype_name(dtype));
                    CAPTURE(accumulate);
                    const std::vector<float> x = random_floats(size_of(s.rows * s.in), 41);
                    Tensor w = Tensor::empty(DType::f32, {s.out, s.in});
                    const std::vector<float> w_values = random_floats(size_of(s.out * s.in), 42, -0.1f, 0.1f);
                    std::copy(w_values.begin(), w_values.end(), w.data<float>());
                    const Tensor w_device = w.to(dtype).to(Device::cuda);
                    const DeviceFloats dx(gpu, x), bias(gpu, random_floats(size_of(s.out), 43));
                    const std::vector<float> start = random_floats(size_of(s.rows * s.out), 44);
                    const DeviceFloats y_fp32(gpu, start), y_rounded(gpu, start);
                    CudaBackend::linear(gpu, dx.get(), s.rows, s.in, s.out, w_device.raw_data(), dtype, bias.get(),
                                        y_fp32.get(), accumulate);

                    const std::vector<std::uint16_t> x_bits = rounded_on_host(x, dtype);
                    DeviceFloats x_rounded((s.rows * s.in + 1) / 2);
                    cuda::copy(x_rounded.get(), x_bits.data(), x_bits.size() * sizeof(std::uint16_t),
                               cuda::CopyKind::host_to_device);
                    CudaBackend::linear_rounded(gpu, x_rounded.get(), dtype, s.rows, s.in, s.out, w_device.raw_data(),
                                                dtype, bias.get(), y_rounded.get(), accumulate);
                    const std::vector<float> want = y_fp32.read(gpu), got = y_rounded.read(gpu);
                    CHECK(all_finite(got));
                    CHECK(relative_l2(got, want) <= 1e-6);
                }
    }
    const DeviceFloats x(8), w(8), y(8);
    const std::string mixed = failure_of([&] {
        CudaBackend::linear_rounded(gpu, x.get(), DType::f16, 2, 2, 2, w.get(), DType::bf16, nullptr, y.get(), false);
    });
    CHECK(mixed.find("input dtype F16 with weights of dtype BF16") != std::string::npos);
}

}  // TEST_SUITE
