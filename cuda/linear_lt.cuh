#pragma once
// CudaBackend::linear's fused-bias path through cuBLASLt (linear_lt.cu).
#include <cstdint>

#include "context.cuh"
#include "unclip/dtype.hpp"

namespace unclip::cuda {

// y [rows, out] = x_operand [rows, in] W^T + bias (+ y when accumulate), the bias added in the
// GEMM's epilogue. x_operand is already rounded to the weight's type (f16 or bf16). Returns false,
// having queued nothing, for f32 weights or when cuBLASLt has no algorithm for the shape and
// alignments; throws Error(Status::device) when a call fails.
bool linear_bias_epilogue(ContextState& s, const void* x_operand, std::int64_t rows, std::int64_t in_features,
                          std::int64_t out_features, const void* weight, DType weight_dtype, const float* bias, float* y,
                          bool accumulate);

}  // namespace unclip::cuda
