#pragma once
// The pipeline's modules on a GPU: device copies of each component's weights (one allocation per
// component, Linear/Conv2d matrices in half precision, the rest fp32), the CUDA context and one
// device scratch arena that every forward reuses.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/clip_preprocess_detail.hpp"
#include "pipeline/pipeline_models.hpp"
#include "unclip/backend/cuda.hpp"
#include "unclip/sampling/denoiser.hpp"

namespace unclip::pipeline {

// Page-locked host memory that grows to the largest request and then stays (the sampling loop's
// latents travel through it).
class PinnedBuffer {
public:
    float* floats(std::size_t n);

private:
    struct Free {
        void operator()(float* p) const noexcept { cuda::deallocate_pinned(p); }
    };
    std::unique_ptr<float, Free> data_;
    std::size_t capacity_ = 0;
};

// The weights are device tensors.
struct GpuModels : ComponentWeights, ComponentModules<CudaBackend> {
    CudaBackend::Context ctx;
    Scratch scratch{Device::cuda};
    PinnedBuffer pinned;
    std::string description;
    // The sampling loop's recorded UNet network (GpuUNetSteps) and what it was recorded for, kept
    // from one generate call to the next.
    CudaBackend::Graph unet_graph;
    std::vector<std::int64_t> unet_graph_key;

    explicit GpuModels(int device) : ctx(device) {}
    // Grows the arena; waits for queued work first, since growing frees the old buffer.
    void reserve(std::size_t bytes);
    // n floats from the arena, filled from host memory (the caller holds a Scratch::Frame).
    float* stage(const float* host, std::int64_t n);
};

// The UNet evaluations of one sampling loop on the GPU. The text contexts and ADM vectors go up
// once, and the cross-attentions' keys and values are projected from them once. forward() runs
// the network from input() to output() on the device (generate's sampling loop writes and reads
// them there, run_ksampler over CudaLatentOps); operator() is the same evaluation between host arrays, through
// pinned buffers. Each evaluation embeds its timestep. With Context::graphs() the rest of the
// network runs from a CUDA graph: recorded at the second call (the first grows the workspace and
// makes the GEMM plans, which a recording may not do) and kept in GpuModels, so that the next loop
// on the same buffers launches it from its first call. When a recording fails, the rest of the
// loop runs its kernels one by one, with the same results; the next loop tries again (another
// thread's synchronisation on the same GPU can spoil a recording).
class GpuUNetSteps {
public:
    // contexts: [2B, L, width], ys: [2B, adm] (positive rows first; ignored when the UNet has no
    // label embedding), latent: [B, C, h, w]; `sampler_latents` more latents of device memory are
    // reserved for the sampling loop (latents()). Takes its device buffers from g.scratch, which
    // must not change until this object is gone.
    GpuUNetSteps(GpuModels& g, const Tensor& contexts, const Tensor& ys, const Shape& latent,
                 std::size_t sampler_latents = 0);
    GpuUNetSteps(const GpuUNetSteps&) = delete;
    GpuUNetSteps& operator=(const GpuUNetSteps&) = delete;
    void operator()(const sampling::ModelCall& call);
    // input() [rows, C, h, w] -> output(), rows in [1, 2B]: B positive rows, then B negative.
    void forward(std::int64_t rows, float timestep);
    float* input() const noexcept { return input_; }
    float* output() const noexcept { return output_; }
    // sampler_latents * B * C * h * w floats.
    float* latents() const noexcept { return sampler_pool_; }
    std::size_t latents_floats() const noexcept { return sampler_floats_; }

    // Calls so far that launched the graph; why this loop's recording failed ("" if it did not).
    std::size_t graph_launches() const noexcept { return graph_launches_; }
    const std::string& graph_error() const noexcept { return graph_error_; }

private:
    void run_network(std::int64_t rows) const;
    // Everything the recorded launches depend on besides the weights: shapes, buffers, settings.
    std::vector<std::int64_t> graph_key(std::int64_t rows) const;
    GpuModels& g_;
    Scratch::Frame frame_;
    Shape latent_;  // [B, C, h, w]
    std::int64_t tokens_, width_;
    std::size_t sampler_floats_;
    const float *contexts_, *ys_;
    float *input_, *output_, *context_kv_, *sampler_pool_, *emb_;
    std::vector<float> timesteps_;
    bool warm_ = false;  // an eager call has run: the workspace and plans are ready for a recording
    std::size_t graph_launches_ = 0;
    std::string graph_error_;
};

// CLIP preprocessing on the GPU: the plan's image bytes and resampling weights staged in `scratch`
// (device memory; the caller holds a Scratch::Frame and has reserved staged_clip_bytes(plan)), as
// CudaBackend::clip_resample reads them.
std::size_t staged_clip_bytes(const detail::ClipResamplePlan& plan);
backend::ClipResample stage_clip_resample(const CudaBackend::Context& ctx, Scratch& scratch,
                                          const detail::ClipResamplePlan& plan);

// Uploads `host`'s components (built on the CPU first: their weight maps know which tensors are
// matrices) to GPU `device`. bf16: fp32 matrices become bf16 instead of fp16. Throws
// Error(Status::device) without a usable GPU, Error(Status::out_of_memory) when they do not fit.
std::unique_ptr<GpuModels> load_gpu_models(const Models& host, int device, bool bf16);

}  // namespace unclip::pipeline
