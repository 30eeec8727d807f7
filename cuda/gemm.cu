// GEMMs, linear layers and convolutions through cuBLAS. Activations arrive in fp32; the operand
// that meets a half-precision weight is rounded to the weight's type (fp16 or bf16) on its way
// into the workspace, so cuBLAS runs the tensor-core kernels with fp32 sums and fp32 output.
// Convolutions go to cuDNN first (cudnn_conv.cu), which hands back those it does not take.
#include <algorithm>
#include <cstdint>
#include <string>

#include "check.cuh"
#include "context.cuh"
#include "convert.cuh"
#include "elementwise.cuh"
#include "cudnn_conv.cuh"
#include "im2col.cuh"
#include "im2col_launch.cuh"
#include "linear_lt.cuh"
#include "unclip/error.hpp"

namespace unclip {
namespace {

// Thread i of block (bx, 0, bz) takes output pixel (in the octet kernel, eight-pixel group)
// bx * kIm2colThreads + i of the band, counted row by row, for planes bz, bz + gridDim.z, ...: a
// warp's stores are neighbouring columns, across row ends too, so a narrow image (the UNet's 96,
// 48 and 24 px latents: 12, 6 and 3 groups per row) leaves no thread idle; neighbouring threads
// read neighbouring pixels, so each input pixel comes from memory about once. One 32-bit division
// per thread, none per element.
constexpr int kIm2colThreads = 256;
template <class To>
__global__ void im2col_kernel(const float* __restrict__ x, To* __restrict__ col, const cuda::Im2colGeometry g,
                              const cuda::PlaneAffine f) {
    const int i = blockIdx.x * kIm2colThreads + threadIdx.x;
    if (i >= g.out_w * g.rows) return;
    const cuda::BandPosition at = cuda::band_position(i, g.out_w);
    for (std::int64_t plane = blockIdx.z; plane < g.planes; plane += gridDim.z)
        cuda::im2col_pixel(x, col, g, f, at.column, at.row, plane);
}

template <class To>
__global__ void im2col_octet_kernel(const float* __restrict__ x, To* __restrict__ col, const cuda::Im2colGeometry g,
                                    const cuda::PlaneAffine f) {
    const int groups = g.out_w / 8, i = blockIdx.x * kIm2colThreads + threadIdx.x;
    if (i >= groups * g.rows) return;
    const cuda::BandPosition at = cuda::band_position(i, groups);
    for (std::int64_t plane = blockIdx.z; plane < g.planes; plane += gridDim.z)
        cuda::im2col_octet_3wide(x, col, g, f, at.column, at.row, plane);
}

cudaDataType_t operand_type(DType dtype) {
    switch (dtype) {
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: throw Error(Status::invalid_argument, std::string("CUDA GEMM: weights of dtype ") + std::string(dtype_name(dtype)) +
                                                       " are not supported (f32, f16 or bf16)");
    }
}

void check_gemm_sizes(const char* what, std::int64_t m, std::int64_t n, std::int64_t k) {
    constexpr std::int64_t kMaxInt = 0x7fffffff;
    if (m < 0 || n < 0 || k < 0 || m > kMaxInt || n > kMaxInt || k > kMaxInt)
        throw Error(Status::invalid_argument, std::string(what) + ": sizes " + std::to_string(m) + "x" + std::to_string(n) +
                                                  "x" + std::to_string(k) + " are negative or beyond cuBLAS's int range");
}

}  // namespace

void cuda::launch_im2col(cudaStream_t stream, const CudaBackend::Conv2dArgs& a, const float* image, std::int64_t first_image,
                   std::int64_t images, void* col, DType dtype, std::int64_t out_w, std::int64_t row0, std::int64_t rows) {
    cuda::PlaneAffine f;
    if (a.input_affine) {
        f.scale = a.input_affine->scale + first_image * a.in_channels;
        f.shift = a.input_affine->shift + first_image * a.in_channels;
        f.silu = a.input_affine->silu;
    }
    cuda::Im2colGeometry g;
    g.planes = images * a.in_channels;
    if (g.planes == 0 || rows == 0 || out_w == 0) return;
    g.height = static_cast<int>(a.height);
    g.width = static_cast<int>(a.width);
    g.kernel_h = a.kernel_h;
    g.kernel_w = a.kernel_w;
    g.stride = a.stride;
    g.pad_top = a.pad_top;
    g.pad_left = a.pad_left;
    g.out_w = static_cast<int>(out_w);
    g.row0 = static_cast<int>(row0);
    g.rows = static_cast<int>(rows);
    g.upsample_shift = a.input_upsample == 2 ? 1 : 0;
    const bool octets = cuda::octet_im2col_fits(g) && cuda::aligned_to(col, 8 * dtype_size(dtype));
    const std::int64_t threads_per_plane = (octets ? out_w / 8 : out_w) * rows;
    if (threads_per_plane > 0x7fffffff)
        throw Error(Status::invalid_argument, "CUDA conv2d: a band of " + std::to_string(rows) + " rows of " +
                                                  std::to_string(out_w) + " pixels is beyond the im2col kernel's int range");
    const dim3 block(kIm2colThreads);
    const dim3 grid(static_cast<unsigned>((threads_per_plane + kIm2colThreads - 1) / kIm2colThreads), 1,
                    static_cast<unsigned>(std::min<std::int64_t>(g.planes, 65535)));
#define UNCLIP_IM2COL(T)                                                                        \
    do {                                                                                        \
        if (octets) im2col_octet_kernel<<<grid, block, 0, stream>>>(image, static_cast<T*>(col), g, f); \
        else im2col_kernel<<<grid, block, 0, stream>>>(image, static_cast<T*>(col), g, f);          \
    } while (false)
    if (dtype == DType::f16) UNCLIP_IM2COL(__half);
    else if (dtype == DType::bf16) UNCLIP_IM2COL(__nv_bfloat16);
    else UNCLIP_IM2COL(float);
#undef UNCLIP_IM2COL
    UNCLIP_CUDA_CHECK_LAUNCH();
}

void CudaBackend::gemm(const Context& ctx, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                       float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
                       float* c, std::int64_t ldc) {
    check_gemm_sizes("CUDA gemm", m, n, k);
    if (m == 0 || n == 0) return;
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
    UNCLIP_CUBLAS_CHECK(cublasSgemm(ctx.state().blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, b,
                                    static_cast<int>(ldb), a, static_cast<int>(lda), &beta, c, static_cast<int>(ldc)));
}

namespace {

// y [rows, out] = x_operand W^T + bias (+ y), x_operand already in the weight's type.
void linear_gemm(const CudaBackend::Context& ctx, const void* x_operand, std::int64_t rows, std::int64_t in_features,
                 std::int64_t out_features, const void* weight, DType weight_dtype, const float* bias, float* y,
                 bool accumulate) {
    auto& s = ctx.state();
    const cudaDataType_t type = operand_type(weight_dtype);
    if (bias && ctx.bias_epilogue() &&
        cuda::linear_bias_epilogue(s, x_operand, rows, in_features, out_features, weight, weight_dtype, bias, y, accumulate))
        return;
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    // Column-major y^T [out, rows] = W [out, in] (stored as W^T) times x^T [in, rows].
    UNCLIP_CUBLAS_CHECK(cublasGemmEx(s.blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out_features), static_cast<int>(rows),
                                     static_cast<int>(in_features), &alpha, weight, type, static_cast<int>(in_features),
                                     x_operand, type, static_cast<int>(in_features), &beta, y, CUDA_R_32F,
                                     static_cast<int>(out_features), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (bias) CudaBackend::add_row_bias(ctx, y, bias, rows, out_features);
}

}  // namespace

void CudaBackend::linear(const Context& ctx, const float* x, std::int64_t rows, std::int64_t in_features,
                         std::int64_t out_features, const void* weight, DType weight_dtype, const float* bias, float* y,
                         bool accumulate) {
    check_gemm_sizes("CUDA linear", rows, out_features, in_features);
    if (rows == 0 || out_features == 0) return;
    operand_type(weight_dtype);  // refuses other dtypes before anything is queued
    const void* x_operand = x;
    if (weight_dtype != DType::f32) {
        auto& s = ctx.state();
        void* rounded = s.workspace(static_cast<std::size_t>(rows * in_features) * dtype_size(weight_dtype));
        cuda::launch_round_f32(x, rounded, rows * in_features, weight_dtype, s.stream);
        x_operand = rounded;
    }
    linear_gemm(ctx, x_operand, rows, in_features, out_features, weight, weight_dtype, bias, y, accumulate);
}

void CudaBackend::linear_rounded(const Context& ctx, const void* x, DType x_dtype, std::int64_t rows,
                                 std::int64_t in_features, std::int64_t out_features, const void* weight,
                                 DType weight_dtype, const float* bias, float* y, bool accumulate) {
    if (x_dtype != weight_dtype || (x_dtype != DType::f16 && x_dtype != DType::bf16))
        throw Error(Status::invalid_argument, std::string("CUDA linear_rounded: input dtype ") +
                                                  std::string(dtype_name(x_dtype)) + " with weights of dtype " +
                                                  std::string(dtype_name(weight_dtype)) +
                                                  " (both must be f16, or both bf16)");
    check_gemm_sizes("CUDA linear", rows, out_features, in_features);
    if (rows == 0 || out_features == 0) return;
    linear_gemm(ctx, x, rows, in_features, out_features, weight, weight_dtype, bias, y, accumulate);
}

std::size_t CudaBackend::conv2d_scratch_bytes(const Conv2dArgs&) noexcept { return 0; }

void CudaBackend::conv2d(const Context& ctx, const Conv2dArgs& a, Scratch&) {
    if (a.batch < 0 || a.in_channels <= 0 || a.out_channels <= 0 || a.kernel_h <= 0 || a.kernel_w <= 0 || a.stride <= 0 ||
        a.pad_top < 0 || a.pad_left < 0 || a.pad_bottom < 0 || a.pad_right < 0)
        throw Error(Status::invalid_argument, "CUDA conv2d: invalid geometry");
    const std::int64_t out_h = a.out_height(), out_w = a.out_width(), spatial = out_h * out_w;
    if (a.batch == 0 || out_h <= 0 || out_w <= 0) return;
    check_gemm_sizes("CUDA conv2d", spatial, a.out_channels, a.in_channels * a.kernel_h * a.kernel_w);
    operand_type(a.weight_dtype);  // refuses other dtypes before anything is queued
    if (a.input_affine && (!a.input_affine->scale || !a.input_affine->shift))
        throw Error(Status::invalid_argument, "CUDA conv2d: input_affine needs scale and shift");
    a.check_input_upsample("CUDA conv2d");
    if (!cuda::cudnn_conv2d(ctx, a)) cuda::im2col_conv2d(ctx, a);
}

void cuda::im2col_conv2d(const CudaBackend::Context& ctx, const CudaBackend::Conv2dArgs& a) {
    const std::int64_t out_h = a.out_height(), out_w = a.out_width(), spatial = out_h * out_w;
    const std::int64_t depth = a.in_channels * a.kernel_h * a.kernel_w;
    auto& s = ctx.state();
    const cudaDataType_t type = operand_type(a.weight_dtype);
    const std::size_t element = dtype_size(a.weight_dtype);
    const float alpha = 1.0f, beta = a.accumulate ? 1.0f : 0.0f;
    // A mapped or upsampled input always goes through im2col, which applies the map and reads
    // each stored value for its 2x2 block.
    const bool pointwise = a.kernel_h == 1 && a.kernel_w == 1 && a.stride == 1 && a.pad_top == 0 && a.pad_left == 0 &&
                           a.pad_bottom == 0 && a.pad_right == 0 && !a.input_affine && a.input_upsample == 1;
    const std::int64_t image_in = a.in_channels * (a.height / a.input_upsample) * (a.width / a.input_upsample);
    const std::int64_t image_out = a.out_channels * spatial;

    // Column-major per image: y^T [spatial, C_out] = columns^T [spatial, depth] times W^T [depth, C_out],
    // where the row-major columns [depth, spatial] are exactly columns^T and W [C_out, depth] is W^T.
    // Columns above ctx.column_limit() are built in bands of output rows: a 768 px VAE convolution
    // would otherwise need gigabytes of columns.
    const std::int64_t column_limit = ctx.column_limit();
    if (depth * spatial * a.batch <= column_limit || (pointwise && a.weight_dtype == DType::f32)) {
        const void* columns = a.x;
        if (!pointwise || a.weight_dtype != DType::f32) {
            void* buffer = s.workspace(static_cast<std::size_t>(depth * spatial * a.batch) * element);
            if (pointwise) cuda::launch_round_f32(a.x, buffer, a.batch * image_in, a.weight_dtype, s.stream);
            else cuda::launch_im2col(s.stream, a, a.x, 0, a.batch, buffer, a.weight_dtype, out_w, 0, out_h);
            columns = buffer;
        }
        UNCLIP_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            s.blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(spatial), static_cast<int>(a.out_channels),
            static_cast<int>(depth), &alpha, columns, type, static_cast<int>(spatial), depth * spatial, a.weight, type,
            static_cast<int>(depth), 0, &beta, a.y, CUDA_R_32F, static_cast<int>(spatial), image_out,
            static_cast<int>(a.batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    } else {
        const std::int64_t band_rows = std::max<std::int64_t>(1, std::min(out_h, column_limit / (depth * out_w)));
        void* buffer = s.workspace(static_cast<std::size_t>(depth * band_rows * out_w) * element);
        for (std::int64_t b = 0; b < a.batch; ++b)
            for (std::int64_t row0 = 0; row0 < out_h; row0 += band_rows) {
                const std::int64_t rows = std::min(band_rows, out_h - row0), band = rows * out_w;
                cuda::launch_im2col(s.stream, a, a.x + b * image_in, b, 1, buffer, a.weight_dtype, out_w, row0, rows);
                UNCLIP_CUBLAS_CHECK(cublasGemmEx(s.blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(band),
                                                 static_cast<int>(a.out_channels), static_cast<int>(depth), &alpha, buffer,
                                                 type, static_cast<int>(band), a.weight, type, static_cast<int>(depth), &beta,
                                                 a.y + b * image_out + row0 * out_w, CUDA_R_32F, static_cast<int>(spatial),
                                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
            }
    }
    if (a.bias) cuda::launch_add_plane_bias(s.stream, a.y, a.y, a.bias, a.batch * a.out_channels, a.out_channels, spatial);
}

}  // namespace unclip
