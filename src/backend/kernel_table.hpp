#pragma once
// The CPU kernels that live in Eigen: compiled once per instruction set (src/backend/isa/, see the
// root CMakeLists.txt) and chosen at run time, so a library built for baseline x86-64 still runs
// its GEMMs with AVX-512 where the CPU has it (4x the SSE2 rate measured on this project's CI VM).
#include <cstdint>

#include "backend/winograd.hpp"
#include "unclip/backend/cpu.hpp"

namespace unclip::detail {

// C[b] = alpha op(A[b]) op(B[b]) + beta C[b] (+ row_bias[i] or col_bias[j]) for b < batch, row-major with
// leading dimensions; with `conv` set, B[b] is the im2col unfolding of the image at b + b * b_batch_stride
// (k = C_in * kernel_h * kernel_w, n = H_out * W_out).
struct GemmProblem {
    std::int64_t batch = 1, m = 0, n = 0, k = 0;
    const void* a = nullptr;  // a_dtype elements (f32, f16 or bf16; strides count elements)
    DType a_dtype = DType::f32;
    std::int64_t lda = 0, a_batch_stride = 0;
    bool trans_a = false;
    const void* b = nullptr;  // b_dtype elements; with `conv` always f32
    DType b_dtype = DType::f32;
    std::int64_t ldb = 0, b_batch_stride = 0;
    bool trans_b = false;
    const CpuBackend::Conv2dArgs* conv = nullptr;
    float* c = nullptr;
    std::int64_t ldc = 0, c_batch_stride = 0;
    float alpha = 1.0f, beta = 0.0f;
    const float* row_bias = nullptr;
    const float* col_bias = nullptr;
    bool bf16 = false;  // round A and B to bf16, sum in fp32 (only where bf16_gemm_supported())
};

// AVX-512 BF16 (vdpbf16ps) on this CPU and in this build.
bool bf16_gemm_supported() noexcept;
// Whether ctx asks for bf16 products (Context::set_bf16_gemm) and this CPU has them.
inline bool bf16_enabled(const CpuBackend::Context& ctx) noexcept { return ctx.bf16_gemm() && bf16_gemm_supported(); }

struct KernelTable {
    const char* isa;
    // C[m0:m1, n0:n1] of CpuBackend::gemm.
    void (*gemm_block)(bool trans_a, bool trans_b, std::int64_t m0, std::int64_t m1, std::int64_t n0, std::int64_t n1,
                       std::int64_t k, float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                       float beta, float* c, std::int64_t ldc);
    // Attention tasks [t0, t1) of CpuBackend::attention (task = batch, head, query block).
    void (*attention_tasks)(const CpuBackend::AttentionArgs& args, float scale, std::int64_t t0, std::int64_t t1);
    std::int64_t attention_query_block;
    void (*gelu)(const float* x, float* y, std::int64_t n);
    void (*quick_gelu)(const float* x, float* y, std::int64_t n);
    void (*geglu_rows)(const float* x, float* y, std::int64_t r0, std::int64_t r1, std::int64_t inner);
    // The packed-B GEMM with fused epilogue and implicit convolution; nullptr where only Eigen's is built.
    void (*gemm)(const CpuBackend::Context& ctx, const GemmProblem& problem);
    // CpuBackend::attention with bf16 dot products (head_dim % 16 == 0, bf16_gemm_supported());
    // nullptr where only the fp32 one is built.
    void (*attention_bf16)(const CpuBackend::Context& ctx, const CpuBackend::AttentionArgs& args, float scale);
    // A 3x3 stride-1 convolution as Winograd F(4x4, 3x3) with plan_winograd's plan and scratch;
    // nullptr where only Eigen's GEMM is built.
    void (*conv3x3_winograd)(const CpuBackend::Context& ctx, const CpuBackend::Conv2dArgs& args,
                             const WinogradPlan& plan, float* scratch);
    // CpuBackend::attention in AVX-512 FMA register tiles (head_dim % 16 == 0); nullptr where only
    // Eigen's is built.
    void (*attention_f32)(const CpuBackend::Context& ctx, const CpuBackend::AttentionArgs& args, float scale);
};

// `weights` as fp32: the pointer itself when already f32, else a copy widened into this thread's
// buffer (valid until the next call on the thread). For the Eigen GEMM path, which cannot widen while packing.
const float* widened_weights(const void* weights, DType dtype, std::int64_t count);

// The best table this CPU runs, chosen on first use.
const KernelTable& kernels() noexcept;

const KernelTable& kernel_table_baseline() noexcept;
#if defined(UNCLIP_KERNELS_X86)
void gemm_avx512(const CpuBackend::Context& ctx, const GemmProblem& problem);
void conv3x3_winograd(const CpuBackend::Context& ctx, const CpuBackend::Conv2dArgs& args, const WinogradPlan& plan,
                      float* scratch);
#endif
#if defined(UNCLIP_KERNELS_X86)
const KernelTable& kernel_table_avx2() noexcept;
const KernelTable& kernel_table_avx512() noexcept;
#endif

}  // namespace unclip::detail
