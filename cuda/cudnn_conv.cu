// CudaBackend::conv2d through cuDNN (cudnn_conv.cuh).
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "check.cuh"
#include "context.cuh"
#include "convert.cuh"
#include "cudnn_conv.cuh"
#include "cudnn_library.cuh"
#include "im2col_launch.cuh"
#include "unclip/error.hpp"

namespace unclip::cuda {

#if UNCLIP_HAVE_CUDNN
namespace {

// An algorithm may ask for more workspace than this, which a GPU short of memory could not give
// next to the models; the heuristics' next choice is taken then. As much as the largest band of
// im2col columns (Context::column_limit's default, in halves).
constexpr std::size_t kMaxAlgorithmWorkspace = std::size_t{256} << 20;

// The FFT and non-fused Winograd algorithms keep transformed operands in half precision, with
// errors beyond a half-precision GEMM's; the others sum the same products in fp32.
bool accurate(cudnnConvolutionFwdAlgo_t algo) {
    return algo != CUDNN_CONVOLUTION_FWD_ALGO_FFT && algo != CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING &&
           algo != CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}

std::size_t aligned_bytes(std::int64_t elements, std::size_t element) {
    return (static_cast<std::size_t>(elements) * element + 255) / 256 * 256;
}

// y [planes, spatial] = (accumulate ? y : 0) + conv [planes, spatial] + bias[plane % channels]:
// the order of the cuBLAS path's GEMM beta and its bias pass.
template <class Half>
__global__ void add_convolution_kernel(const Half* __restrict__ conv, float* y, const float* __restrict__ bias,
                                       std::int64_t planes, std::int64_t channels, std::int64_t spatial, bool accumulate,
                                       bool vectorized) {
    struct alignas(4 * sizeof(Half)) Four {
        Half v[4];
    };
    for (std::int64_t plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        const float b = bias ? bias[plane % channels] : 0.0f;
        const Half* in = conv + plane * spatial;
        float* out = y + plane * spatial;
        if (vectorized) {
            for (std::int64_t i = first_index(); i < spatial / 4; i += grid_stride()) {
                const Four h = reinterpret_cast<const Four*>(in)[i];
                float4 v = accumulate ? reinterpret_cast<const float4*>(out)[i] : float4{0.0f, 0.0f, 0.0f, 0.0f};
                v.x = v.x + static_cast<float>(h.v[0]) + b;
                v.y = v.y + static_cast<float>(h.v[1]) + b;
                v.z = v.z + static_cast<float>(h.v[2]) + b;
                v.w = v.w + static_cast<float>(h.v[3]) + b;
                reinterpret_cast<float4*>(out)[i] = v;
            }
        } else {
            for (std::int64_t i = first_index(); i < spatial; i += grid_stride())
                out[i] = (accumulate ? out[i] : 0.0f) + static_cast<float>(in[i]) + b;
        }
    }
}

void launch_add_convolution(cudaStream_t stream, const void* conv, DType dtype, float* y, const float* bias,
                            std::int64_t planes, std::int64_t channels, std::int64_t spatial, bool accumulate) {
    constexpr int kThreads = 256;
    const bool vectorized = spatial % 4 == 0 && aligned16(y) && aligned_to(conv, 8);
    const dim3 grid(std::min(blocks_for(vectorized ? spatial / 4 : spatial, kThreads), 1024u),
                    static_cast<unsigned>(std::min<std::int64_t>(planes, 65535)));
    with_half_type(dtype, "cuDNN convolution", [&](auto half) {
        using Half = decltype(half);
        add_convolution_kernel<Half><<<grid, kThreads, 0, stream>>>(static_cast<const Half*>(conv), y, bias, planes,
                                                                    channels, spatial, accumulate, vectorized);
    });
    UNCLIP_CUDA_CHECK_LAUNCH();
}

cudnnDataType_t cudnn_type(DType dtype) { return dtype == DType::bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_HALF; }

// batch, C_in, height, width (as convolved), C_out, kernel h and w, stride, padding h and w, dtype
using PlanKey = std::array<std::int64_t, 11>;

PlanKey plan_key(const CudaBackend::Conv2dArgs& a) {
    return {a.batch, a.in_channels, a.height, a.width, a.out_channels, a.kernel_h, a.kernel_w, a.stride, a.pad_top,
            a.pad_left, static_cast<std::int64_t>(a.weight_dtype)};
}

}  // namespace

struct CudnnConvolutions {
    struct Plan {
        PlanKey key{};
        cudnnTensorDescriptor_t x = nullptr, y = nullptr;
        cudnnFilterDescriptor_t w = nullptr;
        cudnnConvolutionDescriptor_t conv = nullptr;
        cudnnConvolutionFwdAlgo_t algo{};
        std::size_t workspace = 0;
        bool usable = false;  // cuDNN offered an accurate algorithm within the workspace cap
        bool ran = false;     // queued outside a graph recording at least once
    };

    const CudnnApi& api;
    cudnnHandle_t handle = nullptr;
    std::vector<Plan> plans;

    CudnnConvolutions(const CudnnApi& library, cudaStream_t stream) : api(library) {
        UNCLIP_CUDNN_CHECK(api, cudnnCreate(&handle));
        try {
            UNCLIP_CUDNN_CHECK(api, cudnnSetStream(handle, stream));
        } catch (...) {
            api.cudnnDestroy(handle);
            throw;
        }
    }
    ~CudnnConvolutions() {
        for (Plan& p : plans) release(p);
        api.cudnnDestroy(handle);
    }
    CudnnConvolutions(const CudnnConvolutions&) = delete;
    CudnnConvolutions& operator=(const CudnnConvolutions&) = delete;

    void release(Plan& p) const noexcept {
        if (p.x) api.cudnnDestroyTensorDescriptor(p.x);
        if (p.y) api.cudnnDestroyTensorDescriptor(p.y);
        if (p.w) api.cudnnDestroyFilterDescriptor(p.w);
        if (p.conv) api.cudnnDestroyConvolutionDescriptor(p.conv);
    }

    // The plan for a's geometry, made on first use (host work only: descriptors and heuristics).
    // A geometry cuDNN refuses to describe or rank gets an unusable plan: im2col serves it.
    Plan& plan(const CudaBackend::Conv2dArgs& a) {
        const PlanKey key = plan_key(a);
        for (Plan& p : plans)
            if (p.key == key) return p;
        Plan p;
        p.key = key;
        try {
            describe(p, a);
            choose_algorithm(p);
        } catch (const Error&) {
            release(p);
            p = Plan{};
            p.key = key;
        }
        plans.push_back(p);
        return plans.back();
    }

private:
    void describe(Plan& p, const CudaBackend::Conv2dArgs& a) const {
        const cudnnDataType_t type = cudnn_type(a.weight_dtype);
        const auto i = [](std::int64_t v) { return static_cast<int>(v); };
        UNCLIP_CUDNN_CHECK(api, cudnnCreateTensorDescriptor(&p.x));
        UNCLIP_CUDNN_CHECK(api, cudnnCreateTensorDescriptor(&p.y));
        UNCLIP_CUDNN_CHECK(api, cudnnCreateFilterDescriptor(&p.w));
        UNCLIP_CUDNN_CHECK(api, cudnnCreateConvolutionDescriptor(&p.conv));
        UNCLIP_CUDNN_CHECK(api, cudnnSetTensor4dDescriptor(p.x, CUDNN_TENSOR_NCHW, type, i(a.batch), i(a.in_channels),
                                                           i(a.height), i(a.width)));
        UNCLIP_CUDNN_CHECK(api, cudnnSetFilter4dDescriptor(p.w, type, CUDNN_TENSOR_NCHW, i(a.out_channels),
                                                           i(a.in_channels), a.kernel_h, a.kernel_w));
        // PyTorch's Conv2d is a cross-correlation; products are summed in fp32.
        UNCLIP_CUDNN_CHECK(api, cudnnSetConvolution2dDescriptor(p.conv, a.pad_top, a.pad_left, a.stride, a.stride, 1, 1,
                                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        UNCLIP_CUDNN_CHECK(api, cudnnSetConvolutionMathType(p.conv, CUDNN_TENSOR_OP_MATH));
        UNCLIP_CUDNN_CHECK(api, cudnnSetTensor4dDescriptor(p.y, CUDNN_TENSOR_NCHW, type, i(a.batch), i(a.out_channels),
                                                           i(a.out_height()), i(a.out_width())));
    }

    void choose_algorithm(Plan& p) const {
        std::array<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT> ranked{};
        int returned = 0;
        UNCLIP_CUDNN_CHECK(api, cudnnGetConvolutionForwardAlgorithm_v7(handle, p.x, p.w, p.conv, p.y,
                                                                       static_cast<int>(ranked.size()), &returned,
                                                                       ranked.data()));
        for (int r = 0; r < returned; ++r) {
            const cudnnConvolutionFwdAlgoPerf_t& choice = ranked[static_cast<std::size_t>(r)];
            if (choice.status != CUDNN_STATUS_SUCCESS || !accurate(choice.algo) || choice.memory > kMaxAlgorithmWorkspace)
                continue;
            UNCLIP_CUDNN_CHECK(api, cudnnSetConvolutionMathType(p.conv, choice.mathType));
            std::size_t workspace = 0;
            if (api.cudnnGetConvolutionForwardWorkspaceSize(handle, p.x, p.w, p.conv, p.y, choice.algo, &workspace) !=
                    CUDNN_STATUS_SUCCESS ||
                workspace > kMaxAlgorithmWorkspace)
                continue;
            p.algo = choice.algo;
            p.workspace = workspace;
            p.usable = true;
            return;
        }
    }
};

namespace {

// The context's cuDNN state, made on first use; nullptr (and the reason kept) when cuDNN cannot
// serve this context.
CudnnConvolutions* convolutions_for(ContextState& s) {
    if (s.cudnn) return s.cudnn.get();
    if (!s.cudnn_error.empty()) return nullptr;
    const CudnnApi* api = cudnn_api();
    if (!api) {
        s.cudnn_error = cudnn_description();
        return nullptr;
    }
    try {
        s.cudnn = std::make_shared<CudnnConvolutions>(*api, s.stream);
    } catch (const Error& e) {
        s.cudnn_error = e.what();
        return nullptr;
    }
    return s.cudnn.get();
}

}  // namespace

bool cudnn_conv2d(const CudaBackend::Context& ctx, const CudaBackend::Conv2dArgs& a) {
    if (!ctx.cudnn_convolutions()) return false;
    if (a.weight_dtype != DType::f16 && a.weight_dtype != DType::bf16) return false;
    if (a.kernel_h * a.kernel_w == 1 || a.pad_top != a.pad_bottom || a.pad_left != a.pad_right) return false;
    const std::int64_t out_h = a.out_height(), out_w = a.out_width();
    const std::int64_t in_elements = a.batch * a.in_channels * a.height * a.width;
    const std::int64_t out_elements = a.batch * a.out_channels * out_h * out_w;
    constexpr std::int64_t kMaxElements = 0x7fffffff;  // cuDNN's 4-d descriptors take int sizes and strides
    if (in_elements > kMaxElements || out_elements > kMaxElements ||
        a.out_channels * a.in_channels * a.kernel_h * a.kernel_w > kMaxElements)
        return false;
    ContextState& s = ctx.state();
    CudnnConvolutions* convolutions = convolutions_for(s);
    if (!convolutions) return false;
    CudnnConvolutions::Plan& plan = convolutions->plan(a);
    if (!plan.usable) return false;
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    UNCLIP_CUDA_CHECK(cudaStreamIsCapturing(s.stream, &capture));
    if (capture != cudaStreamCaptureStatusNone && !plan.ran) return false;

    const std::size_t element = dtype_size(a.weight_dtype);
    const std::size_t input_bytes = aligned_bytes(in_elements, element), output_bytes = aligned_bytes(out_elements, element);
    auto* base = static_cast<unsigned char*>(s.workspace(input_bytes + output_bytes + plan.workspace));
    void* input = base;
    void* output = base + input_bytes;
    void* workspace = plan.workspace > 0 ? base + input_bytes + output_bytes : nullptr;

    if (a.input_affine || a.input_upsample != 1) {
        // A 1x1 im2col writes the input itself (NCHW), mapped, upsampled and rounded.
        CudaBackend::Conv2dArgs pointwise = a;
        pointwise.kernel_h = pointwise.kernel_w = 1;
        pointwise.stride = 1;
        pointwise.pad_top = pointwise.pad_left = pointwise.pad_bottom = pointwise.pad_right = 0;
        launch_im2col(s.stream, pointwise, a.x, 0, a.batch, input, a.weight_dtype, a.width, 0, a.height);
    } else {
        launch_round_f32(a.x, input, in_elements, a.weight_dtype, s.stream);
    }
    const float one = 1.0f, zero = 0.0f;
    const CudnnApi& api = convolutions->api;
    const cudnnStatus_t status = api.cudnnConvolutionForward(convolutions->handle, &one, plan.x, input, plan.w, a.weight,
                                                             plan.conv, plan.algo, workspace, plan.workspace, &zero, plan.y,
                                                             output);
    if (status == CUDNN_STATUS_NOT_SUPPORTED) {
        // Ranked usable but refused when run: im2col from now on (the input written above is
        // workspace that the caller's path overwrites).
        plan.usable = false;
        return false;
    }
    if (status != CUDNN_STATUS_SUCCESS) throw_cudnn_error(api, "cudnnConvolutionForward", status);
    launch_add_convolution(s.stream, output, a.weight_dtype, a.y, a.bias, a.batch * a.out_channels, a.out_channels,
                           out_h * out_w, a.accumulate);
    if (capture == cudaStreamCaptureStatusNone) plan.ran = true;
    ++s.cudnn_convolution_calls;
    return true;
}

std::string convolution_path(const CudaBackend::Context& ctx) {
    if (!ctx.cudnn_convolutions()) return "im2col + cuBLAS (cuDNN switched off)";
    ContextState& s = ctx.state();
    if (!convolutions_for(s)) return "im2col + cuBLAS (" + s.cudnn_error + ")";
    return cudnn_description() + ", im2col + cuBLAS where it offers no algorithm";
}

void prepare_convolutions(const CudaBackend::Context& ctx) {
    if (ctx.cudnn_convolutions()) convolutions_for(ctx.state());
}

#else  // built without cuDNN's headers

bool cudnn_conv2d(const CudaBackend::Context&, const CudaBackend::Conv2dArgs&) { return false; }

std::string convolution_path(const CudaBackend::Context&) { return "im2col + cuBLAS (" + cudnn_description() + ")"; }

void prepare_convolutions(const CudaBackend::Context&) {}

#endif

}  // namespace unclip::cuda
