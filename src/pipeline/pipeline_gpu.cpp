#include "pipeline/pipeline_gpu.hpp"

#include <cstdint>
#include <cstring>

namespace unclip::pipeline {

float* PinnedBuffer::floats(std::size_t n) {
    if (n > capacity_) {
        data_.reset();
        capacity_ = 0;
        data_.reset(static_cast<float*>(cuda::allocate_pinned(n * sizeof(float))));
        capacity_ = n;
    }
    return data_.get();
}

namespace {
Scratch& reserved(GpuModels& g, std::size_t bytes) {
    g.ctx.activate();
    g.reserve(bytes);
    return g.scratch;
}

std::size_t step_bytes(const GpuModels& g, const Tensor& contexts, const Tensor& ys, const Shape& latent,
                       std::size_t sampler_latents) {
    const std::int64_t rows = 2 * latent[0], row_size = latent.numel() / latent[0];
    const auto floats = [](std::int64_t n) { return Scratch::bytes_for<float>(static_cast<std::size_t>(n)); };
    return g.unet->scratch_bytes({rows, latent[1], latent[2], latent[3]}, contexts.dim(1)) + floats(contexts.numel()) +
           floats(ys.numel()) + 2 * floats(rows * row_size) + floats(g.unet->context_kv_floats(rows, contexts.dim(1))) +
           floats(static_cast<std::int64_t>(sampler_latents) * latent.numel()) +
           floats(rows * g.unet->config().time_embed_dim());
}
}  // namespace

GpuUNetSteps::GpuUNetSteps(GpuModels& g, const Tensor& contexts, const Tensor& ys, const Shape& latent,
                           std::size_t sampler_latents)
    : g_(g),
      frame_(reserved(g, step_bytes(g, contexts, ys, latent, sampler_latents))),
      latent_(latent),
      tokens_(contexts.dim(1)),
      width_(contexts.dim(2)),
      sampler_floats_(sampler_latents * static_cast<std::size_t>(latent.numel())) {
    const std::int64_t rows = 2 * latent[0];
    contexts_ = g.stage(contexts.data<const float>(), contexts.numel());
    ys_ = g.unet->config().adm_in_channels > 0 ? g.stage(ys.data<const float>(), ys.numel()) : nullptr;
    input_ = g.scratch.take<float>(static_cast<std::size_t>(latent.numel() * 2));
    output_ = g.scratch.take<float>(static_cast<std::size_t>(latent.numel() * 2));
    // The cross-attentions' keys and values, the same at every step: projected once here.
    context_kv_ = g.scratch.take<float>(static_cast<std::size_t>(g.unet->context_kv_floats(rows, tokens_)));
    g.unet->project_context(g.ctx, CView<float>{contexts_, {rows, tokens_, width_}}, context_kv_);
    sampler_pool_ = sampler_floats_ > 0 ? g.scratch.take<float>(sampler_floats_) : nullptr;
    // The embedding sits below the network's buffers, so every call's network takes the same
    // addresses: the ones a recorded graph holds.
    emb_ = g.scratch.take<float>(static_cast<std::size_t>(rows * g.unet->config().time_embed_dim()));
}

void GpuUNetSteps::run_network(std::int64_t rows) const {
    const Shape shape{rows, latent_[1], latent_[2], latent_[3]};
    g_.unet->forward_embedded(g_.ctx, CView<float>{input_, shape}, CView<float>{emb_, {rows, g_.unet->config().time_embed_dim()}},
                              CView<float>{contexts_, {rows, tokens_, width_}}, View<float>{output_, shape}, g_.scratch,
                              context_kv_, 2 * latent_[0]);
}

std::vector<std::int64_t> GpuUNetSteps::graph_key(std::int64_t rows) const {
    const auto address = [](const void* p) { return static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(p)); };
    const CudaBackend::Context& ctx = g_.ctx;
    const CudaBackend::FlashTile tile = ctx.flash_tile();
    // The arena's fill level: where the network's own scratch begins.
    const auto scratch_top = static_cast<std::int64_t>(g_.scratch.used());
    return {rows, latent_[1], latent_[2], latent_[3], tokens_, width_, address(contexts_), address(ys_), address(input_),
            address(output_), address(context_kv_), address(emb_), scratch_top, ctx.column_limit(), ctx.bias_epilogue(),
            ctx.rounded_linear_inputs(), ctx.cudnn_convolutions(), tile.warps, tile.warp_rows, tile.blocks_per_sm};
}

void GpuUNetSteps::operator()(const sampling::ModelCall& call) {
    const std::int64_t rows = call.rows, n = rows * call.row_size;
    if (rows < 1 || rows > 2 * latent_[0] || call.row_size * latent_[0] != latent_.numel())
        throw Error(Status::internal, "GpuUNetSteps: a call of " + std::to_string(rows) + " rows of " +
                                          std::to_string(call.row_size) + " for latents " + latent_.str());
    CudaBackend::Context& ctx = g_.ctx;
    ctx.activate();
    float* staging = g_.pinned.floats(static_cast<std::size_t>(n));
    std::memcpy(staging, call.input, static_cast<std::size_t>(n) * sizeof(float));
    CudaBackend::upload(ctx, staging, input_, n);
    forward(rows, call.timestep);
    CudaBackend::download(ctx, output_, staging, n);
    std::memcpy(call.output, staging, static_cast<std::size_t>(n) * sizeof(float));
}

void GpuUNetSteps::forward(std::int64_t rows, float timestep) {
    if (rows < 1 || rows > 2 * latent_[0])
        throw Error(Status::internal, "GpuUNetSteps: " + std::to_string(rows) + " rows for latents " + latent_.str());
    CudaBackend::Context& ctx = g_.ctx;
    timesteps_.assign(static_cast<std::size_t>(rows), timestep);
    // With guidance off the call has B positive rows; the first rows of contexts and ys serve it.
    g_.unet->embed(ctx, timesteps_.data(), ys_, View<float>{emb_, {rows, g_.unet->config().time_embed_dim()}}, g_.scratch);

    const std::vector<std::int64_t> key = ctx.graphs() ? graph_key(rows) : std::vector<std::int64_t>{};
    bool launch = ctx.graphs() && g_.unet_graph.current(ctx) && g_.unet_graph_key == key;
    if (!launch && ctx.graphs() && warm_ && graph_error_.empty()) {
        g_.unet_graph = CudaBackend::Graph();
        g_.unet_graph_key.clear();
        try {
            g_.unet_graph = CudaBackend::Graph::record(ctx, [&] { run_network(rows); });
            g_.unet_graph_key = key;
            launch = true;
        } catch (const Error& e) {
            if (e.status() != Status::device) throw;
            graph_error_ = e.what();
        }
    }
    if (launch) {
        g_.unet_graph.launch(ctx);
        ++graph_launches_;
    } else {
        run_network(rows);
        warm_ = true;
    }
}

void GpuModels::reserve(std::size_t bytes) {
    if (bytes <= scratch.capacity()) return;
    ctx.synchronize();
    scratch.reserve(bytes);
}

float* GpuModels::stage(const float* host, std::int64_t n) {
    float* device = scratch.take<float>(static_cast<std::size_t>(n));
    CudaBackend::upload(ctx, host, device, n);
    return device;
}

namespace {
std::size_t image_bytes(const backend::ImageBytes& image) {
    return static_cast<std::size_t>(image.width * image.height * image.channels);
}
template <class W>
std::size_t axis_bytes(const detail::AxisWeights<W>& axis) {
    return 2 * Scratch::bytes_for<std::int64_t>(axis.first.size()) + Scratch::bytes_for<W>(axis.w.size());
}
template <class T>
const T* stage_values(const CudaBackend::Context& ctx, Scratch& scratch, const T* values, std::size_t n) {
    T* device = scratch.take<T>(n);
    CudaBackend::upload_bytes(ctx, values, device, n * sizeof(T));
    return device;
}
template <class W>
backend::ResizeAxis<W> stage_axis(const CudaBackend::Context& ctx, Scratch& scratch, const detail::AxisWeights<W>& axis) {
    if (axis.empty()) return {};
    return {stage_values(ctx, scratch, axis.first.data(), axis.first.size()),
            stage_values(ctx, scratch, axis.count.data(), axis.count.size()),
            stage_values(ctx, scratch, axis.w.data(), axis.w.size()), axis.taps};
}
}  // namespace

std::size_t staged_clip_bytes(const detail::ClipResamplePlan& plan) {
    return Scratch::bytes_for<std::uint8_t>(image_bytes(plan.resample.image)) + axis_bytes(plan.torch_width) +
           axis_bytes(plan.torch_height) + axis_bytes(plan.pil_width) + axis_bytes(plan.pil_height);
}

backend::ClipResample stage_clip_resample(const CudaBackend::Context& ctx, Scratch& scratch,
                                          const detail::ClipResamplePlan& plan) {
    backend::ClipResample device = plan.resample;
    device.image.pixels = stage_values(ctx, scratch, plan.resample.image.pixels, image_bytes(plan.resample.image));
    device.torch_width = stage_axis(ctx, scratch, plan.torch_width);
    device.torch_height = stage_axis(ctx, scratch, plan.torch_height);
    device.pil_width = stage_axis(ctx, scratch, plan.pil_width);
    device.pil_height = stage_axis(ctx, scratch, plan.pil_height);
    return device;
}

std::unique_ptr<GpuModels> load_gpu_models(const Models& host, int device, bool bf16) {
    auto g = std::make_unique<GpuModels>(device);
    g->unet_weights = nn::upload_weights(host.unet_weights, bf16);
    g->vae_weights = nn::upload_weights(host.vae_weights, bf16);
    g->text_weights = nn::upload_weights(host.text_weights, bf16);
    if (host.vision) g->vision_weights = nn::upload_weights(host.vision_weights, bf16);
    g->build(host.checkpoint.config, *g);
    g->ctx.prepare_convolutions();
    g->description = cuda::device_description() + "; convolutions: " + g->ctx.convolution_path();
    return g;
}

}  // namespace unclip::pipeline
