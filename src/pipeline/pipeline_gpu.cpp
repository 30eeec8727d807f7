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
    const io::ModelConfig& cfg = host.checkpoint.config;

    g->unet_weights = nn::upload_weights(host.unet_weights, bf16);
    const auto ucfg = unet_config(cfg.unet);
    g->unet.emplace(ucfg, nn::load_unet<float>(g->unet_weights, "", ucfg));

    g->vae_weights = nn::upload_weights(host.vae_weights, bf16);
    const auto vcfg = vae_config(cfg.vae);
    g->vae.emplace(vcfg, nn::load_vae_encoder<float>(g->vae_weights, "", vcfg),
                   nn::load_vae_decoder<float>(g->vae_weights, "", vcfg));

    g->text_weights = nn::upload_weights(host.text_weights, bf16);
    const auto tcfg = clip_text_config(cfg.text, host.text_weights);
    g->text.emplace(tcfg, nn::load_clip_text<float>(g->text_weights, "", tcfg));

    if (host.vision) {
        g->vision_weights = nn::upload_weights(host.vision_weights, bf16);
        const auto icfg = clip_vision_config(cfg.vision);
        g->vision.emplace(icfg, nn::load_clip_vision<float>(g->vision_weights, "", icfg));
    }
    return g;
}

}  // namespace unclip::pipeline
