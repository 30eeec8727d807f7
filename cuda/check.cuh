#pragma once
// Every CUDA runtime call goes through UNCLIP_CUDA_CHECK, which turns a failure into
// Error(Status::device) naming the call and the error code.
#include <cuda_runtime.h>

namespace unclip::cuda::detail {
[[noreturn]] void throw_cuda_error(const char* call, cudaError_t code);
}

#define UNCLIP_CUDA_CHECK(call)                                                        \
    do {                                                                               \
        const cudaError_t unclip_cuda_status_ = (call);                                \
        if (unclip_cuda_status_ != cudaSuccess)                                        \
            ::unclip::cuda::detail::throw_cuda_error(#call, unclip_cuda_status_);      \
    } while (0)
