#pragma once
// The convolution's im2col as a launch, and the convolution through it (gemm.cu), for cuDNN's path
// (cudnn_conv.cu): a 1x1 im2col writes its input mapped, upsampled and rounded, and the im2col
// convolution is what it is timed against.
#include <cstdint>

#include <cuda_runtime.h>

#include "unclip/backend/cuda.hpp"
#include "unclip/dtype.hpp"

namespace unclip::cuda {

// Columns [images * C_in * taps, rows * out_w] of output rows [row0, row0 + rows) of `images`
// images from `image` on, as `dtype` (im2col.cuh's layout); first_image: the first one's index in
// the batch (where its input_affine values start).
void launch_im2col(cudaStream_t stream, const CudaBackend::Conv2dArgs& a, const float* image, std::int64_t first_image,
                   std::int64_t images, void* col, DType dtype, std::int64_t out_w, std::int64_t row0, std::int64_t rows);

// CudaBackend::conv2d's own path, args already checked: im2col into half-precision columns (in
// bands of output rows above Context::column_limit), a tensor-core GEMM, then the bias.
void im2col_conv2d(const CudaBackend::Context& ctx, const CudaBackend::Conv2dArgs& a);

}  // namespace unclip::cuda
