// Thread i converts elements i, i + grid, ...; nothing is staged in shared memory. __float2half_rn
// rounds to nearest even like the CPU conversions, so both backends store identical fp16 weights.
#include <algorithm>

#include <cuda_fp16.h>

#include "check.cuh"
#include "convert.cuh"
#include "unclip/backend/cuda.hpp"

namespace unclip::cuda {
namespace {
__global__ void f32_to_f16_kernel(const float* src, __half* dst, std::size_t n) {
    for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
        dst[i] = __float2half_rn(src[i]);
}
__global__ void f16_to_f32_kernel(const __half* src, float* dst, std::size_t n) {
    for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
        dst[i] = __half2float(src[i]);
}
unsigned grid_for(std::size_t n) { return static_cast<unsigned>(std::min<std::size_t>((n + 255) / 256, 65535)); }
}  // namespace

void launch_convert_f32_to_f16(const float* src, void* dst_half, std::size_t n, cudaStream_t stream) {
    if (n == 0) return;
    f32_to_f16_kernel<<<grid_for(n), 256, 0, stream>>>(src, static_cast<__half*>(dst_half), n);
    UNCLIP_CUDA_CHECK(cudaGetLastError());
}

void launch_convert_f16_to_f32(const void* src_half, float* dst, std::size_t n, cudaStream_t stream) {
    if (n == 0) return;
    f16_to_f32_kernel<<<grid_for(n), 256, 0, stream>>>(static_cast<const __half*>(src_half), dst, n);
    UNCLIP_CUDA_CHECK(cudaGetLastError());
}

void convert_f32_to_f16(const float* src, void* dst_half, std::size_t n) {
    launch_convert_f32_to_f16(src, dst_half, n, nullptr);
    UNCLIP_CUDA_CHECK(cudaDeviceSynchronize());
}

void convert_f16_to_f32(const void* src_half, float* dst, std::size_t n) {
    launch_convert_f16_to_f32(src_half, dst, n, nullptr);
    UNCLIP_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace unclip::cuda
