#pragma once
// Pipeline internals shared by the pipeline's source files.
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "pipeline/pipeline_gpu.hpp"
#include "pipeline/pipeline_models.hpp"
#include "unclip/pipeline.hpp"

namespace unclip {

struct Pipeline::Impl {
    PipelineOptions options;
    std::unique_ptr<pipeline::Models> models;
    std::unique_ptr<pipeline::PriorModels> prior;  // null without a prior
    std::unique_ptr<pipeline::GpuModels> gpu;      // the modules that run, when the device is a GPU
    CpuBackend::Context ctx;
    Scratch scratch;
    std::mutex mutex;                  // serialises the modules' use of ctx and scratch
    std::atomic<bool> cancelled{false};
    std::unordered_map<std::uint64_t, std::vector<float>> image_cache;

    explicit Impl(const PipelineOptions& o) : options(o), ctx(o.threads) { ctx.set_bf16_gemm(o.bf16_gemm); }
    // Grows the scratch arena (only between module calls, when nothing is taken).
    void reserve(std::size_t bytes) {
        if (bytes > scratch.capacity()) scratch.reserve(bytes);
    }
};

namespace pipeline {

// The steps behind the public members; the caller holds impl.mutex.
std::vector<float> encode_image(Pipeline::Impl& impl, const Image& image, const ClipPreprocessOptions& options);
TextEncoding encode_text(Pipeline::Impl& impl, const std::string& prompt);
std::vector<Image> generate(Pipeline::Impl& impl, const GenerateParams& params);
// The projected text embedding of `prompt` in the image-embedding space: the model's own text
// tower when its projection is embedding_dim() wide, else the prior's text tower when that fits;
// throws Error(Status::invalid_argument) naming `caller` otherwise.
std::vector<float> projected_text_embedding(Pipeline::Impl& impl, const std::string& prompt, const char* caller);
std::vector<float> prior_embedding(Pipeline::Impl& impl, const std::string& prompt, const PriorParams& params);

// Latents <-> pixels.
// [B, 4, h, w] sampling-space latents (scaled by the VAE factor) -> 8-bit RGB images, as ComfyUI's
// VAEDecode + SaveImage (clamp((x + 1) / 2), x 255, truncated).
// vae_tile > 0 forces tiles of that many pixels (see GenerateParams).
std::vector<Image> decode_latents(Pipeline::Impl& impl, const Tensor& latents, int vae_tile = 0, int vae_tile_overlap = 64);
// An image -> [1, 4, H/8, W/8] sampling-space latent: centre-cropped to multiples of 8 as ComfyUI's
// VAEEncode, 2x - 1, posterior mean, x scaling factor.
Tensor encode_latent(Pipeline::Impl& impl, const Image& image);
// ComfyUI's fast preview: a fixed linear map from the 4 latent channels to RGB (latent_formats.py SD15).
Image latent_preview(const float* latent, std::int64_t height, std::int64_t width);
// [h, w] repaint weights in [0, 1] from a mask image resized bilinearly to the latent size
// (grey/RGB: luminance of channel 0; with alpha: 1 - alpha, as ComfyUI's LoadImage mask).
std::vector<float> latent_mask(const Image& mask, std::int64_t height, std::int64_t width);

}  // namespace pipeline
}  // namespace unclip
