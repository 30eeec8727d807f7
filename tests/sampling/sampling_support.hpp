#pragma once
// Helpers shared by the sampling tests: fixture tensors as float vectors, vectors as tensors for
// CHECK_CLOSE, the analytic Gaussian denoiser and a noise sampler replaying recorded noise.
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "unclip/sampling/samplers.hpp"

namespace unclip::test {

// Tolerances of this area, each with its reason.
// Sigma lists: ComfyUI evaluates pow/exp on float32 tensors with vectorised math that may differ
// from libm by an ulp; nothing else differs.
inline constexpr double kScheduleTolerance = 1e-6;
// Sampler trajectories, KSampler runs (the bar): float32 on both sides, only the order of
// a few scalar operations differs.
inline constexpr double kSamplerTolerance = 1e-5;
// ADM vectors: the level embedding is cos/sin(level * f_i) in float32; torch's vectorised expf
// (SLEEF, <= 1 ulp) and libm's may give f_i an ulp apart, which at level 999 moves the argument by
// ~6e-5 rad. Measured rel. L2 up to 9.1e-7 (level 999, dim 768).
inline constexpr double kAdmTolerance = 5e-6;

inline std::vector<float> values(const Tensor& t) {
    const Tensor f = t.to(DType::f32);
    const float* p = f.data<const float>();
    return std::vector<float>(p, p + f.numel());
}

// A borrowed 1-D view for CHECK_CLOSE; `v` must outlive it.
inline Tensor as_tensor(std::vector<float>& v) {
    return Tensor::borrow(v.data(), DType::f32, {static_cast<std::int64_t>(v.size())}, nullptr);
}
inline Tensor flat(const Tensor& t) { return t.to(DType::f32).reshape({t.numel()}); }

// x0 ~ N(mu, s^2) element-wise: D(x, sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu), in float32 in
// the same operation order as tests/golden/sampling.py.
struct GaussianDenoiser {
    std::vector<float> mu, s2;
    GaussianDenoiser(const std::vector<float>& mean, const std::vector<float>& stddev) : mu(mean), s2(stddev.size()) {
        for (std::size_t i = 0; i < s2.size(); ++i) s2[i] = stddev[i] * stddev[i];
    }
    void operator()(const float* x, float sigma, float* out) const {
        for (std::size_t i = 0; i < mu.size(); ++i) out[i] = mu[i] + s2[i] / (s2[i] + sigma * sigma) * (x[i] - mu[i]);
    }
};

// Replays recorded noise tensors in order; counts the calls.
class RecordedNoise final : public sampling::NoiseSampler {
public:
    explicit RecordedNoise(std::vector<float> all, std::size_t n) : all_(std::move(all)), n_(n) {}
    void sample(float, float, float* out, std::size_t n) override {
        REQUIRE(n == n_);
        REQUIRE((calls_ + 1) * n_ <= all_.size());
        std::copy(all_.begin() + static_cast<std::ptrdiff_t>(calls_ * n_),
                  all_.begin() + static_cast<std::ptrdiff_t>((calls_ + 1) * n_), out);
        ++calls_;
    }
    std::size_t calls() const { return calls_; }

private:
    std::vector<float> all_;
    std::size_t n_, calls_ = 0;
};

}  // namespace unclip::test
