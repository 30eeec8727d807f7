// The CUDA primitives of a build without CUDA: each reports Status::device, so the C++ API is the
// same with or without the backend.
#include "unclip/backend/cuda.hpp"
#include "unclip/error.hpp"

namespace unclip::cuda {
namespace {
[[noreturn]] void unavailable(const char* what) {
    throw Error(Status::device, std::string(what) + ": unclip was built without CUDA (configure with UNCLIP_CUDA=ON)");
}
}  // namespace

int device_count() noexcept { return 0; }
std::string device_description() { return "no CUDA device: unclip was built without CUDA"; }
bool compiled_with_cuda() noexcept { return false; }
void* allocate(std::size_t) { unavailable("cuda::allocate"); }
void deallocate(void*) noexcept {}
void copy(void*, const void*, std::size_t, CopyKind) { unavailable("cuda::copy"); }
void convert_f32_to_f16(const float*, void*, std::size_t) { unavailable("cuda::convert_f32_to_f16"); }
void convert_f16_to_f32(const void*, float*, std::size_t) { unavailable("cuda::convert_f16_to_f32"); }
}  // namespace unclip::cuda
