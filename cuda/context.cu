// CudaBackend::Context: the stream, the cuBLAS handle and the growing workspace.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "check.cuh"
#include "context.cuh"
#include "cudnn_conv.cuh"
#include "unclip/error.hpp"

namespace unclip::cuda {

std::uint64_t new_workspace_generation() noexcept {
    static std::atomic<std::uint64_t> last{0};
    return ++last;
}

void* ContextState::workspace(std::size_t bytes) {
    if (bytes <= workspace_capacity) return workspace_data;
    // Queued kernels may still read the old buffer; cudaFree alone does not promise to wait.
    UNCLIP_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (workspace_data) UNCLIP_CUDA_CHECK(cudaFree(workspace_data));
    workspace_data = nullptr;
    workspace_capacity = 0;
    workspace_generation = new_workspace_generation();
    const std::size_t rounded = (bytes + 255) / 256 * 256;
    if (cudaMalloc(&workspace_data, rounded) != cudaSuccess) {
        cudaGetLastError();
        throw Error(Status::out_of_memory, "CUDA workspace: cannot allocate " + std::to_string(rounded) + " bytes");
    }
    workspace_capacity = rounded;
    return workspace_data;
}

ContextState::~ContextState() {
    if (stream) cudaStreamSynchronize(stream);
    cudnn.reset();
    if (blas) cublasDestroy(blas);
    if (blas_workspace) cudaFree(blas_workspace);
    if (workspace_data) cudaFree(workspace_data);
    if (ids_data) cudaFree(ids_data);
    if (stream) cudaStreamDestroy(stream);
}

const std::int32_t* ContextState::upload_ids(const std::int32_t* host, std::int64_t n) {
    if (n > ids_capacity) {
        UNCLIP_CUDA_CHECK(cudaStreamSynchronize(stream));
        if (ids_data) UNCLIP_CUDA_CHECK(cudaFree(ids_data));
        ids_data = nullptr;
        ids_capacity = 0;
        UNCLIP_CUDA_CHECK(cudaMalloc(&ids_data, static_cast<std::size_t>(n) * sizeof(std::int32_t)));
        ids_capacity = n;
    }
    if (n > 0)
        UNCLIP_CUDA_CHECK(cudaMemcpyAsync(ids_data, host, static_cast<std::size_t>(n) * sizeof(std::int32_t),
                                          cudaMemcpyHostToDevice, stream));
    return ids_data;
}

void ContextState::allow_shared_memory(const void* kernel, std::size_t bytes) {
    const auto known = std::find_if(shared_memory_allowed.begin(), shared_memory_allowed.end(),
                                    [&](const auto& entry) { return entry.first == kernel; });
    if (known != shared_memory_allowed.end() && known->second >= bytes) return;
    UNCLIP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
    if (known != shared_memory_allowed.end()) known->second = bytes;
    else shared_memory_allowed.emplace_back(kernel, bytes);
}

}  // namespace unclip::cuda

namespace unclip {

CudaBackend::Context::Context(int device) : state_(std::make_unique<cuda::ContextState>()) {
    const int count = cuda::device_count();
    if (count == 0) throw Error(Status::device, "CUDA: " + cuda::device_description());
    if (device < 0 || device >= count)
        throw Error(Status::device, "CUDA: device " + std::to_string(device) + " requested, " + std::to_string(count) +
                                        " present");
    auto& s = *state_;
    s.device = device;
    UNCLIP_CUDA_CHECK(cudaSetDevice(device));
    UNCLIP_CUDA_CHECK(cudaDeviceGetAttribute(&s.multiprocessors, cudaDevAttrMultiProcessorCount, device));
    int shared = 0;
    UNCLIP_CUDA_CHECK(cudaDeviceGetAttribute(&s.compute_major, cudaDevAttrComputeCapabilityMajor, device));
    UNCLIP_CUDA_CHECK(cudaDeviceGetAttribute(&shared, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    s.shared_per_block = static_cast<std::size_t>(shared);
    UNCLIP_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    UNCLIP_CUBLAS_CHECK(cublasCreate(&s.blas));
    UNCLIP_CUBLAS_CHECK(cublasSetStream(s.blas, s.stream));  // (resets the workspace: set it after)
    const std::size_t blas_workspace_bytes = static_cast<std::size_t>(s.compute_major >= 9 ? 32 : 4) << 20;
    s.blas_workspace = cuda::allocate(blas_workspace_bytes);
    UNCLIP_CUBLAS_CHECK(cublasSetWorkspace(s.blas, s.blas_workspace, blas_workspace_bytes));
    // Plain fp32 GEMMs stay fp32: TF32 would cost the CLIP projections three digits.
    UNCLIP_CUBLAS_CHECK(cublasSetMathMode(s.blas, CUBLAS_DEFAULT_MATH));
    // Switches on by default; NAME=0 in the environment turns one off for every new context.
    const auto switched_on = [](const char* name) {
        const char* value = std::getenv(name);
        return !(value && std::strcmp(value, "0") == 0);
    };
    bias_epilogue_ = switched_on("UNCLIP_CUDA_LT_EPILOGUE");
    rounded_linear_inputs_ = switched_on("UNCLIP_CUDA_ROUNDED_INPUTS");
    graphs_ = switched_on("UNCLIP_CUDA_GRAPHS");
    device_sampling_ = switched_on("UNCLIP_CUDA_DEVICE_SAMPLING");
    cudnn_convolutions_ = switched_on("UNCLIP_CUDA_CUDNN");
    convolution_tuning_ = switched_on("UNCLIP_CUDA_CONV_TUNING");
    if (const char* tile = std::getenv("UNCLIP_CUDA_FLASH_TILE")) {
        FlashTile t{0, 0, 1};
        const int fields = std::sscanf(tile, "%dx%dx%d", &t.warps, &t.warp_rows, &t.blocks_per_sm);
        const std::string canonical = std::to_string(t.warps) + "x" + std::to_string(t.warp_rows) +
                                      (fields == 3 ? "x" + std::to_string(t.blocks_per_sm) : std::string());
        if ((fields != 2 && fields != 3) || canonical != tile)
            throw Error(Status::invalid_argument,
                        std::string("UNCLIP_CUDA_FLASH_TILE=") + tile + ": expected 8x16, 8x16x2, 4x32 or 8x32");
        set_flash_tile(t);
    }
}

void CudaBackend::Context::set_flash_tile(FlashTile tile) {
    const bool known = (tile.warps == 8 && tile.warp_rows == 16 && (tile.blocks_per_sm == 1 || tile.blocks_per_sm == 2)) ||
                       (tile.blocks_per_sm == 1 && tile.warp_rows == 32 && (tile.warps == 4 || tile.warps == 8));
    if (!known)
        throw Error(Status::invalid_argument, "CUDA flash-attention tile " + std::to_string(tile.warps) + "x" +
                                                  std::to_string(tile.warp_rows) + "x" + std::to_string(tile.blocks_per_sm) +
                                                  ": expected 8x16, 8x16x2, 4x32 or 8x32");
    flash_tile_ = tile;
}

CudaBackend::Context::~Context() = default;

CudaBackend::Context::Context(Context&&) noexcept = default;
CudaBackend::Context& CudaBackend::Context::operator=(Context&&) noexcept = default;

void CudaBackend::Context::synchronize() const { UNCLIP_CUDA_CHECK(cudaStreamSynchronize(state_->stream)); }

void CudaBackend::Context::activate() const { UNCLIP_CUDA_CHECK(cudaSetDevice(state_->device)); }

void CudaBackend::Context::reserve_workspace(std::size_t bytes) const { state_->workspace(bytes); }

std::size_t CudaBackend::Context::workspace_bytes() const noexcept { return state_->workspace_capacity; }

std::uint64_t CudaBackend::Context::bias_epilogue_calls() const noexcept { return state_->bias_epilogue_calls; }

std::uint64_t CudaBackend::Context::cudnn_convolution_calls() const noexcept { return state_->cudnn_convolution_calls; }

std::string CudaBackend::Context::convolution_path() const { return cuda::convolution_path(*this); }

void CudaBackend::Context::prepare_convolutions() const { cuda::prepare_convolutions(*this); }

std::vector<CudaBackend::ConvolutionTiming> CudaBackend::Context::convolution_timings() const {
    return cuda::convolution_timings(*this);
}

}  // namespace unclip
