#pragma once
// CudaBackend::conv2d through cuDNN's implicit-GEMM convolutions: no im2col columns in memory,
// which for the VAE's 768 px layers are nine times their input, written and read again.
#include <memory>
#include <string>
#include <vector>

#include "unclip/backend/cuda.hpp"

namespace unclip::cuda {

// A context's cuDNN handle and its convolution plans (descriptors and algorithm per geometry),
// held by ContextState.
struct CudnnConvolutions;

// Queues the convolution through cuDNN and returns true, or returns false having queued nothing,
// for the caller's own path: cuDNN switched off (Context::set_cudnn_convolutions) or not loaded,
// fp32 weights, a 1x1 kernel (a plain GEMM already), one-sided padding (the VAE's downsampling),
// a geometry cuDNN offers no algorithm for, a geometry where im2col measured faster
// (Context::convolution_tuning), or a stream recording a graph before this geometry has run
// outside one (making the handle allocates, and a first run may load kernels or time the two
// paths, none of which a recording may contain).
// cuDNN reads the input in the weights' half type, NCHW, with the map and the upsampling already
// applied, and writes a half-precision output; a last pass adds it, the bias and (accumulating)
// y's previous values in fp32.
bool cudnn_conv2d(const CudaBackend::Context& ctx, const CudaBackend::Conv2dArgs& args);

// What the context's convolutions run on, for logs: "cuDNN 9.19.0 (libcudnn.so.9), ...", or
// "im2col + cuBLAS (...why not cuDNN)". Makes nothing: before the context's handle exists (its
// first convolution, or prepare_convolutions) a refusal of the handle cannot show yet.
std::string convolution_path(const CudaBackend::Context& ctx);

// Context::prepare_convolutions: the context's cuDNN handle, made now when cuDNN serves it.
void prepare_convolutions(const CudaBackend::Context& ctx);

// Context::convolution_timings.
std::vector<CudaBackend::ConvolutionTiming> convolution_timings(const CudaBackend::Context& ctx);

}  // namespace unclip::cuda
