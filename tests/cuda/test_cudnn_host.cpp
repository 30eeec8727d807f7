// Loading cuDNN at run time (cuda/cudnn_library.cu): a missing file, a library that is not cuDNN,
// and the real one where this machine has it, each described by name. Needs no GPU: dlopen and
// cudnnGetVersion run without one.
#include <string>

#include <doctest/doctest.h>

#include "cudnn_library.cuh"
#include "unclip/backend/cuda.hpp"

using unclip::cuda::cudnn_library_description;

namespace {
bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }
}  // namespace

TEST_CASE("cuDNN: a missing library file is named in the reason, and nothing is loaded") {
    const std::string why = cudnn_library_description("/nonexistent/folder/libcudnn.so.9");
    INFO(why);
#if UNCLIP_HAVE_CUDNN
    CHECK(starts_with(why, "cuDNN not loaded: "));
    CHECK(why.find("/nonexistent/folder/libcudnn.so.9") != std::string::npos);
#else
    CHECK(starts_with(why, "cuDNN not used: "));
#endif
}

TEST_CASE("cuDNN: a library without cuDNN's functions is refused, naming the first one missing") {
    const std::string why = cudnn_library_description("libm.so.6");
    INFO(why);
#if UNCLIP_HAVE_CUDNN
    CHECK(why == "cuDNN not loaded: libm.so.6 has no cudnnGetVersion");
#else
    CHECK(starts_with(why, "cuDNN not used: "));
#endif
}

TEST_CASE("cuDNN: the process's choice agrees with its description, and a 9.x library on the path loads") {
    const std::string chosen = unclip::cuda::cudnn_description();
    INFO(chosen);
    CHECK(unclip::cuda::cudnn_available() == starts_with(chosen, "cuDNN 9."));
    const std::string system = cudnn_library_description("libcudnn.so.9");
    if (starts_with(system, "cuDNN not loaded: ")) {
        MESSAGE("no libcudnn.so.9 on this machine's loader path (" << system << "): the version check is not exercised");
        return;
    }
    INFO(system);
#if UNCLIP_HAVE_CUDNN
    CHECK(starts_with(system, "cuDNN 9."));
    CHECK(system.find("(libcudnn.so.9)") != std::string::npos);
#endif
}

#if UNCLIP_HAVE_CUDNN
TEST_CASE("cuDNN: a failed call's status is taken as a refusal of the machine, of the geometry, or as an error") {
    using unclip::cuda::CudnnRefusal;
    using unclip::cuda::cudnn_refusal_of;
    for (const cudnnStatus_t status :
         {CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER, CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH,
          CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE, CUDNN_STATUS_NOT_INITIALIZED,
          CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED, CUDNN_STATUS_LICENSE_ERROR, CUDNN_STATUS_DEPRECATED})
        CHECK(cudnn_refusal_of(status) == CudnnRefusal::machine);
    for (const cudnnStatus_t status :
         {CUDNN_STATUS_NOT_SUPPORTED, CUDNN_STATUS_NOT_SUPPORTED_SHAPE, CUDNN_STATUS_NOT_SUPPORTED_LAYOUT,
          CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT, CUDNN_STATUS_INTERNAL_ERROR_COMPILATION_FAILED,
          CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED})
        CHECK(cudnn_refusal_of(status) == CudnnRefusal::geometry);
    // A wrong argument, an internal error, a failed launch: the call's own failure.
    for (const cudnnStatus_t status : {CUDNN_STATUS_BAD_PARAM, CUDNN_STATUS_BAD_PARAM_NULL_POINTER, CUDNN_STATUS_INTERNAL_ERROR,
                                       CUDNN_STATUS_EXECUTION_FAILED})
        CHECK(cudnn_refusal_of(status) == CudnnRefusal::error);
}
#endif
