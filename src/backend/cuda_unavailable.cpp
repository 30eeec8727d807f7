// The CUDA primitives of a build without CUDA: each reports Status::device, so the C++ API (and
// every module template instantiated over CudaBackend) is the same with or without the backend.
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
bool cudnn_available() noexcept { return false; }
std::string cudnn_description() { return "cuDNN not used: unclip was built without CUDA"; }
void* allocate(std::size_t) { unavailable("cuda::allocate"); }
void deallocate(void*) noexcept {}
void* allocate_pinned(std::size_t) { unavailable("cuda::allocate_pinned"); }
void deallocate_pinned(void*) noexcept {}
void copy(void*, const void*, std::size_t, CopyKind) { unavailable("cuda::copy"); }
void memory_info(std::size_t& free_bytes, std::size_t& total_bytes) noexcept { free_bytes = total_bytes = 0; }
void convert_f32_to_f16(const float*, void*, std::size_t) { unavailable("cuda::convert_f32_to_f16"); }
void convert_f16_to_f32(const void*, float*, std::size_t) { unavailable("cuda::convert_f16_to_f32"); }
struct ContextState {};
}  // namespace unclip::cuda

namespace unclip {
using cuda::unavailable;

CudaBackend::Context::Context(int) { unavailable("CudaBackend::Context"); }
CudaBackend::Context::~Context() = default;
CudaBackend::Context::Context(Context&&) noexcept = default;
CudaBackend::Context& CudaBackend::Context::operator=(Context&&) noexcept = default;
void CudaBackend::Context::synchronize() const { unavailable("CudaBackend::Context::synchronize"); }
void CudaBackend::Context::activate() const { unavailable("CudaBackend::Context::activate"); }
void CudaBackend::Context::reserve_workspace(std::size_t) const { unavailable("CudaBackend::Context::reserve_workspace"); }
std::size_t CudaBackend::Context::workspace_bytes() const noexcept { return 0; }
std::uint64_t CudaBackend::Context::bias_epilogue_calls() const noexcept { return 0; }
std::uint64_t CudaBackend::Context::cudnn_convolution_calls() const noexcept { return 0; }
std::string CudaBackend::Context::convolution_path() const { unavailable("CudaBackend::Context::convolution_path"); }
void CudaBackend::Context::prepare_convolutions() const { unavailable("CudaBackend::Context::prepare_convolutions"); }
std::vector<CudaBackend::ConvolutionTiming> CudaBackend::Context::convolution_timings() const { return {}; }
void CudaBackend::Context::set_flash_tile(FlashTile) { unavailable("CudaBackend::Context::set_flash_tile"); }

struct CudaBackend::Graph::State {};
CudaBackend::Graph::Graph() noexcept = default;
CudaBackend::Graph::~Graph() = default;
CudaBackend::Graph::Graph(Graph&&) noexcept = default;
CudaBackend::Graph& CudaBackend::Graph::operator=(Graph&&) noexcept = default;
CudaBackend::Graph CudaBackend::Graph::record(const Context&, const std::function<void()>&) {
    unavailable("CudaBackend::Graph::record");
}
bool CudaBackend::Graph::current(const Context&) const noexcept { return false; }
void CudaBackend::Graph::launch(const Context&) const { unavailable("CudaBackend::Graph::launch"); }
std::size_t CudaBackend::Graph::operations() const noexcept { return 0; }

struct CudaBackend::Fence::State {};
CudaBackend::Fence::Fence() noexcept = default;
CudaBackend::Fence::~Fence() = default;
CudaBackend::Fence::Fence(Fence&&) noexcept = default;
CudaBackend::Fence& CudaBackend::Fence::operator=(Fence&&) noexcept = default;
void CudaBackend::Fence::mark(const Context&) { unavailable("CudaBackend::Fence::mark"); }
void CudaBackend::Fence::wait() const {}
void CudaBackend::latent_update(const Context&, const backend::LatentUpdateArgs&) {
    unavailable("CudaBackend::latent_update");
}

void CudaBackend::upload_bytes(const Context&, const void*, void*, std::size_t) { unavailable("CudaBackend::upload_bytes"); }
void CudaBackend::vae_input(const Context&, const backend::ImageBytes&, std::int64_t, std::int64_t, std::int64_t,
                            std::int64_t, float*) {
    unavailable("CudaBackend::vae_input");
}
void CudaBackend::clip_resample(const Context&, const backend::ClipResample&, void*, float*) {
    unavailable("CudaBackend::clip_resample");
}
void CudaBackend::upload(const Context&, const float*, float*, std::int64_t) { unavailable("CudaBackend::upload"); }
void CudaBackend::download(const Context&, const float*, float*, std::int64_t) { unavailable("CudaBackend::download"); }
void CudaBackend::copy(const Context&, const float*, float*, std::int64_t) { unavailable("CudaBackend::copy"); }
void CudaBackend::concat_channels(const Context&, const float*, std::int64_t, const float*, std::int64_t, float*,
                                  std::int64_t, std::int64_t) {
    unavailable("CudaBackend::concat_channels");
}
void CudaBackend::timestep_embedding(const Context&, const float*, std::int64_t, std::int64_t, float*) {
    unavailable("CudaBackend::timestep_embedding");
}
void CudaBackend::gemm(const Context&, bool, bool, std::int64_t, std::int64_t, std::int64_t, float, const float*,
                       std::int64_t, const float*, std::int64_t, float, float*, std::int64_t) {
    unavailable("CudaBackend::gemm");
}
void CudaBackend::linear(const Context&, const float*, std::int64_t, std::int64_t, std::int64_t, const void*, DType,
                         const float*, float*, bool) {
    unavailable("CudaBackend::linear");
}
std::size_t CudaBackend::conv2d_scratch_bytes(const Conv2dArgs&) noexcept { return 0; }
void CudaBackend::conv2d(const Context&, const Conv2dArgs&, Scratch&) { unavailable("CudaBackend::conv2d"); }
void CudaBackend::group_norm(const Context&, const float*, const float*, const float*, float*, std::int64_t,
                             std::int64_t, std::int64_t, int, float, bool) {
    unavailable("CudaBackend::group_norm");
}
void CudaBackend::group_norm_affine(const Context&, const float*, const float*, const float*, std::int64_t, std::int64_t,
                                    std::int64_t, int, float, float*, float*, const float*) {
    unavailable("CudaBackend::group_norm_affine");
}
void CudaBackend::layer_norm(const Context&, const float*, const float*, const float*, float*, std::int64_t,
                             std::int64_t, float) {
    unavailable("CudaBackend::layer_norm");
}
void CudaBackend::gelu(const Context&, const float*, float*, std::int64_t) { unavailable("CudaBackend::gelu"); }
void CudaBackend::quick_gelu(const Context&, const float*, float*, std::int64_t) { unavailable("CudaBackend::quick_gelu"); }
void CudaBackend::geglu(const Context&, const float*, float*, std::int64_t, std::int64_t) { unavailable("CudaBackend::geglu"); }
void CudaBackend::linear_rounded(const Context&, const void*, DType, std::int64_t, std::int64_t, std::int64_t, const void*,
                                 DType, const float*, float*, bool) {
    unavailable("CudaBackend::linear_rounded");
}
void CudaBackend::layer_norm_rounded(const Context&, const float*, const float*, const float*, void*, DType, std::int64_t,
                                     std::int64_t, float) {
    unavailable("CudaBackend::layer_norm_rounded");
}
void CudaBackend::geglu_rounded(const Context&, const float*, void*, DType, std::int64_t, std::int64_t) {
    unavailable("CudaBackend::geglu_rounded");
}
void CudaBackend::attention(const Context&, const AttentionArgs&) { unavailable("CudaBackend::attention"); }
void CudaBackend::channels_to_tokens(const Context&, const float*, float*, std::int64_t, std::int64_t, std::int64_t) {
    unavailable("CudaBackend::channels_to_tokens");
}
void CudaBackend::tokens_to_channels(const Context&, const float*, float*, std::int64_t, std::int64_t, std::int64_t,
                                     bool) {
    unavailable("CudaBackend::tokens_to_channels");
}
void CudaBackend::upsample_nearest(const Context&, const float*, float*, std::int64_t, std::int64_t, std::int64_t,
                                   std::int64_t, std::int64_t, std::int64_t) {
    unavailable("CudaBackend::upsample_nearest");
}
void CudaBackend::silu(const Context&, const float*, float*, std::int64_t) { unavailable("CudaBackend::silu"); }
void CudaBackend::add_channel_bias(const Context&, const float*, const float*, float*, std::int64_t, std::int64_t,
                                   std::int64_t) {
    unavailable("CudaBackend::add_channel_bias");
}
void CudaBackend::add_row_bias(const Context&, float*, const float*, std::int64_t, std::int64_t) {
    unavailable("CudaBackend::add_row_bias");
}
void CudaBackend::add(const Context&, const float*, float*, std::int64_t) { unavailable("CudaBackend::add"); }
void CudaBackend::gather_rows(const Context&, const float*, const std::int32_t*, std::int64_t, std::int64_t, float*) {
    unavailable("CudaBackend::gather_rows");
}
void CudaBackend::channels_to_tokens_rounded(const Context&, const float*, const float*, const float*, void*, DType,
                                             std::int64_t, std::int64_t, std::int64_t) {
    unavailable("CudaBackend::channels_to_tokens_rounded");
}
void CudaBackend::to_rgb8(const Context&, const float*, std::int64_t, std::int64_t, std::int64_t, std::uint8_t*) {
    unavailable("CudaBackend::to_rgb8");
}
void CudaBackend::download_bytes(const Context&, const void*, void*, std::size_t) {
    unavailable("CudaBackend::download_bytes");
}
void CudaBackend::extract_patches(const Context&, const float*, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                                  int, float*) {
    unavailable("CudaBackend::extract_patches");
}

}  // namespace unclip
