// Pipeline::generate: ComfyUI's unCLIP image-variation graph (spec §10.1) in one call:
// CLIPTextEncode (positive, negative) -> unCLIPConditioning (images) -> EmptyLatentImage or
// VAEEncode (+ SetLatentNoiseMask) -> KSampler -> VAEDecode -> SaveImage.
#include <cmath>
#include <functional>
#include <optional>
#include <numeric>

#include "pipeline/gpu_latent_ops.hpp"
#include "pipeline/ksampler_node.hpp"
#include "pipeline/pipeline_impl.hpp"
#include "unclip/nn/noise_aug.hpp"
#include "unclip/sampling/conditioning.hpp"
#include "unclip/sampling/denoiser.hpp"
#include "unclip/sampling/samplers.hpp"

namespace unclip::pipeline {
namespace {

[[noreturn]] void bad(const std::string& what) { throw Error(Status::invalid_argument, "generate: " + what); }

void validate(const Pipeline::Impl& impl, const GenerateParams& p) {
    if (p.steps < 1 || p.steps > sampling::kMaxSteps)
        bad("steps " + std::to_string(p.steps) + " outside [1, " + std::to_string(sampling::kMaxSteps) + "]");
    if (!std::isfinite(p.cfg_scale) || p.cfg_scale < 0.0f || p.cfg_scale > 100.0f)
        bad("cfg_scale " + std::to_string(p.cfg_scale) + " outside [0, 100]");
    if (!(p.denoise > 0.0f && p.denoise <= 1.0f)) bad("denoise " + std::to_string(p.denoise) + " outside (0, 1]");
    if (p.batch_count < 1 || p.batch_count > 64) bad("batch_count " + std::to_string(p.batch_count) + " outside [1, 64]");
    const ImageLimits& out = impl.options.output_limits;
    const auto check_output = [&](std::int64_t width, std::int64_t height, const char* what) {
        if (width > out.max_side || height > out.max_side || width * height > out.max_pixels)  // "too large": bad_image
            throw Error(Status::bad_image, "generate: " + std::string(what) + " " + std::to_string(width) + "x" +
                                               std::to_string(height) + " is larger than the output limit of " +
                                               std::to_string(out.max_side) + " pixels per side and " +
                                               std::to_string(out.max_pixels) + " pixels (PipelineOptions::output_limits)");
    };
    if (!p.init_image) {
        if (p.width < 8 || p.height < 8 || p.width % 8 != 0 || p.height % 8 != 0)
            bad("size " + std::to_string(p.width) + "x" + std::to_string(p.height) + " is not a positive multiple of 8");
        check_output(p.width, p.height, "size");
    } else {
        check_output(p.init_image->width, p.init_image->height, "init_image");
    }
    for (const auto& [text, what] : {std::pair{&p.prompt, "prompt"}, std::pair{&p.negative_prompt, "negative_prompt"}})
        if (text->size() > impl.options.max_prompt_bytes)
            bad(std::string(what) + " is " + std::to_string(text->size()) + " bytes, over the limit of " +
                std::to_string(impl.options.max_prompt_bytes) + " (PipelineOptions::max_prompt_bytes)");
    if (p.mask && !p.init_image) bad("a mask needs an init_image");
    if (p.vae_tile != 0 && (p.vae_tile < 16 || p.vae_tile % 8 != 0 || p.vae_tile_overlap < 0 || p.vae_tile_overlap % 8 != 0 ||
                            p.vae_tile_overlap >= p.vae_tile))
        bad("vae_tile " + std::to_string(p.vae_tile) + " / overlap " + std::to_string(p.vae_tile_overlap) +
            ": multiples of 8 with 0 <= overlap < tile");
    if (p.denoise < 1.0f && !p.init_image) bad("denoise < 1 needs an init_image");
    const auto& cfg = impl.models->checkpoint.config;
    for (std::size_t i = 0; i < p.images.size(); ++i) {
        const auto& c = p.images[i];
        const std::string which = "images[" + std::to_string(i) + "]";
        if (cfg.unet.adm_in_channels == 0) bad(which + ": this model (" + std::string(io::variant_name(cfg.variant)) + ") takes no image conditioning");
        if (!c.image && c.embedding.empty()) bad(which + ": neither an image nor an embedding");
        if (!std::isfinite(c.strength) || std::abs(c.strength) > 10.0f)
            bad(which + ".strength " + std::to_string(c.strength) + " outside [-10, 10]");
        if (!(c.noise_augmentation >= 0.0f && c.noise_augmentation <= 1.0f))
            bad(which + ".noise_augmentation " + std::to_string(c.noise_augmentation) + " outside [0, 1]");
        for (float e : c.embedding)
            if (!std::isfinite(e)) bad(which + ": embedding has a non-finite value");
        if (!c.image && static_cast<int>(c.embedding.size()) != cfg.noise_aug_dim())
            bad(which + ": embedding has " + std::to_string(c.embedding.size()) + " values, the model takes " +
                std::to_string(cfg.noise_aug_dim()));
    }
}

// ComfyUI concatenates conditionings of different token counts by repeating each to their least
// common multiple (comfy/conds.py CONDCrossAttn.concat); cross-attention over a context repeated k
// times equals cross-attention over it once.
Tensor repeat_tokens(const Tensor& context, std::int64_t tokens) {
    const std::int64_t have = context.dim(1), width = context.dim(2);
    Tensor out = Tensor::empty(DType::f32, {1, tokens, width});
    for (std::int64_t t = 0; t < tokens; ++t)
        std::copy_n(context.data<const float>() + (t % have) * width, width, out.data<float>() + t * width);
    return out;
}

}  // namespace

std::vector<Image> generate(Pipeline::Impl& impl, const GenerateParams& p) {
    validate(impl, p);
    const auto& models = *impl.models;
    const auto& cfg = models.checkpoint.config;
    const auto sampler = sampling::sampler_from_name(p.sampler);
    const auto scheduler = sampling::scheduler_from_name(p.scheduler);

    // Text: both prompts padded to a common token count.
    TextEncoding positive = encode_text(impl, p.prompt), negative = encode_text(impl, p.negative_prompt);
    const std::int64_t a = positive.context.dim(1), b = negative.context.dim(1), tokens = a / std::gcd(a, b) * b;
    const Tensor pos_context = repeat_tokens(positive.context, tokens), neg_context = repeat_tokens(negative.context, tokens);

    // unCLIP: the ADM vector of the positive branch; the negative branch gets zeros (ComfyUI's
    // SD21UNCLIP.encode_adm without unclip_conditioning).
    const std::int64_t adm = cfg.unet.adm_in_channels;
    std::vector<float> y_positive(static_cast<std::size_t>(adm), 0.0f);
    if (adm > 0 && !p.images.empty()) {
        std::vector<sampling::UnclipImage> inputs;
        for (const auto& c : p.images)
            inputs.push_back({c.image ? encode_image(impl, *c.image, {}) : c.embedding, c.strength, c.noise_augmentation});
        // ComfyUI never loads the image_normalizer statistics: identity normalisation (spec §5).
        const nn::NoiseAugmentor augmentor({cfg.noise_aug_dim()});
        y_positive = sampling::comfy_unclip_adm(augmentor, inputs, p.seed);
    }

    // Latent: zeros, or the init image's (cropped to multiples of 8).
    std::int64_t h = p.height / 8, w = p.width / 8;
    std::vector<float> latent;
    const std::int64_t batch = p.batch_count;
    if (p.init_image) {
        const Tensor encoded = encode_latent(impl, *p.init_image);
        h = encoded.dim(2);
        w = encoded.dim(3);
        for (std::int64_t i = 0; i < batch; ++i)
            latent.insert(latent.end(), encoded.data<const float>(), encoded.data<const float>() + encoded.numel());
    } else {
        latent.assign(static_cast<std::size_t>(batch * 4 * h * w), 0.0f);
    }
    const std::int64_t row_size = 4 * h * w;

    // The conditioning rows: [0, B) positive, [B, 2B) negative.
    const std::int64_t width = pos_context.dim(2);
    Tensor contexts = Tensor::empty(DType::f32, {2 * batch, tokens, width});
    Tensor ys = Tensor::zeros(DType::f32, {2 * batch, std::max<std::int64_t>(adm, 1)});
    for (std::int64_t r = 0; r < batch; ++r) {
        std::copy_n(pos_context.data<const float>(), tokens * width, contexts.data<float>() + r * tokens * width);
        std::copy_n(neg_context.data<const float>(), tokens * width, contexts.data<float>() + (batch + r) * tokens * width);
        if (adm > 0) std::copy(y_positive.begin(), y_positive.end(), ys.data<float>() + r * adm);
    }
    // SetLatentNoiseMask (comfy/samplers.py KSamplerX0Inpaint): outside the mask the sample is held
    // at the noised original and the prediction at the original.
    std::vector<float> mask_weights, noise;
    if (p.mask) {
        const std::vector<float> m = latent_mask(*p.mask, h, w);
        for (std::int64_t r = 0; r < batch * 4; ++r) mask_weights.insert(mask_weights.end(), m.begin(), m.end());
        noise.resize(latent.size());
        // KSamplerX0Inpaint re-noises the held region with the initial noise; ComfyUI's ddim
        // sampler hands it a separate CPU noise seeded seed + 1 instead (spec §8.2).
        sampling::TorchGenerator(sampler == sampling::Sampler::ddim ? p.seed + 1 : p.seed).randn(noise.data(), noise.size());
    }
    const LatentHold hold{mask_weights, noise};

    sampling::KSamplerParams ks;
    ks.sampler = sampler;
    ks.scheduler = scheduler;
    ks.steps = p.steps;
    ks.denoise = p.denoise;
    ks.seed = p.seed;
    ks.on_step = [&](const sampling::StepInfo& info) {
        if (impl.cancelled.load()) return false;
        if (!p.on_progress) return true;
        Progress progress;
        progress.step = info.step + 1;
        progress.steps = info.steps;
        progress.sigma = info.sigma;
        Image preview;
        if (p.preview) {
            preview = latent_preview(info.denoised, h, w);
            progress.preview = &preview;
        }
        return p.on_progress(progress);
    };
    const bool report_latents = p.preview && static_cast<bool>(p.on_progress);
    const sampling::ModelSchedule schedule = sampling::ModelSchedule::scaled_linear();
    const sampling::DenoiserConfig denoiser{
        cfg.prediction == io::Prediction::v ? sampling::Prediction::v : sampling::Prediction::eps, batch, row_size,
        p.cfg_scale};

    // The UNet behind the denoiser: rows [0, B) positive, [B, 2B) negative; on the GPU every
    // latent of the loop stays on the device.
    std::vector<float> sampled;
    std::optional<GpuUNetSteps> gpu_steps;  // holds its device buffers until the decode below
    if (impl.gpu && impl.gpu->ctx.device_sampling()) {
        gpu_steps.emplace(*impl.gpu, contexts, ys, Shape{batch, 4, h, w}, kKSamplerBuffers);
        CudaLatentOps ops(impl.gpu->ctx, gpu_steps->latents(), gpu_steps->latents_floats());
        const sampling::ModelFn network = [&](const sampling::ModelCall& call) {
            gpu_steps->forward(call.rows, call.timestep);
        };
        sampled = run_ksampler(ops, network, gpu_steps->input(), gpu_steps->output(), ks, schedule, denoiser, latent,
                               p.mask ? &hold : nullptr, report_latents);
    } else if (impl.gpu) {
        // The latents travel to the host and back at every step (Context::set_device_sampling(false)).
        gpu_steps.emplace(*impl.gpu, contexts, ys, Shape{batch, 4, h, w});
        std::vector<float> model_input(static_cast<std::size_t>(2 * batch * row_size)), model_output(model_input.size());
        sampling::detail::HostLatentOps ops(kKSamplerBuffers);
        sampled = run_ksampler(ops, std::ref(*gpu_steps), model_input.data(), model_output.data(), ks, schedule,
                               denoiser, latent, p.mask ? &hold : nullptr, report_latents);
    } else {
        const auto& unet = *models.unet;
        impl.reserve(unet.scratch_bytes({2 * batch, 4, h, w}, tokens));
        // The cross-attentions' keys and values, the same at every step: projected once.
        std::vector<float> context_kv(static_cast<std::size_t>(unet.context_kv_floats(2 * batch, tokens)));
        unet.project_context(impl.ctx, view_of<const float>(contexts), context_kv.data());
        std::vector<float> timesteps, emb, model_input(static_cast<std::size_t>(2 * batch * row_size)),
            model_output(model_input.size());
        const sampling::ModelFn network = [&](const sampling::ModelCall& call) {
            timesteps.assign(static_cast<std::size_t>(call.rows), call.timestep);
            emb.resize(static_cast<std::size_t>(call.rows * unet.config().time_embed_dim()));
            const View<float> emb_view{emb.data(), {call.rows, unet.config().time_embed_dim()}};
            // With guidance off the call has B positive rows; the first rows of contexts/ys serve it.
            const CView<float> context{contexts.data<const float>(), {call.rows, tokens, width}};
            unet.embed(impl.ctx, timesteps.data(), adm > 0 ? ys.data<const float>() : nullptr, emb_view, impl.scratch);
            unet.forward_embedded(impl.ctx, CView<float>{call.input, {call.rows, 4, h, w}}, emb_view, context,
                                  View<float>{call.output, {call.rows, 4, h, w}}, impl.scratch, context_kv.data(),
                                  2 * batch);
        };
        sampling::detail::HostLatentOps ops(kKSamplerBuffers);
        sampled = run_ksampler(ops, network, model_input.data(), model_output.data(), ks, schedule, denoiser, latent,
                               p.mask ? &hold : nullptr, report_latents);
    }
    gpu_steps.reset();  // the decode below reserves its own arena
    if (impl.cancelled.load()) throw Error(Status::cancelled, "generate: cancelled");

    Tensor result = Tensor::empty(DType::f32, {batch, 4, h, w});
    std::copy(sampled.begin(), sampled.end(), result.data<float>());
    return decode_latents(impl, result, p.vae_tile, p.vae_tile_overlap);
}

}  // namespace unclip::pipeline
