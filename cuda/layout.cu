// Copies and data movement: host <-> device, channel concatenation, the channels <-> tokens
// transposes, nearest upsampling, embedding gathers and ViT patch extraction. Kernels are
// grid-stride loops over the output, so every write is coalesced; the float4 paths need 16-byte
// aligned pointers and segment lengths that are multiples of 4.
#include <algorithm>
#include <cstdint>

#include "check.cuh"
#include "context.cuh"
#include "convert.cuh"
#include "unclip/backend/cuda.hpp"

namespace unclip {
namespace {
using cuda::aligned16;
using cuda::first_index;
using cuda::grid_stride;

constexpr int kThreads = 256;
constexpr int kTile = 32;
constexpr int kTileRowsPerPass = 8;

std::size_t float_bytes(std::int64_t n) { return static_cast<std::size_t>(n) * sizeof(float); }

// y [B, a_len + b_len] from a [B, a_len] and b [B, b_len], in units of V (float or float4).
template <class V>
__global__ void concat_kernel(const V* a, std::int64_t a_len, const V* b, std::int64_t b_len, V* y,
                              std::int64_t total) {
    const std::int64_t row_len = a_len + b_len;
    for (std::int64_t i = first_index(); i < total; i += grid_stride()) {
        const std::int64_t row = i / row_len, k = i - row * row_len;
        y[i] = k < a_len ? a[row * a_len + k] : b[row * b_len + k - a_len];
    }
}

// x [batch, rows, cols] -> y [batch, cols, rows], one 32x32 tile per block step. A (32, 8) block
// reads the tile row by row into shared memory (coalesced along cols) and writes it column by column
// (coalesced along rows); the padding column keeps both phases free of bank conflicts. With scale
// (and shift, [batch * rows]) each row's affine map is applied as it is read, one fma per value
// (channels_to_tokens_rounded: a GroupNorm); To is the output type, float or a half type.
template <class To, bool Accumulate>
__global__ void transpose_kernel(const float* __restrict__ x, const float* __restrict__ scale,
                                 const float* __restrict__ shift, To* __restrict__ y, std::int64_t batch,
                                 std::int64_t rows, std::int64_t cols) {
    __shared__ float tile[kTile][kTile + 1];
    const std::int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
    const std::int64_t tiles = batch * row_tiles * col_tiles;
    for (std::int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
        const std::int64_t col_tile = t % col_tiles, rest = t / col_tiles;
        const std::int64_t r0 = rest % row_tiles * kTile, c0 = col_tile * kTile, b = rest / row_tiles;
        const float* in = x + b * rows * cols;
        To* out = y + b * rows * cols;
        for (int j = threadIdx.y; j < kTile; j += kTileRowsPerPass) {
            const std::int64_t r = r0 + j, c = c0 + threadIdx.x;
            if (r < rows && c < cols) {
                const float v = in[r * cols + c];
                tile[j][threadIdx.x] = scale ? fmaf(v, scale[b * rows + r], shift[b * rows + r]) : v;
            }
        }
        __syncthreads();
        for (int j = threadIdx.y; j < kTile; j += kTileRowsPerPass) {
            const std::int64_t c = c0 + j, r = r0 + threadIdx.x;
            if (c < cols && r < rows) {
                if constexpr (Accumulate) out[c * rows + r] += tile[threadIdx.x][j];
                else out[c * rows + r] = cuda::from_float<To>(tile[threadIdx.x][j]);
            }
        }
        __syncthreads();  // the next tile overwrites the shared memory
    }
}

// One block per output row (plane * out_h + oy), threads along ox; source indices as the CPU's.
__global__ void upsample_nearest_kernel(const float* __restrict__ x, float* __restrict__ y, std::int64_t planes,
                                        std::int64_t h, std::int64_t w, std::int64_t out_h, std::int64_t out_w) {
    for (std::int64_t row = blockIdx.x; row < planes * out_h; row += gridDim.x) {
        const std::int64_t oy = row % out_h, plane = row / out_h;
        const float* src = x + (plane * h + std::min(h - 1, oy * h / out_h)) * w;
        float* dst = y + row * out_w;
        for (std::int64_t ox = threadIdx.x; ox < out_w; ox += blockDim.x) dst[ox] = src[std::min(w - 1, ox * w / out_w)];
    }
}

// One block per output row i (and i + gridDim.x, ...), threads along the row, in units of V.
template <class V>
__global__ void gather_rows_kernel(const V* __restrict__ table, const std::int32_t* __restrict__ ids, std::int64_t n,
                                   std::int64_t cols, V* __restrict__ y) {
    for (std::int64_t i = blockIdx.x; i < n; i += gridDim.x) {
        const V* src = table + static_cast<std::int64_t>(ids[i]) * cols;
        for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) y[i * cols + c] = src[c];
    }
}

// Thread per output element of y [B, patches, C * k * k]; consecutive threads read runs of k
// consecutive pixels.
__global__ void extract_patches_kernel(const float* __restrict__ x, std::int64_t batch, std::int64_t channels,
                                       std::int64_t height, std::int64_t width, std::int64_t k,
                                       float* __restrict__ y) {
    const std::int64_t grid_w = width / k, patches = height / k * grid_w, row_len = channels * k * k;
    const std::int64_t total = batch * patches * row_len;
    for (std::int64_t i = first_index(); i < total; i += grid_stride()) {
        const std::int64_t col = i % row_len, p = i / row_len;
        const std::int64_t kx = col % k, ky = col / k % k, c = col / (k * k);
        const std::int64_t b = p / patches, py = p % patches / grid_w, px = p % grid_w;
        y[i] = x[((b * channels + c) * height + py * k + ky) * width + px * k + kx];
    }
}

template <class To, bool Accumulate = false>
void transpose(const CudaBackend::Context& ctx, const float* x, To* y, std::int64_t batch, std::int64_t rows,
               std::int64_t cols, const float* scale = nullptr, const float* shift = nullptr) {
    if (batch <= 0 || rows <= 0 || cols <= 0) return;
    const std::int64_t tiles = batch * ((rows + kTile - 1) / kTile) * ((cols + kTile - 1) / kTile);
    transpose_kernel<To, Accumulate><<<cuda::blocks_for(tiles, 1), dim3(kTile, kTileRowsPerPass), 0, ctx.state().stream>>>(
        x, scale, shift, y, batch, rows, cols);
    UNCLIP_CUDA_CHECK_LAUNCH();
}
}  // namespace

// A pinned (page-locked) source is copied later, while the copy runs; from pageable memory the
// driver stages the data before returning. Waiting in the pinned case keeps the promise that the
// host buffer may be reused when upload returns.
void CudaBackend::upload(const Context& ctx, const float* host, float* device, std::int64_t n) {
    if (n <= 0) return;
    cuda::ContextState& state = ctx.state();
    UNCLIP_CUDA_CHECK(cudaMemcpyAsync(device, host, float_bytes(n), cudaMemcpyHostToDevice, state.stream));
    cudaPointerAttributes attributes{};
    UNCLIP_CUDA_CHECK(cudaPointerGetAttributes(&attributes, host));
    if (attributes.type != cudaMemoryTypeUnregistered) UNCLIP_CUDA_CHECK(cudaStreamSynchronize(state.stream));
}

void CudaBackend::download(const Context& ctx, const float* device, float* host, std::int64_t n) {
    cuda::ContextState& state = ctx.state();
    if (n > 0)
        UNCLIP_CUDA_CHECK(cudaMemcpyAsync(host, device, float_bytes(n), cudaMemcpyDeviceToHost, state.stream));
    UNCLIP_CUDA_CHECK(cudaStreamSynchronize(state.stream));
}

void CudaBackend::copy(const Context& ctx, const float* x, float* y, std::int64_t n) {
    if (n <= 0 || x == y) return;
    UNCLIP_CUDA_CHECK(cudaMemcpyAsync(y, x, float_bytes(n), cudaMemcpyDeviceToDevice, ctx.state().stream));
}

void CudaBackend::concat_channels(const Context& ctx, const float* a, std::int64_t c1, const float* b, std::int64_t c2,
                                  float* y, std::int64_t batch, std::int64_t spatial) {
    const std::int64_t a_len = c1 * spatial, b_len = c2 * spatial, total = batch * (a_len + b_len);
    if (total <= 0) return;
    cudaStream_t stream = ctx.state().stream;
    if (a_len % 4 == 0 && b_len % 4 == 0 && aligned16(a) && aligned16(b) && aligned16(y)) {
        concat_kernel<<<cuda::blocks_for(total / 4, kThreads), kThreads, 0, stream>>>(
            reinterpret_cast<const float4*>(a), a_len / 4, reinterpret_cast<const float4*>(b), b_len / 4,
            reinterpret_cast<float4*>(y), total / 4);
    } else {
        concat_kernel<<<cuda::blocks_for(total, kThreads), kThreads, 0, stream>>>(a, a_len, b, b_len, y, total);
    }
    UNCLIP_CUDA_CHECK_LAUNCH();
}

void CudaBackend::channels_to_tokens(const Context& ctx, const float* x, float* y, std::int64_t batch,
                                     std::int64_t channels, std::int64_t spatial) {
    transpose(ctx, x, y, batch, channels, spatial);
}

void CudaBackend::tokens_to_channels(const Context& ctx, const float* x, float* y, std::int64_t batch,
                                     std::int64_t channels, std::int64_t spatial, bool accumulate) {
    if (accumulate) transpose<float, true>(ctx, x, y, batch, spatial, channels);
    else transpose(ctx, x, y, batch, spatial, channels);
}

void CudaBackend::channels_to_tokens_rounded(const Context& ctx, const float* x, const float* scale, const float* shift,
                                             void* y, DType y_dtype, std::int64_t batch, std::int64_t channels,
                                             std::int64_t spatial) {
    cuda::with_half_type(y_dtype, "CUDA channels_to_tokens_rounded", [&](auto half) {
        using To = decltype(half);
        transpose(ctx, x, static_cast<To*>(y), batch, channels, spatial, scale, shift);
    });
}

void CudaBackend::upsample_nearest(const Context& ctx, const float* x, float* y, std::int64_t batch,
                                   std::int64_t channels, std::int64_t h, std::int64_t w, std::int64_t out_h,
                                   std::int64_t out_w) {
    if (batch <= 0 || channels <= 0 || out_h <= 0 || out_w <= 0 || h <= 0 || w <= 0) return;
    const int threads = static_cast<int>(std::clamp<std::int64_t>((out_w + 31) / 32 * 32, 32, kThreads));
    upsample_nearest_kernel<<<cuda::blocks_for(batch * channels * out_h, 1), threads, 0, ctx.state().stream>>>(
        x, y, batch * channels, h, w, out_h, out_w);
    UNCLIP_CUDA_CHECK_LAUNCH();
}

void CudaBackend::gather_rows(const Context& ctx, const float* table, const std::int32_t* ids, std::int64_t n,
                              std::int64_t cols, float* y) {
    if (n <= 0 || cols <= 0) return;
    cuda::ContextState& state = ctx.state();
    const std::int32_t* device_ids = state.upload_ids(ids, n);
    const unsigned blocks = cuda::blocks_for(n, 1);
    if (cols % 4 == 0 && aligned16(table) && aligned16(y)) {
        const int threads = static_cast<int>(std::min<std::int64_t>(kThreads, (cols / 4 + 31) / 32 * 32));
        gather_rows_kernel<<<blocks, threads, 0, state.stream>>>(reinterpret_cast<const float4*>(table), device_ids,
                                                                 n, cols / 4, reinterpret_cast<float4*>(y));
    } else {
        const int threads = static_cast<int>(std::min<std::int64_t>(kThreads, (cols + 31) / 32 * 32));
        gather_rows_kernel<<<blocks, threads, 0, state.stream>>>(table, device_ids, n, cols, y);
    }
    UNCLIP_CUDA_CHECK_LAUNCH();
}

void CudaBackend::extract_patches(const Context& ctx, const float* x, std::int64_t batch, std::int64_t channels,
                                  std::int64_t height, std::int64_t width, int patch, float* y) {
    if (patch <= 0) return;
    const std::int64_t total = batch * (height / patch) * (width / patch) * channels * patch * patch;
    if (total <= 0) return;
    extract_patches_kernel<<<cuda::blocks_for(total, kThreads), kThreads, 0, ctx.state().stream>>>(
        x, batch, channels, height, width, patch, y);
    UNCLIP_CUDA_CHECK_LAUNCH();
}

void CudaBackend::download_bytes(const Context& ctx, const void* device, void* host, std::size_t n) {
    cuda::ContextState& state = ctx.state();
    if (n > 0) UNCLIP_CUDA_CHECK(cudaMemcpyAsync(host, device, n, cudaMemcpyDeviceToHost, state.stream));
    UNCLIP_CUDA_CHECK(cudaStreamSynchronize(state.stream));
}

}  // namespace unclip
