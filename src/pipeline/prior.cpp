// Text -> image embedding: the Karlo prior as diffusers' StableUnCLIPPipeline runs it (spec §9),
// the approximate text-embedding path for models without a prior, and text-diff edits.
#include <cmath>
#include <filesystem>
#include <mutex>

#include "pipeline/pipeline_impl.hpp"

namespace unclip {
namespace pipeline {

std::unique_ptr<PriorModels> load_prior_models(const std::string& path) {
    auto m = std::make_unique<PriorModels>();
    m->checkpoint = io::load_prior(path);
    const auto& c = m->checkpoint;
    m->prior.emplace(c.prior_config, nn::load_prior_transformer<float>(c.prior, "", c.prior_config));
    m->text.emplace(c.text_config, nn::load_clip_text<float>(c.text, "", c.text_config));
    if (!c.tokenizer_dir.empty()) {
        const std::filesystem::path dir = c.tokenizer_dir;
        m->tokenizer.emplace(text::ClipTokenizer::from_files(dir / "vocab.json", dir / "merges.txt"));
    } else {
        m->tokenizer.emplace(text::ClipTokenizer::bundled());
    }
    if (m->tokenizer->vocab_size() > c.text_config.vocab)
        throw Error(Status::bad_model, path + ": the prior tokenizer has " + std::to_string(m->tokenizer->vocab_size()) +
                                           " tokens, the prior text encoder " + std::to_string(c.text_config.vocab));
    m->scheduler.emplace(c.scheduler);
    return m;
}

namespace {

// The prior text tower over prompts: hidden [B, L, width], projected [B, embed_dim] and the valid
// token counts (start .. first end token, the tokenizer's attention mask).
struct PriorText {
    Tensor hidden, projected;
    std::vector<std::int64_t> lengths;
};

PriorText encode_prior_text(Pipeline::Impl& impl, const std::vector<std::string>& prompts) {
    const PriorModels& p = *impl.prior;
    const auto& cfg = p.text->config();
    const auto batch = static_cast<std::int64_t>(prompts.size()), len = cfg.context;
    std::vector<std::int32_t> ids;
    PriorText out;
    for (const auto& prompt : prompts) {
        // CLIPTokenizer(padding="max_length", truncation=True): start, at most len - 2 tokens, end.
        const std::vector<std::int32_t> t = p.tokenizer->tokenize(prompt, static_cast<int>(len));
        std::int64_t n = len;
        for (std::int64_t j = 0; j < len; ++j)
            if (t[static_cast<std::size_t>(j)] == p.tokenizer->end_id()) {
                n = j + 1;
                break;
            }
        out.lengths.push_back(n);
        ids.insert(ids.end(), t.begin(), t.end());
    }
    out.hidden = Tensor::empty(DType::f32, {batch, len, cfg.width});
    out.projected = Tensor::empty(DType::f32, {batch, cfg.embed_dim});
    View<float> projected = view_of<float>(out.projected);
    impl.reserve(p.text->scratch_bytes(batch, len));
    p.text->forward(impl.ctx, CView<std::int32_t>{ids.data(), {batch, len}}, view_of<float>(out.hidden), &projected,
                    impl.scratch);
    return out;
}

}  // namespace

std::vector<float> projected_text_embedding(Pipeline::Impl& impl, const std::string& prompt, const char* caller) {
    const int dim = impl.models->checkpoint.config.noise_aug_dim();
    const std::int64_t own = impl.models->text->config().embed_dim;
    if (own == dim && own > 0) {
        const TextEncoding e = encode_text(impl, prompt);
        return std::vector<float>(e.pooled.data<const float>(), e.pooled.data<const float>() + e.pooled.numel());
    }
    if (impl.prior && impl.prior->text->config().embed_dim == dim) {
        const PriorText t = encode_prior_text(impl, {prompt});
        return std::vector<float>(t.projected.data<const float>(), t.projected.data<const float>() + t.projected.numel());
    }
    if (own == 0)
        throw Error(Status::invalid_argument, std::string(caller) + ": the model's text tower has no text_projection" +
                                                  (impl.prior ? "" : " (and no prior text tower is loaded)"));
    throw Error(Status::invalid_argument, std::string(caller) + ": the image embedding has " + std::to_string(dim) +
                                              " values, the text embedding " + std::to_string(own) +
                                              (impl.prior ? "" : " (a prior's CLIP text tower would fit unclip-l)"));
}

std::vector<float> prior_embedding(Pipeline::Impl& impl, const std::string& prompt, const PriorParams& params) {
    if (!impl.prior)
        throw Error(Status::invalid_argument, "prior_embedding: no prior loaded (PipelineOptions::prior_path)");
    const PriorModels& p = *impl.prior;
    const auto& pc = p.prior->config();
    const int dim = impl.models->checkpoint.config.noise_aug_dim();
    if (pc.embedding_dim != dim)
        throw Error(Status::invalid_argument, "prior_embedding: the prior makes " + std::to_string(pc.embedding_dim) +
                                                  "-wide image embeddings, the model (" +
                                                  io::variant_name(impl.models->checkpoint.config.variant) + ") takes " +
                                                  std::to_string(dim));
    if (!std::isfinite(params.guidance_scale) || params.guidance_scale < 0.0f || params.guidance_scale > 100.0f)
        throw Error(Status::invalid_argument, "prior_embedding: guidance_scale " + std::to_string(params.guidance_scale) +
                                                  " outside [0, 100]");
    // _encode_prior_prompt: with guidance the batch is [empty prompt, prompt].
    const bool guided = params.guidance_scale > 1.0f;
    const PriorText text = guided ? encode_prior_text(impl, {"", prompt}) : encode_prior_text(impl, {prompt});
    const std::int64_t e = pc.embedding_dim;
    impl.reserve(p.prior->scratch_bytes());
    auto model = [&](const float* x, std::int64_t rows, int timestep, float* out) {
        const auto text_rows = text.hidden.dim(0);
        if (rows != text_rows) throw Error(Status::internal, "prior_embedding: row count mismatch");
        p.prior->forward(impl.ctx, CView<float>{x, {rows, e}}, static_cast<float>(timestep), view_of<const float>(text.projected),
                         view_of<const float>(text.hidden), text.lengths.data(), View<float>{out, {rows, e}}, impl.scratch);
    };
    sampling::PriorSampleParams sp;
    sp.steps = params.steps;
    sp.guidance_scale = params.guidance_scale;
    sp.seed = params.seed;
    sp.on_step = [&](int, int) { return !impl.cancelled.load(); };
    std::vector<float> latents = sampling::sample_prior(*p.scheduler, sp, 1, e, model);
    p.prior->post_process(latents.data(), 1);
    return latents;
}

}  // namespace pipeline

bool Pipeline::has_prior() const noexcept { return impl_->prior != nullptr; }

std::vector<float> Pipeline::prior_embedding(const std::string& prompt, const PriorParams& params) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->cancelled.store(false);
    return pipeline::prior_embedding(*impl_, prompt, params);
}

std::vector<float> Pipeline::text_image_embedding(const std::string& prompt, float target_norm) {
    if (!(target_norm >= 0.0f) || !std::isfinite(target_norm))
        throw Error(Status::invalid_argument, "text_image_embedding: target_norm must be finite and >= 0 (0: automatic)");
    std::lock_guard<std::mutex> lock(impl_->mutex);
    std::vector<float> t = pipeline::projected_text_embedding(*impl_, prompt, "text_image_embedding");
    double norm = target_norm;
    if (norm == 0) {
        if (!impl_->models->vision)
            throw Error(Status::invalid_argument, "text_image_embedding: target_norm 0 needs the model's vision tower; give a norm");
        Image grey;
        grey.width = grey.height = 224;
        grey.channels = 3;
        grey.pixels.assign(224 * 224 * 3, 128);
        double s = 0;
        for (float x : pipeline::encode_image(*impl_, grey, {})) s += static_cast<double>(x) * x;
        norm = std::sqrt(s);
    }
    double s = 0;
    for (float x : t) s += static_cast<double>(x) * x;
    if (!(s > 0)) throw Error(Status::invalid_argument, "text_image_embedding: the text embedding is zero");
    return mix_embeddings({t}, {static_cast<float>(norm / std::sqrt(s))});
}

std::vector<float> Pipeline::text_diff_edit(const std::vector<float>& image_embedding, const std::string& from,
                                            const std::string& to, float alpha, float theta) {
    if (!std::isfinite(alpha)) throw Error(Status::invalid_argument, "text_diff_edit: alpha is not finite");
    if (!(theta >= 0.0f && theta <= 1.0f))
        throw Error(Status::invalid_argument, "text_diff_edit: theta " + std::to_string(theta) + " is not in [0, 1]");
    std::vector<float> source, target;
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        source = pipeline::projected_text_embedding(*impl_, from, "text_diff_edit");
        target = pipeline::projected_text_embedding(*impl_, to, "text_diff_edit");
    }
    return text_diff_embedding(image_embedding, source, target, alpha, theta);
}

}  // namespace unclip
