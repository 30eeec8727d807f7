#pragma once
// Conversions on device memory: fp32 rounded to a GEMM operand type (fp16, bf16, or kept fp32),
// and fp16 back to fp32. Rounding is to nearest even, like the CPU conversions, so both backends
// store identical half-precision weights.
#include <cstddef>
#include <cstdint>
#include <string>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "unclip/dtype.hpp"
#include "unclip/error.hpp"

namespace unclip::cuda {

template <class To> __host__ __device__ __forceinline__ To from_float(float v);
template <> __host__ __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __host__ __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __host__ __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Elements 4 v .. 4 v + 3 of `out`, rounded to To, in one store (out aligned to 4 * sizeof(To)).
template <class To>
__device__ __forceinline__ void store4(To* out, std::int64_t v, float a, float b, float c, float d) {
    struct alignas(4 * sizeof(To)) Four {
        To e[4];
    };
    reinterpret_cast<Four*>(out)[v] = Four{{from_float<To>(a), from_float<To>(b), from_float<To>(c), from_float<To>(d)}};
}

// fn(To{}) with To the half type of `dtype` (__half for f16, __nv_bfloat16 for bf16); any other
// dtype throws Error(Status::invalid_argument) naming `what` (an op writing rounded outputs).
template <class Fn>
void with_half_type(DType dtype, const char* what, Fn&& fn) {
    if (dtype == DType::f16) return fn(__half{});
    if (dtype == DType::bf16) return fn(__nv_bfloat16{});
    throw Error(Status::invalid_argument,
                std::string(what) + ": output dtype " + std::string(dtype_name(dtype)) + " is not f16 or bf16");
}

// out[i] = x[i] as `dtype` (f32, f16 or bf16) for i < n, queued on `stream`.
void launch_round_f32(const float* x, void* out, std::int64_t n, DType dtype, cudaStream_t stream);
void launch_convert_f16_to_f32(const void* src_half, float* dst, std::size_t n, cudaStream_t stream);

}  // namespace unclip::cuda
