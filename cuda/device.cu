// Device discovery, memory and copies for the CUDA backend.
#include <cstdio>
#include <string>

#include "check.cuh"
#include "unclip/backend/cuda.hpp"
#include "unclip/error.hpp"

namespace unclip::cuda {

int device_count() noexcept {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // no driver or no device: clear the sticky error, report none
        return 0;
    }
    return count;
}

bool compiled_with_cuda() noexcept { return true; }

std::string device_description() {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        cudaGetLastError();
        return std::string("no CUDA device: ") + cudaGetErrorString(status);
    }
    if (count == 0) return "no CUDA device";
    int device = 0;
    UNCLIP_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    UNCLIP_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    char text[512];
    std::snprintf(text, sizeof text, "%s (sm_%d%d, %.1f GiB)", prop.name, prop.major, prop.minor,
                  static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
    return text;
}

void memory_info(std::size_t& free_bytes, std::size_t& total_bytes) noexcept {
    free_bytes = total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
        cudaGetLastError();
        free_bytes = total_bytes = 0;
    }
}

namespace {
// p from an allocation call's status: running out is Status::out_of_memory naming `what`.
void* allocated(void* p, cudaError_t status, std::size_t bytes, const char* what) {
    if (status == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        throw Error(Status::out_of_memory, "CUDA: cannot allocate " + std::to_string(bytes) + " bytes of " + what);
    }
    UNCLIP_CUDA_CHECK(status);
    return p;
}
}  // namespace

void* allocate(std::size_t bytes) {
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, bytes);
    return allocated(p, status, bytes, "GPU memory");
}

void deallocate(void* device_pointer) noexcept {
    if (device_pointer) cudaFree(device_pointer);
}

void* allocate_pinned(std::size_t bytes) {
    void* p = nullptr;
    const cudaError_t status = cudaMallocHost(&p, bytes);
    return allocated(p, status, bytes, "pinned host memory");
}

void deallocate_pinned(void* host_pointer) noexcept {
    if (host_pointer) cudaFreeHost(host_pointer);
}

void copy(void* dst, const void* src, std::size_t bytes, CopyKind kind) {
    const cudaMemcpyKind k = kind == CopyKind::host_to_device   ? cudaMemcpyHostToDevice
                             : kind == CopyKind::device_to_host ? cudaMemcpyDeviceToHost
                                                                : cudaMemcpyDeviceToDevice;
    UNCLIP_CUDA_CHECK(cudaMemcpy(dst, src, bytes, k));
    // From pageable memory cudaMemcpy may return before the data lands, and the contexts' streams
    // do not wait for the default stream: wait here, so the copy is done when this returns.
    UNCLIP_CUDA_CHECK(cudaStreamSynchronize(nullptr));
}

}  // namespace unclip::cuda
