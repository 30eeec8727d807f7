#pragma once
// Shared pieces of the GPU tests: device buffers that poison themselves, random inputs, and the
// relative L2 error against the CPU backend's fp32 result.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "unclip/backend/cpu.hpp"
#include "unclip/backend/cuda.hpp"
#include "unclip/image.hpp"

namespace unclip::cuda_test {

// A float buffer in device memory, filled with NaN when created, so an element the kernel under
// test never writes shows up as NaN in the comparison.
class DeviceFloats {
public:
    explicit DeviceFloats(std::int64_t n) : n_(n), data_(static_cast<float*>(cuda::allocate(bytes()))) { poison(); }
    DeviceFloats(const CudaBackend::Context& ctx, const std::vector<float>& host)
        : DeviceFloats(static_cast<std::int64_t>(host.size())) {
        CudaBackend::upload(ctx, host.data(), data_, n_);
    }
    ~DeviceFloats() { cuda::deallocate(data_); }
    DeviceFloats(const DeviceFloats&) = delete;
    DeviceFloats& operator=(const DeviceFloats&) = delete;
    float* get() const noexcept { return data_; }
    std::int64_t size() const noexcept { return n_; }
    void poison() {
        const std::vector<float> nan(static_cast<std::size_t>(n_), std::nanf(""));
        cuda::copy(data_, nan.data(), bytes(), cuda::CopyKind::host_to_device);
    }
    std::vector<float> read(const CudaBackend::Context& ctx) const {
        std::vector<float> host(static_cast<std::size_t>(n_));
        CudaBackend::download(ctx, data_, host.data(), n_);
        return host;
    }

private:
    std::size_t bytes() const noexcept { return static_cast<std::size_t>(n_ > 0 ? n_ : 1) * sizeof(float); }
    std::int64_t n_;
    float* data_;
};

inline std::vector<float> random_floats(std::size_t n, std::uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

// ||got - want|| / ||want||, computed in double; NaN anywhere gives NaN (which fails every bound).
inline double relative_l2(const std::vector<float>& got, const std::vector<float>& want) {
    REQUIRE(got.size() == want.size());
    double diff = 0.0, norm = 0.0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double d = static_cast<double>(got[i]) - want[i];
        diff += d * d;
        norm += static_cast<double>(want[i]) * want[i];
    }
    return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

inline bool all_finite(const std::vector<float>& v) {
    for (float x : v)
        if (!std::isfinite(x)) return false;
    return true;
}

// Sets an environment variable for one scope (a context's switches read theirs when created).
class ScopedEnvironment {
public:
    ScopedEnvironment(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        setenv(name, value, 1);
    }
    ~ScopedEnvironment() {
        if (old_) setenv(name_, old_->c_str(), 1);
        else unsetenv(name_);
    }
    ScopedEnvironment(const ScopedEnvironment&) = delete;
    ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

private:
    const char* name_;
    std::optional<std::string> old_;  // the value it replaced, restored after
};

// Mean absolute difference of two images' bytes (the same size), in 1/255 steps.
inline double mean_abs_pixel_difference(const Image& a, const Image& b) {
    REQUIRE(a.pixels.size() == b.pixels.size());
    double sum = 0;
    for (std::size_t i = 0; i < a.pixels.size(); ++i) sum += std::abs(int(a.pixels[i]) - int(b.pixels[i]));
    return sum / static_cast<double>(a.pixels.size());
}

// fp16 tensor-core results against fp32; bf16 operands get twice the room.
inline constexpr double kHalfTolerance = 1e-2;
inline constexpr double kBf16Tolerance = 2e-2;

}  // namespace unclip::cuda_test
