#include "pipeline/pipeline_gpu.hpp"

namespace unclip::pipeline {

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

std::unique_ptr<GpuModels> load_gpu_models(const Models& host, int device, bool bf16) {
    auto g = std::make_unique<GpuModels>(device);
    g->description = cuda::device_description();
    g->unet_weights = nn::upload_weights(host.unet_weights, bf16);
    g->vae_weights = nn::upload_weights(host.vae_weights, bf16);
    g->text_weights = nn::upload_weights(host.text_weights, bf16);
    if (host.vision) g->vision_weights = nn::upload_weights(host.vision_weights, bf16);
    g->build(host.checkpoint.config, *g);
    return g;
}

}  // namespace unclip::pipeline
