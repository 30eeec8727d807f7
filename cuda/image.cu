// Image pre- and post-processing on the GPU: the VAE encoder's input, the decoded pixels' bytes and
// the CLIP resamplings, each output value computed by the formulas the CPU uses
// (unclip/backend/image_prep.hpp). Compiled with --fmad=false, as those formulas are written with
// each multiply and add rounded on its own.
#include "check.cuh"
#include "context.cuh"
#include "unclip/backend/cuda.hpp"
#include "unclip/backend/image_prep.hpp"

namespace unclip {
namespace {
using backend::ClipResample;
using backend::ImageBytes;
using cuda::first_index;
using cuda::grid_stride;

constexpr int kThreads = 256;

__global__ void vae_input_kernel(const ImageBytes image, std::int64_t x0, std::int64_t y0, std::int64_t height,
                                 std::int64_t width, float* out) {
    const std::int64_t plane = height * width;
    for (std::int64_t i = first_index(); i < 3 * plane; i += grid_stride()) {
        const auto c = static_cast<int>(i / plane);
        const std::int64_t y = (i % plane) / width, x = i % width;
        out[i] = backend::vae_input_at(image, x0, y0, c, y, x);
    }
}

// Thread per output pixel: its three channels from the three planes, written next to each other.
__global__ void to_rgb8_kernel(const float* __restrict__ x, std::int64_t batch, std::int64_t plane,
                               std::uint8_t* __restrict__ y) {
    for (std::int64_t i = first_index(); i < batch * plane; i += grid_stride()) {
        const std::int64_t b = i / plane, p = i - b * plane;
        for (int c = 0; c < 3; ++c) y[i * 3 + c] = backend::decoded_byte(x[(b * 3 + c) * plane + p]);
    }
}

__global__ void torch_width_kernel(const ClipResample r, float* rows) {
    __shared__ float unit[256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) unit[i] = static_cast<float>(i) / 255.0f;
    __syncthreads();
    const std::int64_t per_channel = r.image.height * r.size;
    for (std::int64_t i = first_index(); i < 3 * per_channel; i += grid_stride()) {
        const auto c = static_cast<int>(i / per_channel);
        rows[i] = backend::torch_width_pass(r, unit, c, (i % per_channel) / r.size, i % r.size);
    }
}

__global__ void torch_height_kernel(const ClipResample r, const float* rows, float* out) {
    const std::int64_t plane = r.size * r.size;
    for (std::int64_t i = first_index(); i < 3 * plane; i += grid_stride()) {
        const auto c = static_cast<int>(i / plane);
        out[i] = backend::torch_height_pass(r, rows, c, (i % plane) / r.size, i % r.size);
    }
}

__global__ void pil_width_kernel(const ClipResample r, std::uint8_t* rows) {
    const std::int64_t per_channel = r.image.height * r.size;
    for (std::int64_t i = first_index(); i < 3 * per_channel; i += grid_stride()) {
        const auto c = static_cast<int>(i / per_channel);
        rows[i] = backend::pil_width_pass(r, c, (i % per_channel) / r.size, i % r.size);
    }
}

__global__ void pil_height_kernel(const ClipResample r, const std::uint8_t* rows, float* out) {
    const std::int64_t plane = r.size * r.size;
    for (std::int64_t i = first_index(); i < 3 * plane; i += grid_stride()) {
        const auto c = static_cast<int>(i / plane);
        out[i] = backend::pil_height_pass(r, rows, c, (i % plane) / r.size, i % r.size);
    }
}
}  // namespace

void CudaBackend::upload_bytes(const Context& ctx, const void* host, void* device, std::size_t n) {
    if (n == 0) return;
    const cudaStream_t stream = ctx.state().stream;
    UNCLIP_CUDA_CHECK(cudaMemcpyAsync(device, host, n, cudaMemcpyHostToDevice, stream));
    // A pinned buffer is read by the copy engine later: wait, so the caller may reuse it (upload's rule).
    cudaPointerAttributes attributes{};
    UNCLIP_CUDA_CHECK(cudaPointerGetAttributes(&attributes, host));
    if (attributes.type != cudaMemoryTypeUnregistered) UNCLIP_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void CudaBackend::vae_input(const Context& ctx, const backend::ImageBytes& image, std::int64_t x0, std::int64_t y0,
                            std::int64_t height, std::int64_t width, float* out) {
    const std::int64_t n = 3 * height * width;
    if (n <= 0) return;
    vae_input_kernel<<<cuda::blocks_for(n, kThreads), kThreads, 0, ctx.state().stream>>>(image, x0, y0, height, width, out);
    UNCLIP_CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::to_rgb8(const Context& ctx, const float* x, std::int64_t batch, std::int64_t height, std::int64_t width,
                          std::uint8_t* y) {
    const std::int64_t plane = height * width;
    if (batch <= 0 || plane <= 0) return;
    to_rgb8_kernel<<<cuda::blocks_for(batch * plane, kThreads), kThreads, 0, ctx.state().stream>>>(x, batch, plane, y);
    UNCLIP_CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::clip_resample(const Context& ctx, const backend::ClipResample& resample, void* rows, float* out) {
    const cudaStream_t stream = ctx.state().stream;
    const std::int64_t row_values = 3 * resample.image.height * resample.size, outputs = 3 * resample.size * resample.size;
    if (row_values <= 0) return;
    if (resample.pil) {
        pil_width_kernel<<<cuda::blocks_for(row_values, kThreads), kThreads, 0, stream>>>(resample,
                                                                                          static_cast<std::uint8_t*>(rows));
        pil_height_kernel<<<cuda::blocks_for(outputs, kThreads), kThreads, 0, stream>>>(
            resample, static_cast<const std::uint8_t*>(rows), out);
    } else {
        torch_width_kernel<<<cuda::blocks_for(row_values, kThreads), kThreads, 0, stream>>>(resample,
                                                                                            static_cast<float*>(rows));
        torch_height_kernel<<<cuda::blocks_for(outputs, kThreads), kThreads, 0, stream>>>(
            resample, static_cast<const float*>(rows), out);
    }
    UNCLIP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace unclip
