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
