// Grid-stride loops, nothing staged in shared memory.
#include <algorithm>

#include "check.cuh"
#include "context.cuh"
#include "convert.cuh"
#include "unclip/backend/cuda.hpp"

namespace unclip::cuda {
namespace {
// Four operands stored with one 8- or 16-byte write.
template <class To>
struct alignas(4 * sizeof(To)) Quad {
    To v[4];
};

// y = x rounded to To; with `vectorized` (n % 4 == 0, both pointers aligned) four per thread.
template <class To>
__global__ void round_kernel(const float* __restrict__ x, To* __restrict__ y, std::int64_t n, bool vectorized) {
    if (vectorized) {
        for (std::int64_t i = first_index(); i < n / 4; i += grid_stride()) {
            const float4 v = reinterpret_cast<const float4*>(x)[i];
            reinterpret_cast<Quad<To>*>(y)[i] = Quad<To>{{from_float<To>(v.x), from_float<To>(v.y), from_float<To>(v.z), from_float<To>(v.w)}};
        }
        return;
    }
    for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] = from_float<To>(x[i]);
}

__global__ void f16_to_f32_kernel(const __half* src, float* dst, std::size_t n) {
    for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
        dst[i] = __half2float(src[i]);
}
unsigned grid_for(std::size_t n) { return static_cast<unsigned>(std::min<std::size_t>((n + 255) / 256, 65535)); }
}  // namespace

void launch_round_f32(const float* x, void* out, std::int64_t n, DType dtype, cudaStream_t stream) {
    if (n <= 0) return;
    const bool vectorized = n % 4 == 0 && aligned_to(x, 16) && aligned_to(out, 4 * dtype_size(dtype));
    const unsigned blocks = blocks_for(vectorized ? n / 4 : n, 256);
    if (dtype == DType::f16) round_kernel<<<blocks, 256, 0, stream>>>(x, static_cast<__half*>(out), n, vectorized);
    else if (dtype == DType::bf16) round_kernel<<<blocks, 256, 0, stream>>>(x, static_cast<__nv_bfloat16*>(out), n, vectorized);
    else round_kernel<<<blocks, 256, 0, stream>>>(x, static_cast<float*>(out), n, vectorized);
    UNCLIP_CUDA_CHECK_LAUNCH();
}

void launch_convert_f16_to_f32(const void* src_half, float* dst, std::size_t n, cudaStream_t stream) {
    if (n == 0) return;
    f16_to_f32_kernel<<<grid_for(n), 256, 0, stream>>>(static_cast<const __half*>(src_half), dst, n);
    UNCLIP_CUDA_CHECK(cudaGetLastError());
}

void convert_f32_to_f16(const float* src, void* dst_half, std::size_t n) {
    launch_round_f32(src, dst_half, static_cast<std::int64_t>(n), DType::f16, nullptr);
    UNCLIP_CUDA_CHECK(cudaDeviceSynchronize());
}

void convert_f16_to_f32(const void* src_half, float* dst, std::size_t n) {
    launch_convert_f16_to_f32(src_half, dst, n, nullptr);
    UNCLIP_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace unclip::cuda
