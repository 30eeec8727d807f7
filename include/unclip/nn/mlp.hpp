#pragma once
// The CLIP transformer's feed-forward (OpenCLIP `mlp`, HF CLIPMLP): c_fc -> activation -> c_proj.
#include <algorithm>
#include <string>

#include "unclip/nn/linear.hpp"

namespace unclip::nn {

// Exact erf GELU (OpenCLIP/LAION towers, nn.GELU) or OpenAI CLIP's quick_gelu x*sigmoid(1.702x).
enum class Activation { gelu, quick_gelu };

struct MlpConfig {
    std::int64_t dim = 0, hidden = 0;
    Activation activation = Activation::gelu;
};

template <class T>
struct MlpWeights {
    LinearWeights<T> fc;    // c_fc: [hidden, dim] + bias
    LinearWeights<T> proj;  // c_proj: [dim, hidden] + bias
};

// Keys under `prefix` (e.g. "transformer.resblocks.0.mlp."): c_fc.{weight,bias}, c_proj.{weight,bias}.
template <class T>
MlpWeights<T> load_mlp(const WeightMap& map, const std::string& prefix, const MlpConfig& cfg) {
    return {load_linear<T>(map, prefix + "c_fc.", {cfg.dim, cfg.hidden, true}),
            load_linear<T>(map, prefix + "c_proj.", {cfg.hidden, cfg.dim, true})};
}

template <class Backend, class T>
class Mlp {
public:
    // At most this many rows per pass: bounds the [rows, hidden] activation (21 MB of fp32 at
    // hidden 5120). Passes are balanced, so 257 ViT tokens run as one GEMM, not 256 + 1 (a lone
    // row re-reads both weight matrices for one GEMV).
    static constexpr std::int64_t kMaxChunkRows = 1024;

    // Throws Error(Status::bad_model) naming the weight whose shape disagrees with cfg.
    Mlp(const MlpConfig& cfg, const MlpWeights<T>& w)
        : cfg_(cfg), fc_({cfg.dim, cfg.hidden, true}, w.fc), proj_({cfg.hidden, cfg.dim, true}, w.proj) {}
    const MlpConfig& config() const noexcept { return cfg_; }

    static std::int64_t chunk_rows(std::int64_t rows) noexcept {
        const std::int64_t chunks = (rows + kMaxChunkRows - 1) / kMaxChunkRows;
        return chunks > 0 ? (rows + chunks - 1) / chunks : 0;
    }
    std::size_t scratch_bytes(std::int64_t rows) const {
        return Scratch::bytes_for<T>(static_cast<std::size_t>(chunk_rows(rows) * cfg_.hidden));
    }

    // x: [rows, dim] -> y: [rows, dim]; accumulate: y += mlp(x) (the residual). y must not alias x.
    void forward(const typename Backend::Context& ctx, const T* x, std::int64_t rows, T* y, Scratch& scratch,
                 bool accumulate = false) const {
        const std::int64_t step = chunk_rows(rows);
        Scratch::Frame frame(scratch);
        T* hidden = scratch.take<T>(static_cast<std::size_t>(step * cfg_.hidden));
        for (std::int64_t r0 = 0; r0 < rows; r0 += step) {
            const std::int64_t r = std::min(step, rows - r0);
            fc_.forward(ctx, x + r0 * cfg_.dim, r, hidden);
            if (cfg_.activation == Activation::gelu) Backend::gelu(ctx, hidden, hidden, r * cfg_.hidden);
            else Backend::quick_gelu(ctx, hidden, hidden, r * cfg_.hidden);
            proj_.forward(ctx, hidden, r, y + r0 * cfg_.dim, accumulate);
        }
    }

private:
    MlpConfig cfg_;
    Linear<Backend, T> fc_, proj_;
};

}  // namespace unclip::nn
