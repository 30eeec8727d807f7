// Loading cuDNN (cudnn_library.cuh). UNCLIP_CUDNN_LIBRARY names the file to load; by default the
// dynamic loader looks for libcudnn.so.9 (LD_LIBRARY_PATH, the system's library folders).
#include <cstdlib>
#include <string>

#if UNCLIP_HAVE_CUDNN && !defined(_WIN32)
#include <dlfcn.h>
#endif

#include "cudnn_library.cuh"
#include "unclip/backend/cuda.hpp"
#include "unclip/error.hpp"

namespace unclip::cuda {
namespace {

struct Loaded {
    bool usable = false;
    std::string description;
#if UNCLIP_HAVE_CUDNN
    CudnnApi api;
#endif
};

Loaded load(const std::string& file) {
    Loaded result;
#if !UNCLIP_HAVE_CUDNN
    (void)file;
    result.description = "cuDNN not used: unclip was built without cuDNN's headers (cudnn.h)";
#elif defined(_WIN32)
    (void)file;
    result.description = "cuDNN not used: loading it is implemented for Linux only";
#else
    // The handle is kept for the life of the process: contexts may hold cuDNN handles until exit.
    void* library = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        const char* why = dlerror();
        result.description = "cuDNN not loaded: " + (why ? std::string(why) : file + ": dlopen failed");
        return result;
    }
#define UNCLIP_CUDNN_RESOLVE(name)                                                                  \
    if (void* symbol = dlsym(library, #name)) result.api.name = reinterpret_cast<decltype(&::name)>(symbol); \
    else {                                                                                          \
        result.description = "cuDNN not loaded: " + file + " has no " #name;                       \
        return result;                                                                              \
    }
    UNCLIP_CUDNN_FUNCTIONS(UNCLIP_CUDNN_RESOLVE)
#undef UNCLIP_CUDNN_RESOLVE
    const std::size_t version = result.api.cudnnGetVersion();  // major * 10000 + minor * 100 + patch
    const std::string dotted = std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
                               std::to_string(version % 100);
    if (version / 10000 != CUDNN_MAJOR) {
        result.description = "cuDNN not used: " + file + " is version " + dotted + ", unclip was built for " +
                             std::to_string(CUDNN_MAJOR) + ".x";
        return result;
    }
    result.usable = true;
    result.description = "cuDNN " + dotted + " (" + file + ")";
#endif
    return result;
}

std::string configured_file() {
    const char* configured = std::getenv("UNCLIP_CUDNN_LIBRARY");
    return configured && *configured ? configured : "libcudnn.so.9";
}

const Loaded& loaded() {
    static const Loaded library = load(configured_file());
    return library;
}

}  // namespace

#if UNCLIP_HAVE_CUDNN
const CudnnApi* cudnn_api() noexcept {
    try {
        return loaded().usable ? &loaded().api : nullptr;
    } catch (...) {  // only std::bad_alloc building the description
        return nullptr;
    }
}

void throw_cudnn_error(const CudnnApi& api, const char* call, cudnnStatus_t status) {
    throw CudnnError(std::string("cuDNN ") + call + ": " + api.cudnnGetErrorString(status) + " (" +
                         std::to_string(static_cast<int>(status)) + ")",
                     status);
}
#endif

std::string cudnn_library_description(const std::string& file) { return load(file).description; }

bool cudnn_available() noexcept {
    try {
        return loaded().usable;
    } catch (...) {
        return false;
    }
}

std::string cudnn_description() {
    try {
        return loaded().description;
    } catch (...) {
        return "cuDNN not loaded: out of memory";
    }
}

}  // namespace unclip::cuda
