// Linear layers with the bias added in the GEMM's epilogue (cuBLASLt, CUBLASLT_EPILOGUE_BIAS), so
// that the output is written once instead of written, then read and written again by a bias
// kernel. One plan (descriptors and the heuristic's algorithm) per shape, operand type and pointer
// alignment, made on first use and kept by the context: a sampling loop repeats a few dozen shapes.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "check.cuh"
#include "context.cuh"
#include "linear_lt.cuh"
#include "unclip/error.hpp"

namespace unclip::cuda {
namespace {

// Hopper's cuBLASLt kernels ask for up to 32 MiB of workspace; less rules some of them out.
constexpr std::size_t kLtWorkspaceBytes = std::size_t{32} << 20;

// The largest power of two up to 256 that divides the address: what the heuristic may assume.
std::uint32_t alignment_of(const void* p) {
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    std::uint32_t a = 256;
    while (a > 1 && address % a != 0) a /= 2;
    return a;
}

// beta (accumulate or not) is a call argument, not part of the plan.
struct PlanKey {
    std::int64_t rows, in_features, out_features;
    DType dtype;
    std::uint32_t align_x, align_w, align_y, align_bias;
    bool operator<(const PlanKey& o) const {
        return std::tie(rows, in_features, out_features, dtype, align_x, align_w, align_y, align_bias) <
               std::tie(o.rows, o.in_features, o.out_features, o.dtype, o.align_x, o.align_w, o.align_y, o.align_bias);
    }
};

// Descriptors of one GEMM shape; `usable` is false when cuBLASLt offered no algorithm for it.
struct Plan {
    bool usable = false;
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t weight = nullptr, x = nullptr, y = nullptr;
    cublasLtMatmulAlgo_t algo{};
    Plan() = default;
    Plan(const Plan&) = delete;
    Plan& operator=(const Plan&) = delete;
    ~Plan() {
        if (desc) cublasLtMatmulDescDestroy(desc);
        if (weight) cublasLtMatrixLayoutDestroy(weight);
        if (x) cublasLtMatrixLayoutDestroy(x);
        if (y) cublasLtMatrixLayoutDestroy(y);
    }
};

}  // namespace

struct LtPlans {
    cublasLtHandle_t handle = nullptr;
    void* workspace = nullptr;
    std::map<PlanKey, Plan> plans;
    ~LtPlans() {
        if (workspace) cudaFree(workspace);
        if (handle) cublasLtDestroy(handle);
    }
};

namespace {

LtPlans& lt_plans(ContextState& s) {
    if (!s.lt_plans) {
        auto plans = std::make_shared<LtPlans>();
        UNCLIP_CUBLAS_CHECK(cublasLtCreate(&plans->handle));
        if (cudaMalloc(&plans->workspace, kLtWorkspaceBytes) != cudaSuccess) {
            cudaGetLastError();
            throw Error(Status::out_of_memory, "CUDA cuBLASLt workspace: cannot allocate " + std::to_string(kLtWorkspaceBytes) + " bytes");
        }
        s.lt_plans = std::move(plans);
    }
    return *s.lt_plans;
}

template <class T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value) {
    UNCLIP_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)));
}

template <class T>
void set_preference(cublasLtMatmulPreference_t preference, cublasLtMatmulPreferenceAttributes_t attribute, const T& value) {
    UNCLIP_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, attribute, &value, sizeof(value)));
}

struct Preference {
    cublasLtMatmulPreference_t handle = nullptr;
    Preference() { UNCLIP_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&handle)); }
    ~Preference() { cublasLtMatmulPreferenceDestroy(handle); }
    Preference(const Preference&) = delete;
    Preference& operator=(const Preference&) = delete;
};

// Column-major, as cuBLASLt sees the row-major tensors: y^T [out, rows] = op_T(W^T [in, out]) x^T [in, rows] + bias.
void make_plan(LtPlans& lt, Plan& plan, const PlanKey& key, cudaDataType_t operand, const float* bias) {
    UNCLIP_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    set_desc(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, std::int32_t{CUBLAS_OP_T});
    set_desc(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, std::int32_t{CUBLAS_OP_N});
    set_desc(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, std::uint32_t{CUBLASLT_EPILOGUE_BIAS});
    set_desc(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, std::int32_t{CUDA_R_32F});
    // The heuristic reads the bias pointer's alignment (never its data) from the descriptor.
    set_desc(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(bias));
    const auto in = static_cast<std::uint64_t>(key.in_features), out = static_cast<std::uint64_t>(key.out_features);
    const auto rows = static_cast<std::uint64_t>(key.rows);
    UNCLIP_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.weight, operand, in, out, key.in_features));
    UNCLIP_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.x, operand, in, rows, key.in_features));
    UNCLIP_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.y, CUDA_R_32F, out, rows, key.out_features));

    Preference preference;
    set_preference(preference.handle, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, std::uint64_t{kLtWorkspaceBytes});
    set_preference(preference.handle, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_w);
    set_preference(preference.handle, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x);
    set_preference(preference.handle, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_y);
    set_preference(preference.handle, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_y);
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(lt.handle, plan.desc, plan.weight, plan.x, plan.y, plan.y,
                                                                 preference.handle, 1, &result, &found);
    // NOT_SUPPORTED (no algorithm for this combination) is an answer, not an error: the caller
    // then runs the plain GEMM and the bias kernel.
    if (status == CUBLAS_STATUS_NOT_SUPPORTED) return;
    UNCLIP_CUBLAS_CHECK(status);
    if (found < 1 || result.state != CUBLAS_STATUS_SUCCESS || result.workspaceSize > kLtWorkspaceBytes) return;
    plan.algo = result.algo;
    plan.usable = true;
}

}  // namespace

bool linear_bias_epilogue(ContextState& s, const void* x_operand, std::int64_t rows, std::int64_t in_features,
                          std::int64_t out_features, const void* weight, DType weight_dtype, const float* bias, float* y,
                          bool accumulate) {
    if (weight_dtype != DType::f16 && weight_dtype != DType::bf16) return false;
    LtPlans& lt = lt_plans(s);
    const PlanKey key{rows, in_features, out_features, weight_dtype,
                      alignment_of(x_operand), alignment_of(weight), alignment_of(y), alignment_of(bias)};
    auto [it, inserted] = lt.plans.try_emplace(key);
    Plan& plan = it->second;
    if (inserted) {
        try {
            make_plan(lt, plan, key, weight_dtype == DType::f16 ? CUDA_R_16F : CUDA_R_16BF, bias);
        } catch (...) {
            lt.plans.erase(it);
            throw;
        }
    }
    if (!plan.usable) return false;
    set_desc(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(bias));
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    UNCLIP_CUBLAS_CHECK(cublasLtMatmul(lt.handle, plan.desc, &alpha, weight, plan.weight, x_operand, plan.x, &beta, y, plan.y,
                                       y, plan.y, &plan.algo, lt.workspace, kLtWorkspaceBytes, s.stream));
    ++s.bias_epilogue_calls;
    return true;
}

}  // namespace unclip::cuda
