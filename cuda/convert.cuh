#pragma once
// fp32 <-> fp16 conversion on device memory, one thread per element (grid-stride loop).
#include <cstddef>

#include <cuda_runtime.h>

namespace unclip::cuda {
void launch_convert_f32_to_f16(const float* src, void* dst_half, std::size_t n, cudaStream_t stream);
void launch_convert_f16_to_f32(const void* src_half, float* dst, std::size_t n, cudaStream_t stream);
}  // namespace unclip::cuda
