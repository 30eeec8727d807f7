// Element-wise activations, residual adds, biases and the sinusoidal timestep embedding.
// Every kernel is a grid-stride loop, one element (or one float4) per thread per step. The float4
// path needs 16-byte aligned pointers and, where rows are involved, a row length that is a multiple
// of 4; otherwise the scalar loop runs. Nothing is staged in shared memory. Activations may run in
// place, so no pointer is __restrict__.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "check.cuh"
#include "context.cuh"
#include "convert.cuh"
#include "elementwise.cuh"
#include "unclip/backend/cuda.hpp"

namespace unclip {
namespace {
using cuda::aligned16;
using cuda::aligned_to;
using cuda::first_index;
using cuda::grid_stride;

constexpr int kThreads = 256;

__device__ float gelu_of(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f)); }

struct Gelu {
    __device__ float operator()(float v) const { return gelu_of(v); }
};
struct QuickGelu {
    __device__ float operator()(float v) const { return v / (1.0f + expf(-1.702f * v)); }
};
struct Silu {
    __device__ float operator()(float v) const { return v / (1.0f + expf(-v)); }
};

// y[i] = op(x[i]); the float4 loop covers n / 4 vectors, the scalar loop the rest (or everything).
template <class Op>
__global__ void map_kernel(const float* x, float* y, std::int64_t n, bool vectorized, Op op) {
    std::int64_t scalar_begin = 0;
    if (vectorized) {
        const std::int64_t vectors = n / 4;
        for (std::int64_t i = first_index(); i < vectors; i += grid_stride()) {
            float4 v = reinterpret_cast<const float4*>(x)[i];
            v.x = op(v.x), v.y = op(v.y), v.z = op(v.z), v.w = op(v.w);
            reinterpret_cast<float4*>(y)[i] = v;
        }
        scalar_begin = vectors * 4;
    }
    for (std::int64_t i = scalar_begin + first_index(); i < n; i += grid_stride()) y[i] = op(x[i]);
}

__global__ void add_kernel(const float* x, float* y, std::int64_t n, bool vectorized) {
    std::int64_t scalar_begin = 0;
    if (vectorized) {
        const std::int64_t vectors = n / 4;
        for (std::int64_t i = first_index(); i < vectors; i += grid_stride()) {
            const float4 a = reinterpret_cast<const float4*>(x)[i];
            float4 b = reinterpret_cast<float4*>(y)[i];
            b.x += a.x, b.y += a.y, b.z += a.z, b.w += a.w;
            reinterpret_cast<float4*>(y)[i] = b;
        }
        scalar_begin = vectors * 4;
    }
    for (std::int64_t i = scalar_begin + first_index(); i < n; i += grid_stride()) y[i] += x[i];
}

// x [rows, 2 * inner] -> y [rows, inner]. Vectorised only when inner % 4 == 0, so the four
// elements of a float4 share a row.
template <class To>
__global__ void geglu_kernel(const float* x, To* y, std::int64_t rows, std::int64_t inner, bool vectorized) {
    const std::int64_t n = rows * inner;
    if (vectorized) {
        for (std::int64_t i = first_index(); i < n / 4; i += grid_stride()) {
            const std::int64_t r = i * 4 / inner, c = i * 4 - r * inner;
            const float* row = x + r * 2 * inner;
            const float4 a = *reinterpret_cast<const float4*>(row + c);
            const float4 g = *reinterpret_cast<const float4*>(row + inner + c);
            cuda::store4(y, i, a.x * gelu_of(g.x), a.y * gelu_of(g.y), a.z * gelu_of(g.z), a.w * gelu_of(g.w));
        }
        return;
    }
    for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
        const std::int64_t r = i / inner, c = i - r * inner;
        const float* row = x + r * 2 * inner;
        y[i] = cuda::from_float<To>(row[c] * gelu_of(row[inner + c]));
    }
}

// y [plane][s] = x [plane][s] + values[plane % period]. Each row of threads takes its planes
// (cuda::plane_launch), so no index needs a division; with `vectorized` (spatial % 4 == 0, x and y
// aligned) four values per thread. x may be y.
__global__ void add_plane_bias_kernel(const float* x, float* y, const float* __restrict__ values, std::int64_t planes,
                                      std::int64_t period, std::int64_t spatial, bool vectorized) {
    for (std::int64_t plane = cuda::first_plane(); plane < planes; plane += cuda::plane_stride()) {
        const float value = values[plane % period];
        const float* in = x + plane * spatial;
        float* out = y + plane * spatial;
        if (vectorized) {
            for (std::int64_t i = first_index(); i < spatial / 4; i += grid_stride()) {
                float4 v = reinterpret_cast<const float4*>(in)[i];
                v.x += value, v.y += value, v.z += value, v.w += value;
                reinterpret_cast<float4*>(out)[i] = v;
            }
        } else {
            for (std::int64_t i = first_index(); i < spatial; i += grid_stride()) out[i] = in[i] + value;
        }
    }
}

// y [rows, cols] += bias [cols]. Vectorised only when cols % 4 == 0.
__global__ void add_row_bias_kernel(float* y, const float* bias, std::int64_t rows, std::int64_t cols,
                                    bool vectorized) {
    const std::int64_t n = rows * cols;
    if (vectorized) {
        const std::int64_t col_vectors = cols / 4;
        for (std::int64_t i = first_index(); i < n / 4; i += grid_stride()) {
            const float4 b = reinterpret_cast<const float4*>(bias)[i % col_vectors];
            float4 out = reinterpret_cast<float4*>(y)[i];
            out.x += b.x, out.y += b.y, out.z += b.z, out.w += b.w;
            reinterpret_cast<float4*>(y)[i] = out;
        }
        return;
    }
    for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] += bias[i % cols];
}

// The host timesteps and frequencies travel by value as a kernel parameter (1.25 KiB, under the
// 4 KiB limit): nothing on the host has to outlive the call, and stream capture sees no copy.
constexpr int kTimestepsPerLaunch = 64;
constexpr int kFrequenciesPerLaunch = 256;
struct TimestepLaunch {
    float timesteps[kTimestepsPerLaunch];
    float frequencies[kFrequenciesPerLaunch];
};

// out points at [b0, i0] of [batch, dim]; thread e writes cos and sin of timestep e / frequencies
// times frequency e % frequencies, half columns apart.
__global__ void timestep_embedding_kernel(const __grid_constant__ TimestepLaunch launch, int timesteps,
                                          int frequencies, std::int64_t dim, std::int64_t half, float* out) {
    const std::int64_t n = std::int64_t{timesteps} * frequencies;
    for (std::int64_t e = first_index(); e < n; e += grid_stride()) {
        const auto b = static_cast<int>(e / frequencies), i = static_cast<int>(e % frequencies);
        const float arg = launch.timesteps[b] * launch.frequencies[i];
        out[b * dim + i] = cosf(arg);
        out[b * dim + half + i] = sinf(arg);
    }
}

template <class Op>
void launch_map(const CudaBackend::Context& ctx, const float* x, float* y, std::int64_t n, Op op) {
    if (n <= 0) return;
    const bool vectorized = aligned16(x) && aligned16(y);
    map_kernel<<<cuda::blocks_for(vectorized ? (n + 3) / 4 : n, kThreads), kThreads, 0, ctx.state().stream>>>(
        x, y, n, vectorized, op);
    UNCLIP_CUDA_CHECK_LAUNCH();
}
}  // namespace

void CudaBackend::gelu(const Context& ctx, const float* x, float* y, std::int64_t n) { launch_map(ctx, x, y, n, Gelu{}); }

void CudaBackend::quick_gelu(const Context& ctx, const float* x, float* y, std::int64_t n) {
    launch_map(ctx, x, y, n, QuickGelu{});
}

void CudaBackend::silu(const Context& ctx, const float* x, float* y, std::int64_t n) { launch_map(ctx, x, y, n, Silu{}); }

void CudaBackend::add(const Context& ctx, const float* x, float* y, std::int64_t n) {
    if (n <= 0) return;
    const bool vectorized = aligned16(x) && aligned16(y);
    add_kernel<<<cuda::blocks_for(vectorized ? (n + 3) / 4 : n, kThreads), kThreads, 0, ctx.state().stream>>>(
        x, y, n, vectorized);
    UNCLIP_CUDA_CHECK_LAUNCH();
}

void CudaBackend::geglu(const Context& ctx, const float* x, float* y, std::int64_t rows, std::int64_t inner) {
    if (rows <= 0 || inner <= 0) return;
    const bool vectorized = inner % 4 == 0 && aligned16(x) && aligned16(y);
    const std::int64_t n = rows * inner;
    geglu_kernel<<<cuda::blocks_for(vectorized ? n / 4 : n, kThreads), kThreads, 0, ctx.state().stream>>>(
        x, y, rows, inner, vectorized);
    UNCLIP_CUDA_CHECK_LAUNCH();
}

void CudaBackend::geglu_rounded(const Context& ctx, const float* x, void* y, DType y_dtype, std::int64_t rows,
                                std::int64_t inner) {
    cuda::with_half_type(y_dtype, "CUDA geglu_rounded", [&](auto half) {
        using To = decltype(half);
        if (rows <= 0 || inner <= 0) return;
        const bool vectorized = inner % 4 == 0 && aligned16(x) && aligned_to(y, 8);
        const std::int64_t n = rows * inner;
        geglu_kernel<<<cuda::blocks_for(vectorized ? n / 4 : n, kThreads), kThreads, 0, ctx.state().stream>>>(
            x, static_cast<To*>(y), rows, inner, vectorized);
        UNCLIP_CUDA_CHECK_LAUNCH();
    });
}

void cuda::launch_add_plane_bias(cudaStream_t stream, const float* x, float* y, const float* values, std::int64_t planes,
                                 std::int64_t period, std::int64_t spatial) {
    if (planes <= 0 || period <= 0 || spatial <= 0) return;
    const bool vectorized = spatial % 4 == 0 && aligned16(x) && aligned16(y);
    const cuda::PlaneLaunch launch = cuda::plane_launch(planes, vectorized ? spatial / 4 : spatial, kThreads);
    add_plane_bias_kernel<<<launch.grid, launch.block, 0, stream>>>(x, y, values, planes, period, spatial, vectorized);
    UNCLIP_CUDA_CHECK_LAUNCH();
}

void CudaBackend::add_channel_bias(const Context& ctx, const float* x, const float* bias, float* y, std::int64_t batch,
                                   std::int64_t channels, std::int64_t spatial) {
    cuda::launch_add_plane_bias(ctx.state().stream, x, y, bias, batch * channels, channels, spatial);
}

void CudaBackend::add_row_bias(const Context& ctx, float* y, const float* bias, std::int64_t rows,
                               std::int64_t cols) {
    if (rows <= 0 || cols <= 0) return;
    const bool vectorized = cols % 4 == 0 && aligned16(y) && aligned16(bias);
    const std::int64_t n = rows * cols;
    add_row_bias_kernel<<<cuda::blocks_for(vectorized ? n / 4 : n, kThreads), kThreads, 0, ctx.state().stream>>>(
        y, bias, rows, cols, vectorized);
    UNCLIP_CUDA_CHECK_LAUNCH();
}

// nn::timestep_embedding: the frequencies are computed here on the host, in the same float
// operations, so they are bit-identical to the CPU's; the device only multiplies and takes
// cos/sin (a few ulp apart from the host's). A device expf instead could differ by an ulp, which
// t ~ 1000 would amplify to ~1e-4 in the argument.
void CudaBackend::timestep_embedding(const Context& ctx, const float* timesteps, std::int64_t batch,
                                     std::int64_t dim, float* out) {
    const std::int64_t half = dim / 2;
    if (batch <= 0 || half <= 0) return;
    const float log_period = std::log(10000.0f);
    TimestepLaunch launch{};
    for (std::int64_t b0 = 0; b0 < batch; b0 += kTimestepsPerLaunch) {
        const auto count_b = static_cast<int>(std::min<std::int64_t>(kTimestepsPerLaunch, batch - b0));
        for (int b = 0; b < count_b; ++b) launch.timesteps[b] = timesteps[b0 + b];
        for (std::int64_t i0 = 0; i0 < half; i0 += kFrequenciesPerLaunch) {
            const auto count_i = static_cast<int>(std::min<std::int64_t>(kFrequenciesPerLaunch, half - i0));
            for (int i = 0; i < count_i; ++i) {
                const float exponent = -log_period * static_cast<float>(i0 + i) / static_cast<float>(half);
                launch.frequencies[i] = std::exp(exponent);
            }
            timestep_embedding_kernel<<<cuda::blocks_for(std::int64_t{count_b} * count_i, kThreads), kThreads, 0,
                                        ctx.state().stream>>>(launch, count_b, count_i, dim, half,
                                                              out + b0 * dim + i0);
            UNCLIP_CUDA_CHECK_LAUNCH();
        }
    }
}

}  // namespace unclip
