// The C boundary: every entry point is noexcept, and this file alone turns exceptions into
// statuses (guarded()). No exception, abort or exit crosses into the host.
#include <unclip.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "unclip/backend/cuda.hpp"
#include "unclip/error.hpp"
#include "unclip/pipeline.hpp"
#include "unclip/sampling/samplers.hpp"
#include "unclip/sampling/schedules.hpp"
#include "unclip/version.hpp"

static_assert(UNCLIP_STATUS_INTERNAL == static_cast<int>(unclip::Status::internal),
              "C and C++ status numbering must agree");

struct unclip_pipeline {
    std::unique_ptr<unclip::Pipeline> pipeline;
    std::string last_error;
};

struct unclip_images {
    std::vector<unclip::Image> images;
};

namespace {
thread_local std::string g_thread_error;

// Runs body, turning every exception into a status and recording its message in `error`.
template <class Body>
unclip_status guarded(std::string& error, Body&& body) noexcept {
    try {
        body();
        return UNCLIP_STATUS_OK;
    } catch (const unclip::Error& e) {
        error = e.what();
        return static_cast<unclip_status>(e.status());
    } catch (const std::bad_alloc&) {
        error = "out of memory";
        return UNCLIP_STATUS_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        error = std::string("internal error: ") + e.what();
        return UNCLIP_STATUS_INTERNAL;
    } catch (...) {
        error = "internal error: unknown exception";
        return UNCLIP_STATUS_INTERNAL;
    }
}

template <class Body>
unclip_status guarded(Body&& body) noexcept {
    g_thread_error.clear();
    return guarded(g_thread_error, std::forward<Body>(body));
}

[[noreturn]] void invalid(const std::string& what) { throw unclip::Error(unclip::Status::invalid_argument, what); }

template <class T>
void require(const T* pointer, const char* name) {
    if (!pointer) invalid(std::string(name) + " is NULL");
}

// The byte range of each field of a params struct, so that a struct_size ending inside a field
// (half a pointer) is refused instead of read. Fields appended to a struct are appended here.
struct FieldSpan {
    const char* name;
    std::size_t begin, end;
};
#define UNCLIP_FIELD(type, field) FieldSpan{#field, offsetof(type, field), offsetof(type, field) + sizeof(type::field)}
template <class Params>
std::vector<FieldSpan> field_spans() {
    return {};
}
template <>
std::vector<FieldSpan> field_spans<unclip_open_params>() {
    using P = unclip_open_params;
    return {UNCLIP_FIELD(P, model_path), UNCLIP_FIELD(P, clip_vision_path), UNCLIP_FIELD(P, threads),
            UNCLIP_FIELD(P, prediction), UNCLIP_FIELD(P, unet_path), UNCLIP_FIELD(P, vae_path),
            UNCLIP_FIELD(P, text_encoder_path), UNCLIP_FIELD(P, prior_path), UNCLIP_FIELD(P, max_output_side),
            UNCLIP_FIELD(P, max_prompt_bytes), UNCLIP_FIELD(P, low_memory), UNCLIP_FIELD(P, bf16_gemm),
            UNCLIP_FIELD(P, device), UNCLIP_FIELD(P, cuda_device)};
}
template <>
std::vector<FieldSpan> field_spans<unclip_conditioning>() {
    using P = unclip_conditioning;
    return {UNCLIP_FIELD(P, image), UNCLIP_FIELD(P, embedding), UNCLIP_FIELD(P, embedding_size),
            UNCLIP_FIELD(P, strength), UNCLIP_FIELD(P, noise_augmentation)};
}
template <>
std::vector<FieldSpan> field_spans<unclip_generate_params>() {
    using P = unclip_generate_params;
    return {UNCLIP_FIELD(P, images),     UNCLIP_FIELD(P, n_images),  UNCLIP_FIELD(P, prompt),
            UNCLIP_FIELD(P, negative_prompt), UNCLIP_FIELD(P, steps), UNCLIP_FIELD(P, cfg_scale),
            UNCLIP_FIELD(P, sampler),    UNCLIP_FIELD(P, scheduler), UNCLIP_FIELD(P, seed),
            UNCLIP_FIELD(P, width),      UNCLIP_FIELD(P, height),    UNCLIP_FIELD(P, batch_count),
            UNCLIP_FIELD(P, init_image), UNCLIP_FIELD(P, denoise),   UNCLIP_FIELD(P, mask),
            UNCLIP_FIELD(P, on_progress), UNCLIP_FIELD(P, on_progress_user)};
}
template <>
std::vector<FieldSpan> field_spans<unclip_prior_params>() {
    using P = unclip_prior_params;
    return {UNCLIP_FIELD(P, steps), UNCLIP_FIELD(P, guidance_scale), UNCLIP_FIELD(P, seed)};
}
#undef UNCLIP_FIELD

// The library reads what the caller's struct_size covers and defaults the rest; a larger size is
// accepted only if the unknown tail is zero (a newer caller using nothing new).
template <class Params>
Params read_params(const Params* given, const char* name, void (*defaults)(Params*)) {
    require(given, name);
    Params p;
    defaults(&p);
    const std::size_t size = given->struct_size;
    if (size < sizeof(std::uint32_t)) invalid(std::string(name) + "->struct_size " + std::to_string(size) + " is too small");
    for (const FieldSpan& field : field_spans<Params>())
        if (size > field.begin && size < field.end)
            invalid(std::string(name) + "->struct_size " + std::to_string(size) + " ends inside field '" + field.name +
                    "' (bytes " + std::to_string(field.begin) + ".." + std::to_string(field.end) + ")");
    if (size > sizeof(Params)) {
        const auto* tail = reinterpret_cast<const unsigned char*>(given) + sizeof(Params);
        for (std::size_t i = 0; i < size - sizeof(Params); ++i)
            if (tail[i] != 0)
                invalid(std::string(name) + "->struct_size " + std::to_string(size) +
                        " has fields this library version does not know (set them to zero or update unclip)");
    }
    std::memcpy(&p, given, std::min(size, sizeof(Params)));
    p.struct_size = sizeof(Params);
    return p;
}

void default_open(unclip_open_params* p) {
    std::memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->prediction = UNCLIP_PREDICTION_AUTO;
}
void default_prior(unclip_prior_params* p) {
    std::memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->steps = 25;
    p->guidance_scale = 4.0f;
}
void default_conditioning(unclip_conditioning* p) {
    std::memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->strength = 1.0f;
}
void default_generate(unclip_generate_params* p) {
    std::memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->steps = 20;
    p->cfg_scale = 8.0f;
    p->sampler = UNCLIP_SAMPLER_EULER;
    p->scheduler = UNCLIP_SCHEDULER_NORMAL;
    p->width = 768;
    p->height = 768;
    p->batch_count = 1;
    p->denoise = 1.0f;
}

std::optional<unclip::Image> to_image(const unclip_image_view& view, const char* name) {
    if (!view.pixels) return std::nullopt;
    try {
        return unclip::image_from_pixels(view.pixels, view.width, view.height, view.channels, view.row_stride);
    } catch (const unclip::Error& e) {
        throw unclip::Error(e.status(), std::string(name) + ": " + e.what());
    }
}

unclip_image_view to_view(const unclip::Image& image) {
    return {image.pixels.data(), image.width, image.height, image.channels,
            static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.channels)};
}

// The C enums number the C++ ones identically, so names come from the sampling library alone.
using unclip::sampling::Sampler;
using unclip::sampling::Scheduler;
static_assert(UNCLIP_SAMPLER_EULER == static_cast<int>(Sampler::euler) &&
                  UNCLIP_SAMPLER_DPMPP_SDE == static_cast<int>(Sampler::dpmpp_sde) &&
                  UNCLIP_SAMPLER_UNI_PC_BH2 == static_cast<int>(Sampler::uni_pc_bh2),
              "unclip_sampler must number the samplers as sampling::Sampler");
static_assert(UNCLIP_SCHEDULER_NORMAL == static_cast<int>(Scheduler::normal) &&
                  UNCLIP_SCHEDULER_DDIM_UNIFORM == static_cast<int>(Scheduler::ddim_uniform),
              "unclip_scheduler must number the schedulers as sampling::Scheduler");

// Enum fields and arguments come from C, where any int is a valid enum value; in C++ loading an
// out-of-range enum is undefined, so the bits are read as the int they are.
template <class E>
int raw_enum(const E& value) {
    static_assert(sizeof(E) == sizeof(int), "C enums are int-sized on supported ABIs");
    int raw;
    std::memcpy(&raw, &value, sizeof raw);
    return raw;
}

const char* sampler_name(int value) {
    return value >= UNCLIP_SAMPLER_EULER && value <= UNCLIP_SAMPLER_UNI_PC_BH2
               ? unclip::sampling::sampler_name(static_cast<Sampler>(value))
               : nullptr;
}
const char* scheduler_name(int value) {
    return value >= UNCLIP_SCHEDULER_NORMAL && value <= UNCLIP_SCHEDULER_DDIM_UNIFORM
               ? unclip::sampling::scheduler_name(static_cast<Scheduler>(value))
               : nullptr;
}
// The checked arguments of unclip_embedding_mix / _blend: `count` embeddings of `n` floats.
std::vector<std::vector<float>> embedding_list(const float* const* embeddings, const float* weights, int32_t count,
                                               int32_t n, const float* out) {
    require(embeddings, "embeddings");
    require(weights, "weights");
    require(out, "out");
    if (count <= 0 || n <= 0) invalid("count and n must be positive");
    std::vector<std::vector<float>> all;
    for (int32_t i = 0; i < count; ++i) {
        if (!embeddings[i]) invalid("embeddings[" + std::to_string(i) + "] is NULL");
        all.emplace_back(embeddings[i], embeddings[i] + n);
    }
    return all;
}

}  // namespace

extern "C" {

uint32_t unclip_version(void) UNCLIP_NOEXCEPT { return UNCLIP_API_VERSION; }
const char* unclip_version_string(void) UNCLIP_NOEXCEPT { return unclip::kVersionString; }
const char* unclip_status_name(unclip_status status) UNCLIP_NOEXCEPT {
    return unclip::status_name(static_cast<unclip::Status>(raw_enum(status)));
}
const char* unclip_last_error(void) UNCLIP_NOEXCEPT { return g_thread_error.c_str(); }
int32_t unclip_cuda_device_count(void) UNCLIP_NOEXCEPT { return unclip::cuda::device_count(); }

const char* unclip_sampler_name(unclip_sampler sampler) UNCLIP_NOEXCEPT { return sampler_name(raw_enum(sampler)); }
const char* unclip_scheduler_name(unclip_scheduler scheduler) UNCLIP_NOEXCEPT { return scheduler_name(raw_enum(scheduler)); }

unclip_status unclip_sampler_from_name(const char* name, unclip_sampler* out) UNCLIP_NOEXCEPT {
    return guarded([&] {
        require(name, "name");
        require(out, "out");
        *out = static_cast<unclip_sampler>(unclip::sampling::sampler_from_name(name));  // throws listing the valid names
    });
}

unclip_status unclip_scheduler_from_name(const char* name, unclip_scheduler* out) UNCLIP_NOEXCEPT {
    return guarded([&] {
        require(name, "name");
        require(out, "out");
        *out = static_cast<unclip_scheduler>(unclip::sampling::scheduler_from_name(name));
    });
}

unclip_status unclip_open_default_params(unclip_open_params* out) UNCLIP_NOEXCEPT {
    return guarded([&] {
        require(out, "out");
        default_open(out);
    });
}

unclip_status unclip_conditioning_default(unclip_conditioning* out) UNCLIP_NOEXCEPT {
    return guarded([&] {
        require(out, "out");
        default_conditioning(out);
    });
}

unclip_status unclip_generate_default_params(unclip_generate_params* out) UNCLIP_NOEXCEPT {
    return guarded([&] {
        require(out, "out");
        default_generate(out);
    });
}

unclip_status unclip_pipeline_open(const unclip_open_params* params, unclip_pipeline** out) UNCLIP_NOEXCEPT {
    return guarded([&] {
        require(out, "out");
        const unclip_open_params p = read_params(params, "params", default_open);
        const auto text = [](const char* s) { return std::string(s ? s : ""); };
        if (text(p.model_path).empty() && text(p.unet_path).empty())
            invalid("params->model_path is empty (and no params->unet_path)");
        if (p.threads < 0) invalid("params->threads " + std::to_string(p.threads) + " is negative");
        unclip::PipelineOptions options;
        options.model_path = text(p.model_path);
        options.clip_vision_path = text(p.clip_vision_path);
        options.unet_path = text(p.unet_path);
        options.vae_path = text(p.vae_path);
        options.text_encoder_path = text(p.text_encoder_path);
        options.prior_path = text(p.prior_path);
        options.threads = p.threads;
        options.allow_reduced = p.allow_reduced;
        options.low_memory = p.low_memory;
        options.bf16_gemm = p.bf16_gemm;
        if (p.device < UNCLIP_DEVICE_CPU || p.device > UNCLIP_DEVICE_AUTO)
            invalid("params->device " + std::to_string(p.device) + " is not an unclip_device");
        if (p.cuda_device < 0) invalid("params->cuda_device " + std::to_string(p.cuda_device) + " is negative");
        options.device = p.device == UNCLIP_DEVICE_CUDA  ? unclip::ComputeDevice::cuda
                         : p.device == UNCLIP_DEVICE_AUTO ? unclip::ComputeDevice::automatic
                                                          : unclip::ComputeDevice::cpu;
        options.cuda_device = p.cuda_device;
        if (p.max_output_side < 0 || p.max_prompt_bytes < 0)
            invalid("params->max_output_side " + std::to_string(p.max_output_side) + " / max_prompt_bytes " +
                    std::to_string(p.max_prompt_bytes) + ": negative");
        if (p.max_output_side > 0) {
            options.output_limits.max_side = p.max_output_side;
            options.output_limits.max_pixels = std::int64_t{p.max_output_side} * p.max_output_side;
        }
        if (p.max_prompt_bytes > 0) options.max_prompt_bytes = static_cast<std::size_t>(p.max_prompt_bytes);
        switch (raw_enum(p.prediction)) {
            case UNCLIP_PREDICTION_AUTO: break;
            case UNCLIP_PREDICTION_EPS: options.prediction = unclip::io::Prediction::eps; break;
            case UNCLIP_PREDICTION_V: options.prediction = unclip::io::Prediction::v; break;
            default: invalid("params->prediction " + std::to_string(raw_enum(p.prediction)) + " is not a unclip_prediction");
        }
        auto handle = std::make_unique<unclip_pipeline>();
        handle->pipeline = std::make_unique<unclip::Pipeline>(options);
        *out = handle.release();
    });
}

void unclip_pipeline_free(unclip_pipeline* pipeline) UNCLIP_NOEXCEPT { delete pipeline; }

const char* unclip_pipeline_last_error(const unclip_pipeline* pipeline) UNCLIP_NOEXCEPT {
    return pipeline ? pipeline->last_error.c_str() : "pipeline is NULL";
}

int32_t unclip_pipeline_embedding_size(const unclip_pipeline* pipeline) UNCLIP_NOEXCEPT {
    return pipeline ? pipeline->pipeline->embedding_dim() : 0;
}

unclip_status unclip_pipeline_encode_image(unclip_pipeline* pipeline, const unclip_image_view* image, float* out,
                                           int32_t capacity) UNCLIP_NOEXCEPT {
    if (!pipeline) return guarded([] { invalid("pipeline is NULL"); });
    pipeline->last_error.clear();
    return guarded(pipeline->last_error, [&] {
        require(image, "image");
        require(out, "out");
        const auto picture = to_image(*image, "image");
        if (!picture) invalid("image->pixels is NULL");
        const std::vector<float> embedding = pipeline->pipeline->encode_image(*picture);
        if (capacity < static_cast<int32_t>(embedding.size()))
            invalid("capacity " + std::to_string(capacity) + " is below the embedding size " + std::to_string(embedding.size()));
        std::copy(embedding.begin(), embedding.end(), out);
    });
}

unclip_status unclip_generate(unclip_pipeline* pipeline, const unclip_generate_params* params, unclip_images** out) UNCLIP_NOEXCEPT {
    if (!pipeline) return guarded([] { invalid("pipeline is NULL"); });
    pipeline->last_error.clear();
    return guarded(pipeline->last_error, [&] {
        require(out, "out");
        const unclip_generate_params p = read_params(params, "params", default_generate);
        if (p.n_images < 0 || (p.n_images > 0 && !p.images)) invalid("params->images is NULL or n_images negative");
        unclip::GenerateParams g;
        for (int32_t i = 0; i < p.n_images; ++i) {
            const std::string name = "params->images[" + std::to_string(i) + "]";
            const unclip_conditioning c = read_params(&p.images[i], name.c_str(), default_conditioning);
            unclip::UnclipConditioning u;
            u.image = to_image(c.image, name.c_str());
            if (!u.image) {
                if (!c.embedding || c.embedding_size <= 0) invalid(name + " has neither image pixels nor an embedding");
                u.embedding.assign(c.embedding, c.embedding + c.embedding_size);
            }
            if (!std::isfinite(c.strength) || c.strength < -10.0f || c.strength > 10.0f)
                invalid(name + ".strength " + std::to_string(c.strength) + " outside [-10, 10]");
            if (!std::isfinite(c.noise_augmentation) || c.noise_augmentation < 0.0f || c.noise_augmentation > 1.0f)
                invalid(name + ".noise_augmentation " + std::to_string(c.noise_augmentation) + " outside [0, 1]");
            u.strength = c.strength;
            u.noise_augmentation = c.noise_augmentation;
            g.images.push_back(std::move(u));
        }
        g.prompt = p.prompt ? p.prompt : "";
        g.negative_prompt = p.negative_prompt ? p.negative_prompt : "";
        g.steps = p.steps;
        g.cfg_scale = p.cfg_scale;
        const char* sampler = sampler_name(raw_enum(p.sampler));
        const char* scheduler = scheduler_name(raw_enum(p.scheduler));
        if (!sampler) invalid("params->sampler " + std::to_string(raw_enum(p.sampler)) + " is not a unclip_sampler");
        if (!scheduler) invalid("params->scheduler " + std::to_string(raw_enum(p.scheduler)) + " is not a unclip_scheduler");
        g.sampler = sampler;
        g.scheduler = scheduler;
        g.seed = p.seed;
        g.width = p.width;
        g.height = p.height;
        g.batch_count = p.batch_count;
        g.init_image = to_image(p.init_image, "params->init_image");
        g.denoise = p.denoise;
        g.mask = to_image(p.mask, "params->mask");
        g.preview = p.preview;
        if (p.on_progress) {
            g.on_progress = [&](const unclip::Progress& progress) {
                unclip_progress c{};
                c.struct_size = sizeof c;
                c.step = progress.step;
                c.steps = progress.steps;
                c.sigma = progress.sigma;
                if (progress.preview) c.preview = to_view(*progress.preview);
                return p.on_progress(&c, p.on_progress_user);
            };
        }
        auto result = std::make_unique<unclip_images>();
        result->images = pipeline->pipeline->generate(g);
        *out = result.release();
    });
}

void unclip_pipeline_cancel(unclip_pipeline* pipeline) UNCLIP_NOEXCEPT {
    if (pipeline) pipeline->pipeline->cancel();
}

unclip_status unclip_embedding_mix(const float* const* embeddings, const float* weights, int32_t count, int32_t n,
                                   float* out) UNCLIP_NOEXCEPT {
    return guarded([&] {
        const auto mixed = unclip::mix_embeddings(embedding_list(embeddings, weights, count, n, out),
                                                  std::vector<float>(weights, weights + count));
        std::copy(mixed.begin(), mixed.end(), out);
    });
}

unclip_status unclip_prior_default_params(unclip_prior_params* out) UNCLIP_NOEXCEPT {
    return guarded([&] {
        require(out, "out");
        default_prior(out);
    });
}

unclip_status unclip_pipeline_prior_embedding(unclip_pipeline* pipeline, const char* prompt,
                                              const unclip_prior_params* params, float* out, int32_t capacity) UNCLIP_NOEXCEPT {
    if (!pipeline) return guarded([] { invalid("pipeline is NULL"); });
    pipeline->last_error.clear();
    return guarded(pipeline->last_error, [&] {
        require(prompt, "prompt");
        require(out, "out");
        unclip_prior_params p;
        if (params) p = read_params(params, "params", default_prior);
        else default_prior(&p);
        unclip::PriorParams prior;
        prior.steps = p.steps;
        prior.guidance_scale = p.guidance_scale;
        prior.seed = p.seed;
        const std::vector<float> embedding = pipeline->pipeline->prior_embedding(prompt, prior);
        if (capacity < static_cast<int32_t>(embedding.size()))
            invalid("capacity " + std::to_string(capacity) + " is below the embedding size " + std::to_string(embedding.size()));
        std::copy(embedding.begin(), embedding.end(), out);
    });
}

unclip_status unclip_pipeline_text_diff_edit(unclip_pipeline* pipeline, const float* embedding, int32_t n,
                                             const char* from, const char* to, float alpha, float theta, float* out) UNCLIP_NOEXCEPT {
    if (!pipeline) return guarded([] { invalid("pipeline is NULL"); });
    pipeline->last_error.clear();
    return guarded(pipeline->last_error, [&] {
        require(embedding, "embedding");
        require(from, "from");
        require(to, "to");
        require(out, "out");
        if (n != pipeline->pipeline->embedding_dim())
            invalid("n " + std::to_string(n) + " is not the embedding size " + std::to_string(pipeline->pipeline->embedding_dim()));
        const auto edited = pipeline->pipeline->text_diff_edit(std::vector<float>(embedding, embedding + n), from, to, alpha, theta);
        std::copy(edited.begin(), edited.end(), out);
    });
}

unclip_status unclip_embedding_blend(const float* const* embeddings, const float* weights, int32_t count, int32_t n,
                                     float* out) UNCLIP_NOEXCEPT {
    return guarded([&] {
        const auto blended = unclip::blend_embeddings(embedding_list(embeddings, weights, count, n, out),
                                                      std::vector<float>(weights, weights + count));
        std::copy(blended.begin(), blended.end(), out);
    });
}

unclip_status unclip_embedding_slerp(const float* a, const float* b, int32_t n, float t, float* out) UNCLIP_NOEXCEPT {
    return guarded([&] {
        require(a, "a");
        require(b, "b");
        require(out, "out");
        if (n <= 0) invalid("n must be positive");
        const auto r = unclip::slerp_embeddings(std::vector<float>(a, a + n), std::vector<float>(b, b + n), t);
        std::copy(r.begin(), r.end(), out);
    });
}

unclip_status unclip_image_load(const char* path, unclip_images** out) UNCLIP_NOEXCEPT {
    return guarded([&] {
        require(path, "path");
        require(out, "out");
        auto result = std::make_unique<unclip_images>();
        result->images.push_back(unclip::load_image(path));
        *out = result.release();
    });
}

int32_t unclip_images_count(const unclip_images* images) UNCLIP_NOEXCEPT {
    return images ? static_cast<int32_t>(images->images.size()) : 0;
}

unclip_status unclip_images_get(const unclip_images* images, int32_t index, unclip_image_view* out) UNCLIP_NOEXCEPT {
    return guarded([&] {
        require(images, "images");
        require(out, "out");
        if (index < 0 || index >= static_cast<int32_t>(images->images.size()))
            invalid("index " + std::to_string(index) + " outside [0, " + std::to_string(images->images.size()) + ")");
        *out = to_view(images->images[static_cast<std::size_t>(index)]);
    });
}

unclip_status unclip_image_save_png(const unclip_image_view* image, const char* path) UNCLIP_NOEXCEPT {
    return guarded([&] {
        require(image, "image");
        require(path, "path");
        const auto picture = to_image(*image, "image");
        if (!picture) invalid("image->pixels is NULL");
        unclip::save_png(*picture, path);
    });
}

void unclip_images_free(unclip_images* images) UNCLIP_NOEXCEPT { delete images; }

}  // extern "C"
