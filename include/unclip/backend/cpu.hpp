#pragma once
// CPU backend primitives over plain pointers (float storage, row-major / NCHW, contiguous unless a
// leading dimension is given). Definitions live in src/backend/ and use Eigen, which never
// reaches an installed header. Every primitive splits its work into pieces whose size depends on
// the shapes only, so results are bit-identical whatever the thread count.
#include <cstdint>
#include <functional>
#include <memory>

#include "unclip/backend/args.hpp"
#include "unclip/detail/export.hpp"
#include "unclip/dtype.hpp"
#include "unclip/scratch.hpp"

namespace unclip {

namespace detail {
class ThreadPool;
}

// The instruction set the CPU kernels run with on this machine: "avx512", "avx2" or "baseline".
UNCLIP_CXX_API const char* cpu_kernel_isa() noexcept;

// More threads than this in one Context is refused (Status::invalid_argument): a mistake, not a machine.
inline constexpr int kMaxCpuThreads = 1024;

struct CpuBackend {
    // Rows a transformer feed-forward handles per pass: its hidden state stays in cache-friendly
    // sizes (see nn::SpatialTransformer).
    static constexpr std::int64_t kFeedForwardRows = 1024;
    // Linear layers read fp32 inputs (their bf16 path rounds inside the GEMM's packing), so no op
    // writes rounded linear inputs here (see CudaBackend::kRoundedLinearInputs).
    static constexpr bool kRoundedLinearInputs = false;
    // conv2d builds an upsampled input (Conv2dArgs::input_upsample) in scratch, so the modules
    // upsample into their own buffers instead (see nn::detail::conv_reads_upsampled).
    static constexpr bool kConvReadsUpsampledInput = false;

    // Per-caller execution state: the worker threads. A Context is used by one thread at a time;
    // several threads may run the same (const) modules, each with its own Context and Scratch.
    class UNCLIP_CXX_API Context {
    public:
        // threads <= 0: one per hardware thread. Throws Error(Status::invalid_argument) above
        // kMaxCpuThreads and Error(Status::out_of_memory) when the threads cannot be started.
        explicit Context(int threads = 0);
        ~Context();
        Context(Context&&) noexcept;
        Context& operator=(Context&&) noexcept;
        int threads() const noexcept;
        // Calls fn(begin, end) over consecutive ranges covering [0, n), `grain` indices or more
        // each, on the pool's threads and the caller's. Exceptions from fn reach the caller.
        void parallel_for(std::int64_t n, std::int64_t grain,
                          const std::function<void(std::int64_t, std::int64_t)>& fn) const;

        // GEMMs (linear layers, convolutions) and attention's two products (QK^T and PV, for
        // head_dim a multiple of 16) with bf16 inputs and fp32 sums on CPUs with AVX-512 BF16: about
        // twice the fp32 rate, relative error about 1e-2 instead of 1e-6. Softmax, normalisation and
        // everything on other CPUs stay fp32. Off by default.
        void set_bf16_gemm(bool on) noexcept { bf16_gemm_ = on; }
        bool bf16_gemm() const noexcept { return bf16_gemm_; }

    private:
        std::unique_ptr<detail::ThreadPool> pool_;
        bool bf16_gemm_ = false;
    };

    // Whether this CPU has the AVX-512 BF16 dot products that Context::set_bf16_gemm uses.
    UNCLIP_CXX_API static bool has_bf16_gemm() noexcept;

    // C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C; op transposes when trans_* is set
    // (A is then stored [k,m]). Row-major with leading dimensions lda/ldb/ldc. beta == 0 ignores
    // what C held (NaN included).
    UNCLIP_CXX_API static void gemm(const Context& ctx, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n,
                                    std::int64_t k, float alpha, const float* a, std::int64_t lda, const float* b,
                                    std::int64_t ldb, float beta, float* c, std::int64_t ldc);

    // A linear layer over rows: y[rows, out] = x[rows, in] W^T + bias, W stored [out, in] (bias may be
    // nullptr); `accumulate` adds the result into y. The bias is fused into the GEMM's store.
    // The weight may be f32, f16 or bf16 (widened while it is packed).
    UNCLIP_CXX_API static void linear(const Context& ctx, const float* x, std::int64_t rows, std::int64_t in_features,
                                      std::int64_t out_features, const void* weight, DType weight_dtype,
                                      const float* bias, float* y, bool accumulate);

    using Conv2dArgs = backend::Conv2dArgs;
    UNCLIP_CXX_API static std::size_t conv2d_scratch_bytes(const Conv2dArgs& args) noexcept;
    // With AVX-512: Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions with at least 64 output
    // tiles of 4x4 and 16 channels in and out (within about 1e-6 of the direct sum in fp32, also
    // when bf16 GEMMs are on), else one GEMM per image whose B operand is the input unfolded while
    // it is packed. Without: im2col over bands of output rows with Eigen's GEMM. 1x1 stride-1
    // convolutions need no unfolding. With args.input_affine the input is first mapped into
    // scratch (conv2d_scratch_bytes counts it), bit for bit what group_norm would have written;
    // with args.input_upsample 2 the upsampled input is built in scratch the same way.
    UNCLIP_CXX_API static void conv2d(const Context& ctx, const Conv2dArgs& args, Scratch& scratch);

    // y = GroupNorm(x) * gamma + beta over [B, C, spatial], then SiLU if `silu`. Statistics in
    // double. x and y may alias.
    UNCLIP_CXX_API static void group_norm(const Context& ctx, const float* x, const float* gamma, const float* beta,
                                          float* y, std::int64_t batch, std::int64_t channels, std::int64_t spatial,
                                          int groups, float eps, bool silu);
    // The same GroupNorm as the affine map group_norm applies per (image, channel): the normalised,
    // gamma/beta-scaled x is x * scale + shift. scale, shift: [batch * channels]. With
    // Conv2dArgs::input_affine this folds a GroupNorm (+ SiLU) into the next convolution.
    // addend [batch * channels] (or nullptr): normalise x + addend, a per-(image, channel) value
    // (a convolution's bias, a timestep embedding) that is then never added to x itself; the map
    // still takes x: GroupNorm(x + addend) = x * scale + shift.
    UNCLIP_CXX_API static void group_norm_affine(const Context& ctx, const float* x, const float* gamma,
                                                 const float* beta, std::int64_t batch, std::int64_t channels,
                                                 std::int64_t spatial, int groups, float eps, float* scale, float* shift,
                                                 const float* addend = nullptr);

    // y = LayerNorm(x) * gamma + beta over the last dimension of [rows, cols]; statistics in double.
    // x and y may alias.
    UNCLIP_CXX_API static void layer_norm(const Context& ctx, const float* x, const float* gamma, const float* beta,
                                          float* y, std::int64_t rows, std::int64_t cols, float eps);
    // Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), and OpenAI CLIP's quick_gelu, x sigmoid(1.702 x); may alias.
    UNCLIP_CXX_API static void gelu(const Context& ctx, const float* x, float* y, std::int64_t n);
    UNCLIP_CXX_API static void quick_gelu(const Context& ctx, const float* x, float* y, std::int64_t n);
    // GEGLU: x [rows, 2*inner] -> y [rows, inner], y = x[:, :inner] * gelu(x[:, inner:]).
    UNCLIP_CXX_API static void geglu(const Context& ctx, const float* x, float* y, std::int64_t rows, std::int64_t inner);

    // Scaled dot-product attention per head: out = softmax(scale * q k^T [+ causal mask]) v. q, k, v and out
    // are [batch, tokens, heads * head_dim] with arbitrary token and batch strides (so q, k and v may be
    // column ranges of one fused projection). Tiled with an online softmax: memory does not grow with
    // q_len * kv_len. out must not overlap q, k or v.
    using AttentionArgs = backend::AttentionArgs;
    UNCLIP_CXX_API static void attention(const Context& ctx, const AttentionArgs& args);

    // [B, C, S] (channels first) -> [B, S, C] (tokens), and back; the way back may add into y instead.
    UNCLIP_CXX_API static void channels_to_tokens(const Context& ctx, const float* x, float* y, std::int64_t batch,
                                                  std::int64_t channels, std::int64_t spatial);
    UNCLIP_CXX_API static void tokens_to_channels(const Context& ctx, const float* x, float* y, std::int64_t batch,
                                                  std::int64_t channels, std::int64_t spatial, bool accumulate);
    // Nearest-neighbour resize [B, C, h, w] -> [B, C, out_h, out_w] with PyTorch's "nearest" rule
    // (source index floor(dst * in / out)).
    UNCLIP_CXX_API static void upsample_nearest(const Context& ctx, const float* x, float* y, std::int64_t batch,
                                                std::int64_t channels, std::int64_t h, std::int64_t w,
                                                std::int64_t out_h, std::int64_t out_w);

    // y[i] = silu(x[i]); x and y may alias.
    UNCLIP_CXX_API static void silu(const Context& ctx, const float* x, float* y, std::int64_t n);
    // y[b, c, s] = x[b, c, s] + bias[c] over [B, C, spatial]; x may be y. (A residual that takes the
    // bias of the convolution accumulating onto it, so no pass over the sum adds that.)
    UNCLIP_CXX_API static void add_channel_bias(const Context& ctx, const float* x, const float* bias, float* y,
                                                std::int64_t batch, std::int64_t channels, std::int64_t spatial);
    // y[r, c] += bias[c] over [rows, cols].
    UNCLIP_CXX_API static void add_row_bias(const Context& ctx, float* y, const float* bias, std::int64_t rows,
                                            std::int64_t cols);
    // y[i] += x[i].
    UNCLIP_CXX_API static void add(const Context& ctx, const float* x, float* y, std::int64_t n);

    // The copies a module needs between host and backend memory, which are plain copies here
    // (CudaBackend's move data to and from the GPU). n floats each.
    UNCLIP_CXX_API static void upload(const Context& ctx, const float* host, float* y, std::int64_t n);
    UNCLIP_CXX_API static void download(const Context& ctx, const float* x, float* host, std::int64_t n);
    UNCLIP_CXX_API static void copy(const Context& ctx, const float* x, float* y, std::int64_t n);
    // y = [a, b] along channels: a [B, c1, spatial], b [B, c2, spatial] -> y [B, c1 + c2, spatial].
    UNCLIP_CXX_API static void concat_channels(const Context& ctx, const float* a, std::int64_t c1, const float* b,
                                               std::int64_t c2, float* y, std::int64_t batch, std::int64_t spatial);
    // nn::timestep_embedding: timesteps [batch] -> out [batch, dim].
    UNCLIP_CXX_API static void timestep_embedding(const Context& ctx, const float* timesteps, std::int64_t batch,
                                                  std::int64_t dim, float* out);

    // Row gather (embedding lookup): y[i, :] = table[ids[i], :] for i < n; ids (host memory) must
    // be valid rows, which the caller checks.
    UNCLIP_CXX_API static void gather_rows(const Context& ctx, const float* table, const std::int32_t* ids,
                                           std::int64_t n, std::int64_t cols, float* y);
    // Non-overlapping patch x patch tiles of [B, C, H, W] as rows, for a patch embedding GEMM:
    // y[b, py * (W / patch) + px, (c * patch + ky) * patch + kx] = x[b, c, py * patch + ky, px * patch + kx].
    // H and W must be multiples of patch.
    UNCLIP_CXX_API static void extract_patches(const Context& ctx, const float* x, std::int64_t batch,
                                               std::int64_t channels, std::int64_t height, std::int64_t width,
                                               int patch, float* y);
};

}  // namespace unclip
