// The pipeline's text and image encoders.
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>

#include "io/clip_preprocess_detail.hpp"
#include "pipeline/pipeline_impl.hpp"
#include "unclip/text/prompt.hpp"

namespace unclip::pipeline {
namespace {
// An FNV-style hash over the pixels, the geometry and the preprocessing options: the
// image-embedding cache key.
std::uint64_t image_key(const Image& image, const ClipPreprocessOptions& o) {
    std::uint64_t h = 1469598103934665603ull;
    // Eight bytes a step (a 512x512 picture in about a tenth of the byte-wise time), the tail byte by byte.
    auto mix = [&](const void* data, std::size_t n) {
        const auto* p = static_cast<const unsigned char*>(data);
        std::size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            std::uint64_t word;
            std::memcpy(&word, p + i, 8);
            h = (h ^ word) * 1099511628211ull;
            h ^= h >> 29;
        }
        for (; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
    };
    const int header[] = {image.width, image.height, image.channels, static_cast<int>(o.method), o.size, o.crop ? 1 : 0};
    mix(header, sizeof header);
    mix(o.mean.data(), sizeof(float) * o.mean.size());
    mix(o.std.data(), sizeof(float) * o.std.size());
    mix(image.pixels.data(), image.pixels.size());
    return h;
}
}  // namespace

std::vector<float> encode_image(Pipeline::Impl& impl, const Image& image, const ClipPreprocessOptions& options) {
    const auto& vision = impl.models->vision;
    if (!vision)
        throw Error(Status::invalid_argument, "encode_image: the model has no CLIP vision tower (pass a clip_vision_path)");
    check_image_size(image.width, image.height, impl.options.image_limits);
    const std::uint64_t key = image_key(image, options);
    if (const auto it = impl.image_cache.find(key); it != impl.image_cache.end()) return it->second;

    ClipPreprocessOptions o = options;
    o.size = static_cast<int>(vision->config().image_size);
    const std::unique_ptr<detail::ClipResamplePlan> plan = detail::plan_clip_preprocess(image, o);
    const Shape pixel_shape{1, 3, o.size, o.size};
    Tensor embedding = Tensor::empty(DType::f32, {1, vision->config().embed_dim});
    if (impl.gpu) {
        // The image's bytes and the resampling weights go up; the tower's input is made there.
        GpuModels& g = *impl.gpu;
        const backend::ClipResample& r = plan->resample;
        g.ctx.activate();
        // One rounded size per take below: each take is aligned on its own.
        g.reserve(g.vision->scratch_bytes(1) + staged_clip_bytes(*plan) +
                  Scratch::bytes_for<float>(static_cast<std::size_t>(3 * r.image.height * r.size)) +
                  Scratch::bytes_for<float>(static_cast<std::size_t>(pixel_shape.numel())) +
                  Scratch::bytes_for<float>(static_cast<std::size_t>(embedding.numel())));
        Scratch::Frame frame(g.scratch);
        const backend::ClipResample device = stage_clip_resample(g.ctx, g.scratch, *plan);
        float* rows = g.scratch.take<float>(static_cast<std::size_t>(3 * r.image.height * r.size));
        const View<float> pixels{g.scratch.take<float>(static_cast<std::size_t>(pixel_shape.numel())), pixel_shape};
        const View<float> out{g.scratch.take<float>(static_cast<std::size_t>(embedding.numel())), embedding.shape()};
        CudaBackend::clip_resample(g.ctx, device, rows, pixels.data);
        g.vision->forward(g.ctx, pixels, out, g.scratch);
        CudaBackend::download(g.ctx, out.data, embedding.data<float>(), embedding.numel());
    } else {
        Tensor pixels = Tensor::empty(DType::f32, pixel_shape);
        detail::run_clip_preprocess(*plan, pixels.data<float>(),
                                    [&](std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& rows) {
                                        impl.ctx.parallel_for(n, 16, rows);
                                    });
        impl.reserve(vision->scratch_bytes(1));
        vision->forward(impl.ctx, view_of<const float>(pixels), view_of<float>(embedding), impl.scratch);
    }
    if (impl.options.low_memory) release_resident_pages(impl.models->vision_weights);
    const float* e = embedding.data<const float>();
    std::vector<float> result(e, e + embedding.numel());
    impl.image_cache.emplace(key, result);
    return result;
}

TextEncoding encode_text(Pipeline::Impl& impl, const std::string& prompt) {
    if (prompt.size() > impl.options.max_prompt_bytes)
        throw Error(Status::invalid_argument, "prompt is " + std::to_string(prompt.size()) + " bytes, over the limit of " +
                                                  std::to_string(impl.options.max_prompt_bytes) +
                                                  " (PipelineOptions::max_prompt_bytes)");
    const auto& model = *impl.models->text;
    const text::PromptTokens tokens = text::tokenize_prompt(*impl.models->tokenizer, prompt);
    TextEncoding out;
    out.context = Tensor::empty(DType::f32, {1, tokens.chunks() * text::kClipContextLength, model.config().width});
    View<float> pooled;
    if (model.config().embed_dim > 0) {
        out.pooled = Tensor::empty(DType::f32, {1, model.config().embed_dim});
        pooled = view_of<float>(out.pooled);
    }
    View<float>* pooled_out = out.pooled.defined() ? &pooled : nullptr;
    if (impl.gpu) {
        GpuModels& g = *impl.gpu;
        g.ctx.activate();
        g.reserve(nn::encode_prompt_scratch_bytes(*g.text, tokens));
        nn::encode_prompt(g.ctx, *g.text, tokens, view_of<float>(out.context), pooled_out, g.scratch);
    } else {
        impl.reserve(nn::encode_prompt_scratch_bytes(model, tokens));
        nn::encode_prompt(impl.ctx, model, tokens, view_of<float>(out.context), pooled_out, impl.scratch);
    }
    if (impl.options.low_memory) release_resident_pages(impl.models->text_weights);
    return out;
}

}  // namespace unclip::pipeline
