#pragma once
// CUDA backend, declared over plain types: no CUDA header reaches users. In a build without CUDA
// (or on a machine without a GPU) every primitive throws Error(Status::device) and device_count()
// returns 0.
//
// CudaBackend mirrors CpuBackend primitive for primitive, so the same module templates run on
// either. Pointers are device memory unless a comment says "host". Activations are fp32 in device
// memory; GEMM operands are rounded to the weight's half type (fp16 or bf16) and multiplied on the
// tensor cores with fp32 sums, so results agree with the CPU's fp32 path to about 1e-3 relative.
// Every call is queued on the Context's stream and returns before the GPU finishes; download()
// and Context::synchronize() wait, and report any error the queued work raised.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "unclip/backend/args.hpp"
#include "unclip/backend/image_prep.hpp"
#include "unclip/backend/latent_update.hpp"
#include "unclip/detail/export.hpp"
#include "unclip/dtype.hpp"
#include "unclip/scratch.hpp"

namespace unclip::cuda {

// Number of usable CUDA devices; 0 without a CUDA build, a driver or a GPU. Never throws.
UNCLIP_CXX_API int device_count() noexcept;
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)", or why there is none.
UNCLIP_CXX_API std::string device_description();
// True when this library was compiled with the CUDA backend.
UNCLIP_CXX_API bool compiled_with_cuda() noexcept;
// cuDNN, which convolutions use where they can (CudaBackend::Context::set_cudnn_convolutions):
// loaded at run time from UNCLIP_CUDNN_LIBRARY, or libcudnn.so.9 on the loader's path, on the
// first call of either function. "cuDNN 9.19.0 (libcudnn.so.9)", or why it is not used.
// Never throw.
UNCLIP_CXX_API bool cudnn_available() noexcept;
UNCLIP_CXX_API std::string cudnn_description();

// Device memory; free accepts nullptr.
UNCLIP_CXX_API void* allocate(std::size_t bytes);
UNCLIP_CXX_API void deallocate(void* device_pointer) noexcept;
enum class CopyKind { host_to_device, device_to_host, device_to_device };
UNCLIP_CXX_API void copy(void* dst, const void* src, std::size_t bytes, CopyKind kind);

// Page-locked host memory, which the GPU copies from and into directly (a pageable buffer is
// staged by the driver first); free accepts nullptr. Throws Error(Status::out_of_memory).
UNCLIP_CXX_API void* allocate_pinned(std::size_t bytes);
UNCLIP_CXX_API void deallocate_pinned(void* host_pointer) noexcept;

// Free and total memory of the current device in bytes (0, 0 without one). Never throws.
UNCLIP_CXX_API void memory_info(std::size_t& free_bytes, std::size_t& total_bytes) noexcept;

// In-place bulk conversions on device memory (n elements), synchronous.
UNCLIP_CXX_API void convert_f32_to_f16(const float* src, void* dst_half, std::size_t n);
UNCLIP_CXX_API void convert_f16_to_f32(const void* src_half, float* dst, std::size_t n);

struct ContextState;  // stream, cuBLAS handle, workspace (src: cuda/context.cu)

}  // namespace unclip::cuda

namespace unclip {

struct CudaBackend {
    // A GPU runs a transformer feed-forward over all rows at once (one large GEMM instead of
    // many small ones); the limit only bounds the hidden state above 1024 px.
    static constexpr std::int64_t kFeedForwardRows = std::int64_t{1} << 16;

    // The flash-attention kernel's query tile (head_dim 16..128): warps per block, query rows per
    // warp, and the blocks per SM its register budget is cut for. 32 rows per warp use each K and
    // V fragment read from shared memory for two products instead of one, for twice the registers
    // (head_dim <= 64; above, 16 rows); 2 blocks per SM hold the 16-row kernel to 128 registers
    // (head_dim <= 80; above, 1). On an H100 the 768 px UNet's self-attention (2 x 9216 tokens x 5
    // heads of 64) took 1.16 ms with 8x16, 0.95 with 8x16x2, 0.87 with 4x32 and 0.91 with 8x32.
    struct FlashTile {
        int warps = 4, warp_rows = 32, blocks_per_sm = 1;
    };

    // A convolution geometry that a context timed both ways (Context::convolution_tuning).
    struct ConvolutionTiming {
        // "2x320x96x96 -> 320, 3x3 stride 1 pad 1, f16" (input as convolved), then ", input
        // upsampled by 2" and ", input mapped" (a folded GroupNorm) where they apply.
        std::string geometry;
        double cudnn_ms = 0.0;    // best of two runs after a warm-up
        double im2col_ms = 0.0;
        bool cudnn = false;       // the path the context keeps for it
    };

    // One stream, one cuBLAS handle and one growing device workspace (GEMM operands in half
    // precision, im2col columns, attention and norm partials). The workspace grows to the largest
    // request and then stays, so a repeated forward (a sampling loop) allocates nothing. A Context
    // is used by one thread at a time.
    class UNCLIP_CXX_API Context {
    public:
        // Throws Error(Status::device) naming the reason when there is no usable GPU.
        explicit Context(int device = 0);
        ~Context();
        Context(Context&&) noexcept;
        Context& operator=(Context&&) noexcept;
        // Waits for the queued work; an error it raised comes back as Error(Status::device).
        void synchronize() const;
        // Makes this context's GPU the calling thread's current device (for a thread other than
        // the one that created the context).
        void activate() const;
        // Grows the workspace now (so that a timed or captured region does not).
        void reserve_workspace(std::size_t bytes) const;
        std::size_t workspace_bytes() const noexcept;
        // Convolution columns (im2col elements) built at once; above this a convolution runs in
        // bands of output rows, each band's columns written and then read by its GEMM, so that a
        // 768 px VAE layer needs 256 MiB of columns, not gigabytes. At least 1 << 16. (Bands small
        // enough for L2, 1 << 24, measured slower on an H200: BENCHMARKS.md.)
        void set_column_limit(std::int64_t elements) noexcept { column_limit_ = elements < (1 << 16) ? (1 << 16) : elements; }
        std::int64_t column_limit() const noexcept { return column_limit_; }
        // Linear layers with f16/bf16 weights and a bias add it in cuBLASLt's GEMM epilogue instead
        // of a second pass over the output (falling back to that pass where cuBLASLt offers no
        // algorithm). On by default (measured on an H100: a 768 px UNet step 25.9 -> 24.3 ms);
        // UNCLIP_CUDA_LT_EPILOGUE=0 in the environment turns it off for every new context.
        void set_bias_epilogue(bool on) noexcept { bias_epilogue_ = on; }
        bool bias_epilogue() const noexcept { return bias_epilogue_; }
        // Whether modules hand linear layers inputs rounded by the op before (kRoundedLinearInputs);
        // on by default, UNCLIP_CUDA_ROUNDED_INPUTS=0 in the environment turns it off for every new
        // context (the linear layers then round their fp32 inputs themselves).
        void set_rounded_linear_inputs(bool on) noexcept { rounded_linear_inputs_ = on; }
        bool rounded_linear_inputs() const noexcept { return rounded_linear_inputs_; }
        // The flash-attention query tile, warps x rows per warp (x blocks per SM): 4x32 (the
        // default), 8x16, 8x16x2 or 8x32; anything else throws Error(Status::invalid_argument).
        // UNCLIP_CUDA_FLASH_TILE=4x32 (say) in the environment sets it for every new context.
        void set_flash_tile(FlashTile tile);
        FlashTile flash_tile() const noexcept { return flash_tile_; }
        // Whether the pipeline replays its UNet steps from a CUDA graph (Graph). On by default;
        // UNCLIP_CUDA_GRAPHS=0 in the environment turns it off for every new context.
        void set_graphs(bool on) noexcept { graphs_ = on; }
        bool graphs() const noexcept { return graphs_; }
        // Whether the pipeline's sampling loop keeps its latents on the GPU (the samplers' updates
        // as kernels, nothing back per step) or brings them to the host at every step for the
        // sampler's arithmetic there. On by default; UNCLIP_CUDA_DEVICE_SAMPLING=0 in the
        // environment turns it off for every new context (to compare the two).
        void set_device_sampling(bool on) noexcept { device_sampling_ = on; }
        bool device_sampling() const noexcept { return device_sampling_; }
        // Whether convolutions with f16/bf16 weights run through cuDNN (cuda::cudnn_description)
        // where it offers an algorithm for their geometry, instead of im2col and cuBLAS. On by
        // default; UNCLIP_CUDA_CUDNN=0 in the environment turns it off for every new context.
        // Without the library every convolution takes the im2col path; convolution_path() says
        // which path this context's convolutions take, and why (a refusal of the context's cuDNN
        // handle shows once the handle has been tried: prepare_convolutions()).
        void set_cudnn_convolutions(bool on) noexcept { cudnn_convolutions_ = on; }
        bool cudnn_convolutions() const noexcept { return cudnn_convolutions_; }
        std::string convolution_path() const;
        // Where cuDNN serves a convolution, the first run of its geometry outside a graph
        // recording times cuDNN against im2col + cuBLAS (on a scratch output: a warm-up and two
        // runs each) and keeps the faster for that geometry from then on. The choice is shared by
        // the process's contexts on that device (timed once; two pipelines agree to the byte), but
        // another process may choose otherwise where the two paths time alike, and the paths sum
        // in different orders: pictures a few byte values apart. Off: cuDNN wherever it serves,
        // the same choice in every process. On by default; UNCLIP_CUDA_CONV_TUNING=0 in the
        // environment turns it off for every new context. convolution_timings() lists the
        // measurements this context used, in first-run order.
        void set_convolution_tuning(bool on) noexcept { convolution_tuning_ = on; }
        bool convolution_tuning() const noexcept { return convolution_tuning_; }
        std::vector<ConvolutionTiming> convolution_timings() const;
        // Loads cuDNN and makes this context's handle now (a pipeline does so when it loads its
        // models), so that the first convolution does not pay for it; nothing when it is switched
        // off or cannot be loaded (convolution_path() then says why).
        void prepare_convolutions() const;
        // How many linear calls added their bias in the epilogue so far, and how many
        // convolutions ran through cuDNN (tests, benchmarks).
        std::uint64_t bias_epilogue_calls() const noexcept;
        std::uint64_t cudnn_convolution_calls() const noexcept;
        cuda::ContextState& state() const noexcept { return *state_; }

    private:
        std::unique_ptr<cuda::ContextState> state_;
        std::int64_t column_limit_ = std::int64_t{1} << 27;
        bool bias_epilogue_ = true;
        bool rounded_linear_inputs_ = true;
        bool graphs_ = true;
        bool device_sampling_ = true;
        bool cudnn_convolutions_ = true;
        bool convolution_tuning_ = true;
        FlashTile flash_tile_;
    };

    // The work that a sequence of calls queues on a context's stream, recorded once and then
    // queued again by one launch(): a UNet step's thousand kernels reach the GPU without a launch
    // gap between them. Each recorded kernel keeps the pointers and sizes it was called with and
    // reads whatever those buffers hold when it runs, so a launch computes on the new values written
    // to the same buffers. Host values passed by value (a timestep) are frozen at recording.
    // The recorded calls must not wait for the stream or allocate: run them once before recording,
    // so that the workspace has grown and the GEMM plans exist. A Graph belongs to the context it
    // was recorded on and must not outlive the buffers it uses, the workspace included.
    class UNCLIP_CXX_API Graph {
    public:
        Graph() noexcept;
        ~Graph();
        Graph(Graph&&) noexcept;
        Graph& operator=(Graph&&) noexcept;
        // Records what `queue` queues on ctx; nothing runs. When a call cannot be recorded (it
        // waits for the stream, or allocates) or `queue` throws, throws Error(Status::device) naming
        // it; ctx is then usable again, with nothing of `queue` queued.
        static Graph record(const Context& ctx, const std::function<void()>& queue);
        // Whether launch(ctx) may run: ctx is the context it was recorded on, and that context's
        // workspace has not grown since (a grown workspace is new memory).
        bool current(const Context& ctx) const noexcept;
        // Queues the recorded work on ctx's stream. Throws Error(Status::invalid_argument) unless
        // current(ctx).
        void launch(const Context& ctx) const;
        bool empty() const noexcept { return !state_; }
        // Kernels, copies and other operations recorded.
        std::size_t operations() const noexcept;

    private:
        struct State;
        std::unique_ptr<State> state_;
    };

    // A point in a context's queue. wait() returns once the work queued before the last mark()
    // has run (at once before the first mark), and reports an error that work raised. A sampling
    // loop marks each step and waits for the step before, so the host stays one step ahead.
    class UNCLIP_CXX_API Fence {
    public:
        Fence() noexcept;
        ~Fence();
        Fence(Fence&&) noexcept;
        Fence& operator=(Fence&&) noexcept;
        void mark(const Context& ctx);
        void wait() const;

    private:
        struct State;
        std::unique_ptr<State> state_;
    };

    // One sampler update (unclip/backend/latent_update.hpp) over device latents; the results
    // match the CPU's update_on_host up to the host compiler's fused multiply-adds.
    UNCLIP_CXX_API static void latent_update(const Context& ctx, const backend::LatentUpdateArgs& args);

    // Host <-> device copies of n floats on the context's stream. upload returns once the host
    // buffer may be reused; download waits for the data (and so for all queued work).
    UNCLIP_CXX_API static void upload(const Context& ctx, const float* host, float* device, std::int64_t n);
    UNCLIP_CXX_API static void download(const Context& ctx, const float* device, float* host, std::int64_t n);
    // y[i] = x[i] on the device.
    UNCLIP_CXX_API static void copy(const Context& ctx, const float* x, float* y, std::int64_t n);
    // y = [a, b] along channels: a [B, c1, spatial], b [B, c2, spatial] -> y [B, c1 + c2, spatial].
    UNCLIP_CXX_API static void concat_channels(const Context& ctx, const float* a, std::int64_t c1, const float* b,
                                               std::int64_t c2, float* y, std::int64_t batch, std::int64_t spatial);
    // nn::timestep_embedding on the device: timesteps (host) [batch] -> out [batch, dim].
    UNCLIP_CXX_API static void timestep_embedding(const Context& ctx, const float* timesteps, std::int64_t batch,
                                                  std::int64_t dim, float* out);

    // As CpuBackend::gemm: row-major C = alpha op(A) op(B) + beta C, all fp32 (TF32 is not used).
    UNCLIP_CXX_API static void gemm(const Context& ctx, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n,
                                    std::int64_t k, float alpha, const float* a, std::int64_t lda, const float* b,
                                    std::int64_t ldb, float beta, float* c, std::int64_t ldc);
    // As CpuBackend::linear; weight (device) f32, f16 or bf16, [out, in].
    UNCLIP_CXX_API static void linear(const Context& ctx, const float* x, std::int64_t rows, std::int64_t in_features,
                                      std::int64_t out_features, const void* weight, DType weight_dtype,
                                      const float* bias, float* y, bool accumulate);

    // Linear inputs rounded by the op that produced them. A linear with f16/bf16 weights reads its
    // input in the weights' type; layer_norm_rounded and geglu_rounded write their outputs in that
    // type directly (y: rows x cols halves, the values the fp32 op would give, rounded to nearest),
    // and linear_rounded takes such x (x_dtype must be weight_dtype). That saves the pass which
    // rounds each linear's fp32 input, and half of the producer's writes. The modules take this
    // path where kRoundedLinearInputs says the backend has it and Context::rounded_linear_inputs().
    static constexpr bool kRoundedLinearInputs = true;
    UNCLIP_CXX_API static void linear_rounded(const Context& ctx, const void* x, DType x_dtype, std::int64_t rows,
                                              std::int64_t in_features, std::int64_t out_features, const void* weight,
                                              DType weight_dtype, const float* bias, float* y, bool accumulate);
    UNCLIP_CXX_API static void layer_norm_rounded(const Context& ctx, const float* x, const float* gamma,
                                                  const float* beta, void* y, DType y_dtype, std::int64_t rows,
                                                  std::int64_t cols, float eps);
    UNCLIP_CXX_API static void geglu_rounded(const Context& ctx, const float* x, void* y, DType y_dtype,
                                             std::int64_t rows, std::int64_t inner);
    // channels_to_tokens of a GroupNorm's output, from its scale and shift (group_norm_affine):
    // y [B, spatial, C] halves = round(fma(x [B, C, spatial], scale[b, c], shift[b, c])), the
    // normalised tokens a SpatialTransformer's proj_in reads, with no normalised copy of x written.
    UNCLIP_CXX_API static void channels_to_tokens_rounded(const Context& ctx, const float* x, const float* scale,
                                                          const float* shift, void* y, DType y_dtype, std::int64_t batch,
                                                          std::int64_t channels, std::int64_t spatial);

    using Conv2dArgs = backend::Conv2dArgs;
    // conv2d's im2col reads an upsampled input (Conv2dArgs::input_upsample) through the upsampling,
    // so the upsampling layers hand it their input unexpanded (nn::detail::conv_reads_upsampled).
    static constexpr bool kConvReadsUpsampledInput = true;
    // The convolution's columns live in the context's workspace, not in Scratch: 0.
    UNCLIP_CXX_API static std::size_t conv2d_scratch_bytes(const Conv2dArgs& args) noexcept;
    // cuDNN's implicit GEMM where the context takes it (Context::set_cudnn_convolutions), else
    // im2col straight into half precision, then one strided-batched tensor-core GEMM over the batch.
    // With args.input_affine, im2col applies it (and SiLU) to each value it reads: no separate
    // normalising pass; with args.input_upsample 2 it reads each stored value for its 2x2 block,
    // so the upsampled tensor is never stored. (cuDNN reads an input that a 1x1 im2col has mapped,
    // upsampled and rounded.)
    UNCLIP_CXX_API static void conv2d(const Context& ctx, const Conv2dArgs& args, Scratch& scratch);

    UNCLIP_CXX_API static void group_norm(const Context& ctx, const float* x, const float* gamma, const float* beta,
                                          float* y, std::int64_t batch, std::int64_t channels, std::int64_t spatial,
                                          int groups, float eps, bool silu);
    // As CpuBackend::group_norm_affine: the statistics launches of group_norm, whose second also
    // writes scale and shift; the normalising pass is left to the convolution that reads x.
    // With an addend its statistics run over pieces that each lie in one channel.
    UNCLIP_CXX_API static void group_norm_affine(const Context& ctx, const float* x, const float* gamma,
                                                 const float* beta, std::int64_t batch, std::int64_t channels,
                                                 std::int64_t spatial, int groups, float eps, float* scale, float* shift,
                                                 const float* addend = nullptr);
    UNCLIP_CXX_API static void layer_norm(const Context& ctx, const float* x, const float* gamma, const float* beta,
                                          float* y, std::int64_t rows, std::int64_t cols, float eps);
    UNCLIP_CXX_API static void gelu(const Context& ctx, const float* x, float* y, std::int64_t n);
    UNCLIP_CXX_API static void quick_gelu(const Context& ctx, const float* x, float* y, std::int64_t n);
    UNCLIP_CXX_API static void geglu(const Context& ctx, const float* x, float* y, std::int64_t rows, std::int64_t inner);

    // Same layout rules as CpuBackend::AttentionArgs. Flash-style: tiles of queries against tiles
    // of keys with an online softmax, QK^T and PV on fp16 tensor cores when head_dim is a multiple
    // of 16 up to 128, or 256 or 512 (the VAE's one head); fp32 otherwise, and on GPUs older than
    // sm_80 or without the shared memory (sm_86/89 for 512). The attention matrix is never stored.
    using AttentionArgs = backend::AttentionArgs;
    UNCLIP_CXX_API static void attention(const Context& ctx, const AttentionArgs& args);

    UNCLIP_CXX_API static void channels_to_tokens(const Context& ctx, const float* x, float* y, std::int64_t batch,
                                                  std::int64_t channels, std::int64_t spatial);
    UNCLIP_CXX_API static void tokens_to_channels(const Context& ctx, const float* x, float* y, std::int64_t batch,
                                                  std::int64_t channels, std::int64_t spatial, bool accumulate);
    UNCLIP_CXX_API static void upsample_nearest(const Context& ctx, const float* x, float* y, std::int64_t batch,
                                                std::int64_t channels, std::int64_t h, std::int64_t w,
                                                std::int64_t out_h, std::int64_t out_w);
    UNCLIP_CXX_API static void silu(const Context& ctx, const float* x, float* y, std::int64_t n);
    // y[b, c, s] = x[b, c, s] + bias[c] over [B, C, spatial]; x may be y. (A residual that takes the
    // bias of the convolution accumulating onto it, so no pass over the sum adds that.)
    UNCLIP_CXX_API static void add_channel_bias(const Context& ctx, const float* x, const float* bias, float* y,
                                                std::int64_t batch, std::int64_t channels, std::int64_t spatial);
    UNCLIP_CXX_API static void add_row_bias(const Context& ctx, float* y, const float* bias, std::int64_t rows,
                                            std::int64_t cols);
    UNCLIP_CXX_API static void add(const Context& ctx, const float* x, float* y, std::int64_t n);
    // ids are host memory (copied to the device on the stream), as in CpuBackend::gather_rows.
    UNCLIP_CXX_API static void gather_rows(const Context& ctx, const float* table, const std::int32_t* ids,
                                           std::int64_t n, std::int64_t cols, float* y);
    UNCLIP_CXX_API static void extract_patches(const Context& ctx, const float* x, std::int64_t batch,
                                               std::int64_t channels, std::int64_t height, std::int64_t width,
                                               int patch, float* y);

    // The pipeline's output, which has no CpuBackend twin: ComfyUI's VAEDecode + SaveImage,
    // y [B, H, W, 3] bytes = clamp((x [B, 3, H, W] + 1) / 2 x 255, 0, 255) truncated, in the float
    // operations the CPU pipeline uses (the same bytes), so a quarter of the floats' bytes comes back.
    UNCLIP_CXX_API static void to_rgb8(const Context& ctx, const float* x, std::int64_t batch, std::int64_t height,
                                       std::int64_t width, std::uint8_t* y);
    // n bytes from the device into host memory, on the context's stream; waits for them.
    // Host -> device copy of n bytes on the context's stream; returns once the host buffer may be
    // reused, as upload does.
    UNCLIP_CXX_API static void upload_bytes(const Context& ctx, const void* host, void* device, std::size_t n);
    // VAEEncode's input [3, height, width] from the image's crop at (x0, y0) (image.pixels on the
    // device), as the CPU computes it (backend::vae_input_at).
    UNCLIP_CXX_API static void vae_input(const Context& ctx, const backend::ImageBytes& image, std::int64_t x0,
                                         std::int64_t y0, std::int64_t height, std::int64_t width, float* out);
    // A CLIP resampling (unclip/clip_preprocess.hpp; every pointer in `resample` on the device) into
    // out [3, size, size]; rows: 3 * image.height * size * 4 bytes of scratch for the width pass.
    UNCLIP_CXX_API static void clip_resample(const Context& ctx, const backend::ClipResample& resample, void* rows,
                                             float* out);
    UNCLIP_CXX_API static void download_bytes(const Context& ctx, const void* device, void* host, std::size_t n);
};

}  // namespace unclip
