#pragma once
// cuDNN, loaded at run time with dlopen: a build needs only cudnn.h, and a machine without the
// library (or with another major version) runs every convolution through im2col and cuBLAS.
// Only the v7-style convolution calls are used; cuDNN 9 keeps them, deprecated but unchanged
// across its minor versions, which is what lets a binary built against one 9.x load another.
#include <string>

#include "unclip/error.hpp"

#if UNCLIP_HAVE_CUDNN
#include <cudnn.h>
#endif

namespace unclip::cuda {

// What cudnn_description() would say were UNCLIP_CUDNN_LIBRARY `file`: loads it (dlopen keeps
// it loaded) and checks its functions and version, without touching the process's choice.
std::string cudnn_library_description(const std::string& file);

#if UNCLIP_HAVE_CUDNN
#define UNCLIP_CUDNN_FUNCTIONS(X)                                                                                 \
    X(cudnnGetVersion) X(cudnnGetErrorString) X(cudnnCreate) X(cudnnDestroy) X(cudnnSetStream)                   \
    X(cudnnCreateTensorDescriptor) X(cudnnSetTensor4dDescriptor) X(cudnnDestroyTensorDescriptor)                \
    X(cudnnCreateFilterDescriptor) X(cudnnSetFilter4dDescriptor) X(cudnnDestroyFilterDescriptor)                \
    X(cudnnCreateConvolutionDescriptor) X(cudnnSetConvolution2dDescriptor) X(cudnnSetConvolutionMathType)       \
    X(cudnnDestroyConvolutionDescriptor) X(cudnnGetConvolutionForwardAlgorithm_v7)                              \
    X(cudnnGetConvolutionForwardWorkspaceSize) X(cudnnConvolutionForward)

struct CudnnApi {
#define UNCLIP_CUDNN_POINTER(name) decltype(&::name) name = nullptr;
    UNCLIP_CUDNN_FUNCTIONS(UNCLIP_CUDNN_POINTER)
#undef UNCLIP_CUDNN_POINTER
};

// The library's functions, loaded on the first call; nullptr when it could not be loaded
// (cudnn_description() says why).
const CudnnApi* cudnn_api() noexcept;

// A failed cuDNN call: Error(Status::device) naming the call, with cuDNN's status kept so that a
// caller can tell a refusal of the machine from one of a geometry.
class CudnnError : public Error {
public:
    CudnnError(const std::string& message, cudnnStatus_t status) : Error(Status::device, message), cudnn_status_(status) {}
    cudnnStatus_t cudnn_status() const noexcept { return cudnn_status_; }

private:
    cudnnStatus_t cudnn_status_;
};

// How a failed cuDNN call of a convolution's is taken:
//   machine   cuDNN cannot serve this machine (driver, runtime, architecture, a sub-library, not
//             initialised, licence, the legacy calls withdrawn): it ends cuDNN for the context;
//   geometry  not this convolution (not supported, a kernel that failed to compile, no memory for
//             cuDNN's own buffers): im2col serves the geometry;
//   error     anything else, an error of the call.
enum class CudnnRefusal { error, geometry, machine };

inline CudnnRefusal cudnn_refusal_of(cudnnStatus_t status) noexcept {
    switch (status) {
    case CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER:
    case CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDART:
    case CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH:
    case CUDNN_STATUS_NOT_SUPPORTED_RUNTIME_PREREQUISITE_MISSING:
    case CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE:
    case CUDNN_STATUS_NOT_INITIALIZED:
    case CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH:
    case CUDNN_STATUS_LICENSE_ERROR:
    case CUDNN_STATUS_DEPRECATED:
    case CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED: return CudnnRefusal::machine;
    case CUDNN_STATUS_INTERNAL_ERROR_COMPILATION_FAILED:
    case CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED:
    case CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED: return CudnnRefusal::geometry;
    default: break;
    }
    return CUDNN_STATUS_CATEGORY(status) == CUDNN_STATUS_NOT_SUPPORTED ? CudnnRefusal::geometry : CudnnRefusal::error;
}

// Throws CudnnError naming the call and cuDNN's status.
[[noreturn]] void throw_cudnn_error(const CudnnApi& api, const char* call, cudnnStatus_t status);
#endif

}  // namespace unclip::cuda

// Every cuDNN call goes through the loaded table: UNCLIP_CUDNN_CHECK(api, cudnnCreate(&handle)).
#define UNCLIP_CUDNN_CHECK(api, call)                                                         \
    do {                                                                                      \
        const cudnnStatus_t unclip_cudnn_status_ = (api).call;                                \
        if (unclip_cudnn_status_ != CUDNN_STATUS_SUCCESS)                                     \
            ::unclip::cuda::throw_cudnn_error((api), #call, unclip_cudnn_status_);            \
    } while (0)
