// Chooses the Eigen kernel build for this CPU once, and routes the CPU primitives through it.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/kernel_table.hpp"
#include "unclip/error.hpp"

#if defined(UNCLIP_KERNELS_X86)
#include <cpuid.h>
#endif

namespace unclip {
namespace detail {

#if defined(UNCLIP_KERNELS_X86)
// CPUID leaf 1, ECX bit 29: clang before 15 does not know "f16c" in __builtin_cpu_supports.
static bool cpu_has_f16c() noexcept {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}
#endif

namespace {
const KernelTable& best_for_this_cpu() noexcept {
    static const KernelTable& chosen = [&]() -> const KernelTable& {
#if defined(UNCLIP_KERNELS_X86)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
            return kernel_table_avx512();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c())
            return kernel_table_avx2();
#endif
        return kernel_table_baseline();
    }();
    return chosen;
}
}  // namespace

bool bf16_gemm_supported() noexcept {
#if defined(UNCLIP_KERNELS_X86)
    static const bool supported = [] {
        __builtin_cpu_init();
        return kernels().gemm != nullptr && __builtin_cpu_supports("avx512bf16");
    }();
    return supported;
#else
    return false;
#endif
}

const float* widened_weights(const void* weights, DType dtype, std::int64_t count) {
    if (dtype == DType::f32) return static_cast<const float*>(weights);
    thread_local std::vector<float> buffer;
    buffer.resize(static_cast<std::size_t>(count));
    if (dtype == DType::f16) convert(static_cast<const Half*>(weights), buffer.data(), buffer.size());
    else convert(static_cast<const BFloat16*>(weights), buffer.data(), buffer.size());
    return buffer.data();
}

// UNCLIP_CPU_GEMM=eigen keeps Eigen's GEMM on CPUs that have the packed one, and UNCLIP_CPU_CONV=direct
// the direct (implicit GEMM) 3x3 convolution instead of Winograd's (for comparisons and tests).
const KernelTable& kernels() noexcept {
    static const KernelTable table = [] {
        KernelTable t = best_for_this_cpu();
        if (const char* choice = std::getenv("UNCLIP_CPU_GEMM"); choice && std::string(choice) == "eigen") {
            t.gemm = nullptr;
            t.attention_bf16 = nullptr;
            t.conv3x3_winograd = nullptr;
            t.attention_f32 = nullptr;
        }
        if (const char* choice = std::getenv("UNCLIP_CPU_CONV"); choice && std::string(choice) == "direct")
            t.conv3x3_winograd = nullptr;
        return t;
    }();
    return table;
}

}  // namespace detail

const char* cpu_kernel_isa() noexcept { return detail::kernels().isa; }
bool CpuBackend::has_bf16_gemm() noexcept { return detail::bf16_gemm_supported(); }

namespace {
constexpr std::int64_t kGemmBlock = 256;       // rows or columns of C per task
constexpr std::int64_t kElementGrain = 1 << 14;
}  // namespace

// Blocks of C have sizes that depend on the shapes only (not on the thread count), so every
// element of C is summed in the same order whatever the number of threads.
void CpuBackend::gemm(const Context& ctx, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                      float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
                      float* c, std::int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (std::int64_t i = 0; i < m; ++i)
            for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    const auto& kt = detail::kernels();
    if (kt.gemm) {
        detail::GemmProblem g;
        g.m = m;
        g.n = n;
        g.k = k;
        g.a = a;
        g.lda = lda;
        g.trans_a = trans_a;
        g.b = b;
        g.ldb = ldb;
        g.trans_b = trans_b;
        g.c = c;
        g.ldc = ldc;
        g.alpha = alpha;
        g.beta = beta;
        g.bf16 = detail::bf16_enabled(ctx);
        kt.gemm(ctx, g);
        return;
    }
    const bool split_columns = n >= m;
    ctx.parallel_for(split_columns ? n : m, kGemmBlock, [&](std::int64_t begin, std::int64_t end) {
        if (split_columns) kt.gemm_block(trans_a, trans_b, 0, m, begin, end, k, alpha, a, lda, b, ldb, beta, c, ldc);
        else kt.gemm_block(trans_a, trans_b, begin, end, 0, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    });
}

void CpuBackend::linear(const Context& ctx, const float* x, std::int64_t rows, std::int64_t in_features,
                        std::int64_t out_features, const void* weight, DType weight_dtype, const float* bias, float* y,
                        bool accumulate) {
    const auto& kt = detail::kernels();
    if (!kt.gemm || in_features <= 0) {
        const float* w = detail::widened_weights(weight, weight_dtype, out_features * in_features);
        gemm(ctx, false, true, rows, out_features, in_features, 1.0f, x, in_features, w, in_features,
             accumulate ? 1.0f : 0.0f, y, out_features);
        if (bias) add_row_bias(ctx, y, bias, rows, out_features);
        return;
    }
    if (rows <= 0 || out_features <= 0) return;
    detail::GemmProblem g;
    g.m = rows;
    g.n = out_features;
    g.k = in_features;
    g.a = x;
    g.lda = in_features;
    g.b = weight;
    g.b_dtype = weight_dtype;
    g.ldb = in_features;
    g.trans_b = true;
    g.c = y;
    g.ldc = out_features;
    g.beta = accumulate ? 1.0f : 0.0f;
    g.col_bias = bias;
    g.bf16 = detail::bf16_enabled(ctx);
    kt.gemm(ctx, g);
}

void CpuBackend::attention(const Context& ctx, const AttentionArgs& a) {
    if (a.head_dim <= 0 || a.heads <= 0)
        throw Error(Status::invalid_argument, "attention: head_dim " + std::to_string(a.head_dim) + " and heads " +
                                                  std::to_string(a.heads) + " must be positive");
    if (a.kv_len <= 0) throw Error(Status::invalid_argument, "attention: no keys");
    const auto& kt = detail::kernels();
    const float scale = a.scale != 0.0f ? a.scale : 1.0f / std::sqrt(static_cast<float>(a.head_dim));
    if (kt.attention_bf16 && detail::bf16_enabled(ctx) && a.head_dim % 16 == 0 && a.head_dim <= 512) {
        kt.attention_bf16(ctx, a, scale);
        return;
    }
    if (kt.attention_f32 && a.head_dim % 16 == 0) {
        kt.attention_f32(ctx, a, scale);
        return;
    }
    const std::int64_t q_blocks = (a.q_len + kt.attention_query_block - 1) / kt.attention_query_block;
    ctx.parallel_for(a.batch * a.heads * q_blocks, 1,
                     [&](std::int64_t t0, std::int64_t t1) { kt.attention_tasks(a, scale, t0, t1); });
}

void CpuBackend::gelu(const Context& ctx, const float* x, float* y, std::int64_t n) {
    const auto& kt = detail::kernels();
    ctx.parallel_for(n, kElementGrain, [&](std::int64_t i0, std::int64_t i1) { kt.gelu(x + i0, y + i0, i1 - i0); });
}

void CpuBackend::quick_gelu(const Context& ctx, const float* x, float* y, std::int64_t n) {
    const auto& kt = detail::kernels();
    ctx.parallel_for(n, kElementGrain, [&](std::int64_t i0, std::int64_t i1) { kt.quick_gelu(x + i0, y + i0, i1 - i0); });
}

void CpuBackend::geglu(const Context& ctx, const float* x, float* y, std::int64_t rows, std::int64_t inner) {
    const auto& kt = detail::kernels();
    ctx.parallel_for(rows, 1 + kElementGrain / std::max<std::int64_t>(1, 2 * inner),
                     [&](std::int64_t r0, std::int64_t r1) { kt.geglu_rows(x, y, r0, r1, inner); });
}

}  // namespace unclip
