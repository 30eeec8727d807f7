#include <string>

#include "check.cuh"
#include "unclip/error.hpp"

namespace unclip::cuda::detail {
void throw_cuda_error(const char* call, cudaError_t code) {
    throw Error(Status::device, std::string(call) + ": " + cudaGetErrorName(code) + " (" +
                                    std::to_string(static_cast<int>(code)) + "): " + cudaGetErrorString(code));
}
}  // namespace unclip::cuda::detail

namespace unclip::cuda::detail {
void throw_cublas_error(const char* call, cublasStatus_t code) {
    throw Error(Status::device, std::string(call) + ": " + cublasGetStatusName(code) + " (" +
                                    std::to_string(static_cast<int>(code)) + "): " + cublasGetStatusString(code));
}
}  // namespace unclip::cuda::detail
