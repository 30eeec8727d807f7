#pragma once
// What a CudaBackend::Context holds, visible to the .cu files only.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "unclip/backend/cuda.hpp"
#include "unclip/error.hpp"

namespace unclip::cuda {

struct LtPlans;  // cuBLASLt handle, workspace and GEMM plans (linear_lt.cu)
struct CudnnConvolutions;  // cuDNN handle and convolution plans (cudnn_conv.cu)

// A number no earlier call in the process returned (thread-safe).
std::uint64_t new_workspace_generation() noexcept;

struct ContextState {
    int device = 0;
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    // cuBLAS's workspace, ours rather than its own pool, so that a graph recording never finds
    // cuBLAS allocating (4 MiB, 32 MiB from Hopper on: the sizes cuBLAS recommends).
    void* blas_workspace = nullptr;
    int multiprocessors = 0;
    int compute_major = 0;              // 8 and above: the tensor-core kernels' instructions
    std::size_t shared_per_block = 0;   // with the opt-in above 48 KB
    ContextState() = default;
    ~ContextState();  // waits for the stream, then releases everything
    ContextState(const ContextState&) = delete;
    ContextState& operator=(const ContextState&) = delete;

    // At least `bytes` of device memory, 256-byte aligned, valid until the next workspace() call
    // on this context. Growing waits for the stream first, so queued kernels never see the old
    // buffer freed under them.
    void* workspace(std::size_t bytes);
    std::size_t workspace_capacity = 0;
    void* workspace_data = nullptr;
    // Which workspace buffer this is, unique in the process (new_workspace_generation): a new
    // buffer may start at the old one's address, and a new context may reuse an old one's stream
    // handle, so a recorded graph checks this rather than the pointer.
    std::uint64_t workspace_generation = new_workspace_generation();

    // A device copy of n host int32 values (gather ids), in a buffer apart from the workspace.
    const std::int32_t* upload_ids(const std::int32_t* host, std::int64_t n);
    std::int32_t* ids_data = nullptr;
    std::int64_t ids_capacity = 0;

    // Lets `kernel` take `bytes` of dynamic shared memory (above 48 KB needs the opt-in). Asks the
    // driver once per kernel and context: the attribute call may wait for pending copies, and a
    // graph recording should contain launches only.
    void allow_shared_memory(const void* kernel, std::size_t bytes);
    std::vector<std::pair<const void*, std::size_t>> shared_memory_allowed;

    // Made on the first fused-bias linear call; released after the stream.
    std::shared_ptr<LtPlans> lt_plans;
    std::uint64_t bias_epilogue_calls = 0;

    // Made on the first convolution cuDNN may run; released before the stream. cudnn_error: why
    // this context runs without it (cuDNN not loaded, its handle refused, or a run refused for the
    // machine's sake).
    std::shared_ptr<CudnnConvolutions> cudnn;
    std::string cudnn_error;
    std::uint64_t cudnn_convolution_calls = 0;
};

// Whether p may be read as `bytes`-wide vectors (16: float4).
inline bool aligned_to(const void* p, std::size_t bytes) { return reinterpret_cast<std::uintptr_t>(p) % bytes == 0; }
inline bool aligned16(const void* p) { return aligned_to(p, 16); }

// A grid-stride loop's first index and step over a 1-D grid, in 64 bits (tensors pass 2^31 elements).
__device__ inline std::int64_t first_index() { return std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; }
__device__ inline std::int64_t grid_stride() { return std::int64_t{gridDim.x} * blockDim.x; }

// Grid size for a grid-stride loop over n elements with `threads` per block.
inline unsigned blocks_for(std::int64_t n, int threads, unsigned cap = 65535u * 8u) {
    const std::int64_t b = (n + threads - 1) / threads;
    return static_cast<unsigned>(b < 1 ? 1 : (b > static_cast<std::int64_t>(cap) ? cap : b));
}

// The launch of a kernel that gives each of `planes` planes of `per_plane` work items to one row of
// a block's threads (threadIdx.y picks the plane, grid-stride loops in x and y): rows as wide as a
// plane needs, from a warp up to `threads`, so that planes of up to threads / 2 items (the UNet's
// 12 px level: 36 float4) share a block instead of leaving most of one idle.
struct PlaneLaunch {
    dim3 grid, block;
};
// `threads`: a power of two, at least 32.
inline PlaneLaunch plane_launch(std::int64_t planes, std::int64_t per_plane, int threads, unsigned max_blocks_x = 1024u) {
    if (threads < 32 || (threads & (threads - 1)) != 0)
        throw Error(Status::internal, "CUDA plane launch: " + std::to_string(threads) + " threads per block (a power of two, >= 32)");
    int width = 32;
    while (width < threads && width < per_plane) width *= 2;
    const int rows = threads / width;
    const std::int64_t row_blocks = (planes + rows - 1) / rows;
    return {dim3(blocks_for(per_plane, width, max_blocks_x),
                 static_cast<unsigned>(row_blocks < 1 ? 1 : (row_blocks > 65535 ? 65535 : row_blocks))),
            dim3(static_cast<unsigned>(width), static_cast<unsigned>(rows))};
}

// A PlaneLaunch kernel's first plane and plane step.
__device__ inline std::int64_t first_plane() { return std::int64_t{blockIdx.y} * blockDim.y + threadIdx.y; }
__device__ inline std::int64_t plane_stride() { return std::int64_t{gridDim.y} * blockDim.y; }

}  // namespace unclip::cuda
