// CudaBackend::conv2d through cuDNN (cudnn_conv.cuh).
#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
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
    for (std::int64_t plane = first_plane(); plane < planes; plane += plane_stride()) {
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
    const PlaneLaunch launch = plane_launch(planes, vectorized ? spatial / 4 : spatial, kThreads);
    with_half_type(dtype, "cuDNN convolution", [&](auto half) {
        using Half = decltype(half);
        add_convolution_kernel<Half><<<launch.grid, launch.block, 0, stream>>>(
            static_cast<const Half*>(conv), y, bias, planes, channels, spatial, accumulate, vectorized);
    });
    UNCLIP_CUDA_CHECK_LAUNCH();
}

cudnnDataType_t cudnn_type(DType dtype) { return dtype == DType::bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_HALF; }

// batch, C_in, height, width (as convolved), C_out, kernel h and w, stride, padding h and w, dtype,
// and how the input is read (upsampled by 2, mapped by a folded GroupNorm): cuDNN's plan does not
// depend on those, but which path is faster may (cuDNN then needs an input pass, im2col does not).
using PlanKey = std::array<std::int64_t, 13>;

PlanKey plan_key(const CudaBackend::Conv2dArgs& a) {
    return {a.batch,    a.in_channels, a.height,  a.width,   a.out_channels,
            a.kernel_h, a.kernel_w,    a.stride,  a.pad_top, a.pad_left,
            static_cast<std::int64_t>(a.weight_dtype), a.input_upsample, a.input_affine ? 1 : 0};
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
        // Context::convolution_tuning: decided (tuned, under column band tuned_column_limit),
        // measured (timed: not when the scratch output did not fit), and the two paths' times.
        bool tuned = false, timed = false, cudnn_faster = true;
        std::int64_t tuned_column_limit = 0;
        double cudnn_ms = 0.0, im2col_ms = 0.0;
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

    // The plan for a's geometry, or nullptr before the first plan(a).
    Plan* find(const CudaBackend::Conv2dArgs& a) {
        const PlanKey key = plan_key(a);
        for (Plan& p : plans)
            if (p.key == key) return &p;
        return nullptr;
    }

    // The plan for a's geometry, made on first use (descriptors and heuristics). A geometry cuDNN
    // refuses to describe or rank gets an unusable plan: im2col serves it. A refusal of the machine
    // (CudnnRefusal::machine) is rethrown as the CudnnError it is, with no plan kept.
    Plan& plan(const CudaBackend::Conv2dArgs& a) {
        if (Plan* known = find(a)) return *known;
        const PlanKey key = plan_key(a);
        Plan p;
        p.key = key;
        try {
            describe(p, a);
            choose_algorithm(p);
        } catch (const Error& e) {
            release(p);
            const auto* refused = dynamic_cast<const CudnnError*>(&e);
            if (refused && cudnn_refusal_of(refused->cudnn_status()) == CudnnRefusal::machine) throw;
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
    if (!s.cudnn_error.empty()) return nullptr;
    if (s.cudnn) return s.cudnn.get();
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

// What queue_cudnn did: queued the convolution; found cuDNN refusing the plan's algorithm after
// all (the plan is then unusable, and on a refusal of the machine the context's cuDNN is off); or
// found no room for cuDNN's input and output copies and its workspace. Only workspace is written
// unless `ran`.
enum class Queued { ran, refused, no_room };

Queued queue_cudnn(const CudaBackend::Context& ctx, const CudaBackend::Conv2dArgs& a, CudnnConvolutions& convolutions,
                 CudnnConvolutions::Plan& plan) {
    ContextState& s = ctx.state();
    const std::int64_t out_h = a.out_height(), out_w = a.out_width();
    const std::int64_t in_elements = a.batch * a.in_channels * a.height * a.width;
    const std::int64_t out_elements = a.batch * a.out_channels * out_h * out_w;
    const std::size_t element = dtype_size(a.weight_dtype);
    const std::size_t input_bytes = aligned_bytes(in_elements, element), output_bytes = aligned_bytes(out_elements, element);
    unsigned char* base = nullptr;
    try {
        base = static_cast<unsigned char*>(s.workspace(input_bytes + output_bytes + plan.workspace));
    } catch (const Error& e) {
        if (e.status() != Status::out_of_memory) throw;
        return Queued::no_room;
    }
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
    const CudnnApi& api = convolutions.api;
    const cudnnStatus_t status = api.cudnnConvolutionForward(convolutions.handle, &one, plan.x, input, plan.w, a.weight,
                                                             plan.conv, plan.algo, workspace, plan.workspace, &zero, plan.y,
                                                             output);
    if (status != CUDNN_STATUS_SUCCESS) {
        const CudnnRefusal refusal = cudnn_refusal_of(status);
        if (refusal == CudnnRefusal::error) throw_cudnn_error(api, "cudnnConvolutionForward", status);
        plan.usable = false;  // ranked usable, refused when run: im2col serves the geometry
        if (refusal == CudnnRefusal::machine)
            s.cudnn_error = std::string("cuDNN refused to run: ") + api.cudnnGetErrorString(status) + " (" +
                            std::to_string(static_cast<int>(status)) + ")";
        return Queued::refused;
    }
    launch_add_convolution(s.stream, output, a.weight_dtype, a.y, a.bias, a.batch * a.out_channels, a.out_channels,
                           out_h * out_w, a.accumulate);
    return Queued::ran;
}

// Two events on a stream: the GPU time of what is queued between them.
class StreamTimer {
public:
    explicit StreamTimer(cudaStream_t stream) : stream_(stream) {
        UNCLIP_CUDA_CHECK(cudaEventCreate(&start_));
        if (cudaEventCreate(&stop_) != cudaSuccess) {
            cudaEventDestroy(start_);
            cudaGetLastError();
            throw Error(Status::device, "CUDA convolution tuning: cudaEventCreate failed");
        }
    }
    ~StreamTimer() {
        cudaEventDestroy(start_);
        cudaEventDestroy(stop_);
    }
    StreamTimer(const StreamTimer&) = delete;
    StreamTimer& operator=(const StreamTimer&) = delete;

    // Milliseconds of the faster of two runs of `queue` (which the caller has warmed up).
    template <class Queue>
    double best_of_two(Queue&& queue) {
        float best = 0.0f;
        for (int run = 0; run < 2; ++run) {
            UNCLIP_CUDA_CHECK(cudaEventRecord(start_, stream_));
            queue();
            UNCLIP_CUDA_CHECK(cudaEventRecord(stop_, stream_));
            UNCLIP_CUDA_CHECK(cudaEventSynchronize(stop_));
            float ms = 0.0f;
            UNCLIP_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
            best = run == 0 ? ms : std::min(best, ms);
        }
        return best;
    }

private:
    cudaStream_t stream_;
    cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

// Device memory freed on scope exit (after the stream: cudaFree waits for the device).
struct ProbeOutput {
    float* data = nullptr;
    explicit ProbeOutput(std::int64_t elements)
        : data(static_cast<float*>(allocate(static_cast<std::size_t>(elements) * sizeof(float)))) {}
    ~ProbeOutput() { deallocate(data); }
    ProbeOutput(const ProbeOutput&) = delete;
    ProbeOutput& operator=(const ProbeOutput&) = delete;
};

// The tuning's measured choices, shared by the process's contexts: the two paths sum in different
// orders, so two pipelines that chose differently by timing noise would make pictures a few byte
// values apart; this way they agree (and a geometry is timed once per process).
class TuningDecisions {
public:
    struct Decision {
        bool cudnn_faster;
        double cudnn_ms, im2col_ms;
    };
    // The device, im2col's column band (Context::column_limit) and the geometry.
    using Key = std::tuple<int, std::int64_t, PlanKey>;

    static TuningDecisions& process() {
        static TuningDecisions decisions;
        return decisions;
    }
    std::optional<Decision> find(const Key& key) {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto it = decisions_.find(key);
        return it == decisions_.end() ? std::nullopt : std::optional<Decision>(it->second);
    }
    // The decision kept for key: `decision`, or one another context measured meanwhile, which
    // stays (so that both contexts follow it).
    Decision keep(const Key& key, const Decision& decision) {
        const std::lock_guard<std::mutex> lock(mutex_);
        return decisions_.emplace(key, decision).first->second;
    }

private:
    std::mutex mutex_;
    std::map<Key, Decision> decisions_;
};

// Context::convolution_tuning for a's geometry: both paths into a scratch output, so that y (which
// an accumulating call reads) is untouched, or the choice another context of this process made.
// False when cuDNN refused to run the plan.
bool tune(const CudaBackend::Context& ctx, const CudaBackend::Conv2dArgs& a, CudnnConvolutions& convolutions,
          CudnnConvolutions::Plan& plan) {
    const TuningDecisions::Key key{ctx.state().device, ctx.column_limit(), plan.key};
    plan.tuned_column_limit = ctx.column_limit();
    const auto adopt = [&plan](const TuningDecisions::Decision& decision) {
        plan.tuned = plan.timed = true;
        plan.cudnn_faster = decision.cudnn_faster;
        plan.cudnn_ms = decision.cudnn_ms;
        plan.im2col_ms = decision.im2col_ms;
    };
    if (const std::optional<TuningDecisions::Decision> known = TuningDecisions::process().find(key)) {
        adopt(*known);
        return true;
    }
    // No room to measure (the scratch output, or cuDNN's copies beside it): cuDNN, untimed and not
    // shared; a real run that finds no room for cuDNN either hands the geometry to im2col.
    const auto untimed = [&plan] {
        plan.tuned = true;
        plan.cudnn_faster = true;
        return true;
    };
    std::unique_ptr<ProbeOutput> output;
    try {
        output = std::make_unique<ProbeOutput>(a.batch * a.out_channels * a.out_height() * a.out_width());
    } catch (const Error& e) {
        if (e.status() != Status::out_of_memory) throw;
        return untimed();
    }
    CudaBackend::Conv2dArgs probe = a;
    probe.y = output->data;
    probe.accumulate = false;
    StreamTimer timer(ctx.state().stream);
    // The warm-ups load kernels and make cuBLAS's and cuDNN's per-shape choices.
    switch (queue_cudnn(ctx, probe, convolutions, plan)) {
    case Queued::refused: return false;
    case Queued::no_room: return untimed();
    case Queued::ran: break;
    }
    plan.cudnn_ms = timer.best_of_two([&] { queue_cudnn(ctx, probe, convolutions, plan); });
    im2col_conv2d(ctx, probe);
    plan.im2col_ms = timer.best_of_two([&] { im2col_conv2d(ctx, probe); });
    plan.tuned = plan.timed = true;
    plan.cudnn_faster = plan.cudnn_ms <= plan.im2col_ms;
    if (plan.usable) adopt(TuningDecisions::process().keep(key, {plan.cudnn_faster, plan.cudnn_ms, plan.im2col_ms}));
    return plan.usable;
}

}  // namespace

bool cudnn_conv2d(const CudaBackend::Context& ctx, const CudaBackend::Conv2dArgs& a) {
    if (!ctx.cudnn_convolutions()) return false;
    if (a.weight_dtype != DType::f16 && a.weight_dtype != DType::bf16) return false;
    if (a.kernel_h * a.kernel_w == 1 || a.pad_top != a.pad_bottom || a.pad_left != a.pad_right) return false;
    const std::int64_t in_elements = a.batch * a.in_channels * a.height * a.width;
    const std::int64_t out_elements = a.batch * a.out_channels * a.out_height() * a.out_width();
    constexpr std::int64_t kMaxElements = 0x7fffffff;  // cuDNN's 4-d descriptors take int sizes and strides
    if (in_elements > kMaxElements || out_elements > kMaxElements ||
        a.out_channels * a.in_channels * a.kernel_h * a.kernel_w > kMaxElements)
        return false;
    ContextState& s = ctx.state();
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    UNCLIP_CUDA_CHECK(cudaStreamIsCapturing(s.stream, &capture));
    const bool recording = capture != cudaStreamCaptureStatusNone;
    // While recording, only what an earlier run made: making the handle allocates device memory,
    // which would end the recording, and a plan's first run may load kernels.
    CudnnConvolutions* convolutions = recording ? (s.cudnn_error.empty() ? s.cudnn.get() : nullptr) : convolutions_for(s);
    if (!convolutions) return false;
    CudnnConvolutions::Plan* plan = nullptr;
    try {
        plan = recording ? convolutions->find(a) : &convolutions->plan(a);
    } catch (const CudnnError& e) {  // a refusal of the machine: cuDNN is off for the context
        s.cudnn_error = std::string("cuDNN refused to plan a convolution: ") + e.what();
        return false;
    }
    if (!plan || !plan->usable || (recording && !plan->ran)) return false;
    // Tuned again after Context::set_column_limit: im2col's time depends on its bands.
    const bool tuned = plan->tuned && plan->tuned_column_limit == ctx.column_limit();
    if (!recording && ctx.convolution_tuning() && !tuned && !tune(ctx, a, *convolutions, *plan)) return false;
    if (ctx.convolution_tuning() && plan->tuned && !plan->cudnn_faster) return false;
    const Queued queued = queue_cudnn(ctx, a, *convolutions, *plan);
    // No room for cuDNN's copies beside the models, where im2col's bands may fit: im2col serves the
    // geometry from now on (trying again would free and regrow the workspace at every call).
    if (queued == Queued::no_room) plan->usable = false;
    if (queued != Queued::ran) return false;
    if (!recording) plan->ran = true;
    ++s.cudnn_convolution_calls;
    return true;
}

std::vector<CudaBackend::ConvolutionTiming> convolution_timings(const CudaBackend::Context& ctx) {
    std::vector<CudaBackend::ConvolutionTiming> timings;
    const ContextState& s = ctx.state();
    if (!s.cudnn) return timings;
    for (const CudnnConvolutions::Plan& p : s.cudnn->plans) {
        if (!p.timed) continue;
        const auto& k = p.key;
        CudaBackend::ConvolutionTiming t;
        t.geometry = std::to_string(k[0]) + "x" + std::to_string(k[1]) + "x" + std::to_string(k[2]) + "x" +
                     std::to_string(k[3]) + " -> " + std::to_string(k[4]) + ", " + std::to_string(k[5]) + "x" +
                     std::to_string(k[6]) + " stride " + std::to_string(k[7]) + " pad " + std::to_string(k[8]) +
                     (k[8] == k[9] ? std::string() : "," + std::to_string(k[9])) + ", " +
                     (static_cast<DType>(k[10]) == DType::bf16 ? "bf16" : "f16") +
                     (k[11] == 2 ? ", input upsampled by 2" : "") + (k[12] ? ", input mapped" : "");
        t.cudnn_ms = p.cudnn_ms;
        t.im2col_ms = p.im2col_ms;
        t.cudnn = p.cudnn_faster && p.usable;
        timings.push_back(std::move(t));
    }
    return timings;
}

std::string convolution_path(const CudaBackend::Context& ctx) {
    if (!ctx.cudnn_convolutions()) return "im2col + cuBLAS (cuDNN switched off)";
    const ContextState& s = ctx.state();
    if (!s.cudnn_error.empty()) return "im2col + cuBLAS (" + s.cudnn_error + ")";
    if (!cudnn_api()) return "im2col + cuBLAS (" + cudnn_description() + ")";
    return cudnn_description() + (ctx.convolution_tuning() ? ", or im2col + cuBLAS where that measures faster"
                                                            : ", im2col + cuBLAS where it offers no algorithm");
}

void prepare_convolutions(const CudaBackend::Context& ctx) {
    if (ctx.cudnn_convolutions()) convolutions_for(ctx.state());
}

#else  // built without cuDNN's headers

bool cudnn_conv2d(const CudaBackend::Context&, const CudaBackend::Conv2dArgs&) { return false; }

std::string convolution_path(const CudaBackend::Context&) { return "im2col + cuBLAS (" + cudnn_description() + ")"; }

void prepare_convolutions(const CudaBackend::Context&) {}

std::vector<CudaBackend::ConvolutionTiming> convolution_timings(const CudaBackend::Context&) { return {}; }

#endif

}  // namespace unclip::cuda
