#pragma once
// PyTorch's CPU random generator, bit-exact: a seed gives the same torch.randn values as
// `torch.manual_seed(seed); torch.randn(shape)` on the CPU, which is how ComfyUI draws the initial
// latent noise (comfy/sample.py prepare_noise), the unCLIP embedding noise (seed - 10) and, on a CPU
// device, the ancestral samplers' per-step noise (k_diffusion/sampling.py default_noise_sampler).
//
//   TorchGenerator gen(seed);              // torch.manual_seed(seed)
//   std::vector<float> noise = gen.randn(4 * 96 * 96);   // torch.randn([1, 4, 96, 96])
//
// The stream: std::mt19937 seeded with the low 32 bits of the seed (ATen MT19937RNGEngine.h);
// a float uniform is (u32 & 0xFFFFFF) * 2^-24, a double uniform uses 53 bits of two draws.
// torch.randn of n float32 values (ATen native/cpu/DistributionTemplates.h normal_kernel):
//  * n < 16: one normal_distribution<double> sample per element (Box-Muller in double, the second
//    value of each pair cached in the generator and returned by the next scalar draw);
//  * n >= 16: n uniforms first, then Box-Muller on chunks of 16 (8 pairs u[j], u[j + 8]); when
//    n % 16 != 0 the last 16 positions are refilled with 16 fresh uniforms and transformed again.
//    The chunk transform depends on the CPU capability PyTorch dispatches to (RandnKernel).
// Only the element count matters, not the shape. Nothing here depends on the thread count.
//
// Thread-safety: a TorchGenerator is a value; use one per thread (const members are safe).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string_view>
#include <vector>

#include "unclip/detail/export.hpp"

namespace unclip::sampling {

// The chunk transform of torch.randn for >= 16 float32 values. PyTorch compiles it per CPU
// capability; both variants are emulated exactly (checked against torch 2.15 on an AVX-512 machine,
// with ATEN_CPU_CAPABILITY unset, =avx2 and =default).
enum class RandnKernel {
    avx2,     // x86 with AVX2 or AVX-512, i.e. torch on any current x86 CPU: avx_mathfun log/sincos
    generic,  // capability DEFAULT (x86 without AVX2) and other builds: libm logf/cosf/sinf, so
              // bit-exact only where this library and torch use the same libm (glibc on Linux)
};
// "avx2", "generic".
UNCLIP_CXX_API const char* randn_kernel_name(RandnKernel kernel) noexcept;
// Throws Error(Status::invalid_argument) listing the valid names.
UNCLIP_CXX_API RandnKernel randn_kernel_from_name(std::string_view name);

class UNCLIP_CXX_API TorchGenerator {
public:
    // c10::default_rng_seed_val: what an unseeded torch CPU generator starts from.
    static constexpr std::uint64_t kDefaultSeed = 67280421310721ULL;

    explicit TorchGenerator(std::uint64_t seed = kDefaultSeed, RandnKernel kernel = RandnKernel::avx2);

    // torch.manual_seed(seed). A negative Python seed s is passed as static_cast<std::uint64_t>(s)
    // (torch/csrc/Generator.cpp reinterprets it as two's complement); only the low 32 bits reach
    // the Mersenne twister, so seeds 2^32 apart give the same stream, as in torch.
    void manual_seed(std::uint64_t seed);
    std::uint64_t initial_seed() const noexcept { return seed_; }
    RandnKernel kernel() const noexcept { return kernel_; }

    std::uint32_t random();      // one mt19937 output
    std::uint64_t random64();    // (first << 32) | second
    float uniform_float();       // [0, 1), 24 bits
    double uniform_double();     // [0, 1), 53 bits
    double normal_double();      // at::normal_distribution<double>(0, 1), with torch's pair cache

    // torch.randn(n) in float32: fills out[0, n) and advances the state exactly as torch does.
    void randn(float* out, std::size_t n);
    std::vector<float> randn(std::size_t n);

private:
    std::mt19937 engine_;
    std::uint64_t seed_ = kDefaultSeed;
    RandnKernel kernel_ = RandnKernel::avx2;
    std::optional<double> next_double_normal_;
};

}  // namespace unclip::sampling
