#pragma once
// CUDA backend primitives, declared over plain types: no CUDA header reaches users. In a build
// without CUDA (or on a machine without a GPU) every primitive throws Error(Status::device) and
// device_count() returns 0.
#include <cstddef>
#include <string>

#include "unclip/detail/export.hpp"

namespace unclip::cuda {

// Number of usable CUDA devices; 0 without a CUDA build, a driver or a GPU. Never throws.
UNCLIP_CXX_API int device_count() noexcept;
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)", or why there is none.
UNCLIP_CXX_API std::string device_description();
// True when this library was compiled with the CUDA backend.
UNCLIP_CXX_API bool compiled_with_cuda() noexcept;

// Device memory; free accepts nullptr.
UNCLIP_CXX_API void* allocate(std::size_t bytes);
UNCLIP_CXX_API void deallocate(void* device_pointer) noexcept;
enum class CopyKind { host_to_device, device_to_host, device_to_device };
UNCLIP_CXX_API void copy(void* dst, const void* src, std::size_t bytes, CopyKind kind);

// In-place bulk conversions on device memory (n elements), synchronous.
UNCLIP_CXX_API void convert_f32_to_f16(const float* src, void* dst_half, std::size_t n);
UNCLIP_CXX_API void convert_f16_to_f32(const void* src_half, float* dst, std::size_t n);

}  // namespace unclip::cuda
