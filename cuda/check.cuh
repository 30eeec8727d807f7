#pragma once
// Every CUDA runtime and cuBLAS call goes through UNCLIP_CUDA_CHECK / UNCLIP_CUBLAS_CHECK, which
// turn a failure into Error(Status::device) naming the call and the error code; every kernel
// launch is followed by UNCLIP_CUDA_CHECK_LAUNCH().
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace unclip::cuda::detail {
[[noreturn]] void throw_cuda_error(const char* call, cudaError_t code);
[[noreturn]] void throw_cublas_error(const char* call, cublasStatus_t code);
}  // namespace unclip::cuda::detail

#define UNCLIP_CUDA_CHECK(call)                                                        \
    do {                                                                               \
        const cudaError_t unclip_cuda_status_ = (call);                                \
        if (unclip_cuda_status_ != cudaSuccess)                                        \
            ::unclip::cuda::detail::throw_cuda_error(#call, unclip_cuda_status_);      \
    } while (0)

#define UNCLIP_CUBLAS_CHECK(call)                                                      \
    do {                                                                               \
        const cublasStatus_t unclip_cublas_status_ = (call);                           \
        if (unclip_cublas_status_ != CUBLAS_STATUS_SUCCESS)                            \
            ::unclip::cuda::detail::throw_cublas_error(#call, unclip_cublas_status_);  \
    } while (0)

#define UNCLIP_CUDA_CHECK_LAUNCH() UNCLIP_CUDA_CHECK(cudaGetLastError())
