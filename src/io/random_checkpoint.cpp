#include "unclip/io/random_checkpoint.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "io/tensor_source.hpp"
#include "unclip/io/safetensors.hpp"

namespace unclip::io {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

std::uint64_t splitmix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
std::uint64_t fnv1a(const std::string& s) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

// value(i) = offset + amplitude * u(i), u uniform in [-1, 1) from a counter-based hash, so any
// chunk of any tensor can be produced independently and both layouts agree element by element.
struct Distribution {
    std::uint64_t key = 0;
    float offset = 0, amplitude = 0;
    float operator()(std::uint64_t index) const {
        const auto bits = splitmix(key ^ (index * 0xd1b54a32d192ed03ull)) >> 40;  // 24 bits
        return offset + amplitude * (static_cast<float>(bits) * (2.0f / 16777216.0f) - 1.0f);
    }
};

bool ends_with(const std::string& s, const char* tail) {
    const std::size_t n = std::strlen(tail);
    return s.size() >= n && s.compare(s.size() - n, n, tail) == 0;
}

Distribution distribution(const std::string& full_name, const std::string& name, const Shape& shape,
                          std::uint64_t seed, const std::string& prediction_tensor, Prediction prediction) {
    Distribution d;
    d.key = splitmix(fnv1a(full_name) ^ splitmix(seed));
    const float sqrt3 = 1.7320508f;
    if (full_name == prediction_tensor) {
        // ComfyUI decides v vs eps from this tensor's std (> 0.09 means v).
        d.amplitude = prediction == Prediction::v ? 0.25f : 0.05f;
    } else if (name == "logit_scale" || ends_with(name, ".logit_scale")) {
        d.offset = 4.6052f;  // log(100), what trained CLIP models hold
    } else if (ends_with(name, "embedding") || ends_with(name, "embedding.weight")) {
        d.amplitude = 0.02f * sqrt3;
    } else if (ends_with(name, "bias")) {
        d.amplitude = 0.02f * sqrt3;
    } else if (shape.rank() == 1) {  // norm gains
        d.offset = 1.0f;
        d.amplitude = 0.02f * sqrt3;
    } else if (shape.rank() >= 2) {
        const bool right_multiplied = ends_with(name, "proj") || ends_with(name, "text_projection");  // x @ P
        const std::int64_t fan_in = right_multiplied ? shape[0] : shape.numel() / std::max<std::int64_t>(shape[0], 1);
        d.amplitude = std::sqrt(3.0f / static_cast<float>(std::max<std::int64_t>(fan_in, 1)));
    }
    return d;
}

// One tensor to write: its file name, shape, dtype and how element k of it maps to the LDM
// element whose value it carries.
struct Planned {
    std::string name;
    Shape shape;
    DType dtype;
    std::function<void(float* dst, std::uint64_t first, std::size_t n)> values;
};

void fill(std::byte* dst, DType dtype, const std::vector<float>& v) {
    if (dtype == DType::f32) std::memcpy(dst, v.data(), v.size() * 4);
    else if (dtype == DType::f16) convert(v.data(), reinterpret_cast<Half*>(dst), v.size());
    else convert(v.data(), reinterpret_cast<BFloat16*>(dst), v.size());
}

void write_file(const fs::path& path, const std::vector<Planned>& plan, bool sparse) {
    if (!sparse) {
        SafetensorsWriter writer(path.string());
        writer.set_metadata("format", "pt");
        for (const auto& p : plan) {
            writer.add(p.name, p.dtype, p.shape, [&p](std::byte* dst, std::size_t offset, std::size_t bytes) {
                const std::size_t size = dtype_size(p.dtype);
                std::vector<float> v(bytes / size);
                p.values(v.data(), offset / size, v.size());
                fill(dst, p.dtype, v);
            });
        }
        writer.finish();
        return;
    }
    // The same header SafetensorsWriter writes, then a hole where the data would be.
    Json header = Json::object();
    header["__metadata__"] = {{"format", "pt"}};
    std::uint64_t offset = 0;
    for (const auto& p : plan) {
        const auto bytes = static_cast<std::uint64_t>(p.shape.numel()) * dtype_size(p.dtype);
        header[p.name] = {{"dtype", std::string(dtype_name(p.dtype))},
                          {"shape", std::vector<std::int64_t>(p.shape.begin(), p.shape.end())},
                          {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    char size[8];
    for (int i = 0; i < 8; ++i) size[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
    out.write(size, 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) throw Error(Status::io, "write '" + path.string() + "': cannot write the header");
    std::error_code ec;
    fs::resize_file(path, 8 + text.size() + offset, ec);
    if (ec) throw Error(Status::io, "write '" + path.string() + "': " + ec.message());
}

void write_json(const fs::path& path, const Json& j) {
    std::ofstream out(path);
    out << j.dump(2) << "\n";
    if (!out) throw Error(Status::io, "write '" + path.string() + "': cannot write");
}

// Schedules of the buffers real LDM files carry (ldm/models/diffusion/ddpm.py register_schedule,
// upscaling.py for the noise augmentor), in float64 then stored as F32 like the originals.
std::vector<std::pair<std::string, std::vector<float>>> schedule_buffers(bool cosine) {
    constexpr int n = 1000;
    std::vector<double> betas(n);
    if (cosine) {
        const auto f = [](double t) { const double c = std::cos((t + 0.008) / 1.008 * M_PI / 2); return c * c; };
        for (int i = 0; i < n; ++i) betas[i] = std::min(1.0 - f((i + 1.0) / n) / f(double(i) / n), 0.999);
    } else {
        for (int i = 0; i < n; ++i) {
            const double s = std::sqrt(0.00085) + (std::sqrt(0.012) - std::sqrt(0.00085)) * i / (n - 1);
            betas[i] = s * s;
        }
    }
    std::vector<double> ac(n), prev(n);
    double p = 1;
    for (int i = 0; i < n; ++i) {
        prev[i] = p;
        p *= 1 - betas[i];
        ac[i] = p;
    }
    std::vector<std::pair<std::string, std::function<double(int)>>> defs = {
        {"betas", [&](int i) { return betas[i]; }},
        {"alphas_cumprod", [&](int i) { return ac[i]; }},
        {"alphas_cumprod_prev", [&](int i) { return prev[i]; }},
        {"sqrt_alphas_cumprod", [&](int i) { return std::sqrt(ac[i]); }},
        {"sqrt_one_minus_alphas_cumprod", [&](int i) { return std::sqrt(1 - ac[i]); }},
        {"log_one_minus_alphas_cumprod", [&](int i) { return std::log(1 - ac[i]); }},
        {"sqrt_recip_alphas_cumprod", [&](int i) { return std::sqrt(1 / ac[i]); }},
        {"sqrt_recipm1_alphas_cumprod", [&](int i) { return std::sqrt(1 / ac[i] - 1); }},
    };
    if (!cosine) {
        const auto pv = [&](int i) { return betas[i] * (1 - prev[i]) / (1 - ac[i]); };
        defs.push_back({"posterior_variance", pv});
        defs.push_back({"posterior_log_variance_clipped", [&, pv](int i) { return std::log(std::max(pv(i), 1e-20)); }});
        defs.push_back({"posterior_mean_coef1", [&](int i) { return betas[i] * std::sqrt(prev[i]) / (1 - ac[i]); }});
        defs.push_back({"posterior_mean_coef2",
                        [&](int i) { return (1 - prev[i]) * std::sqrt(1 - betas[i]) / (1 - ac[i]); }});
    }
    std::vector<std::pair<std::string, std::vector<float>>> out;
    for (const auto& [name, f] : defs) {
        std::vector<float> v(n);
        for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = static_cast<float>(f(i));
        out.emplace_back(name, std::move(v));
    }
    return out;
}

Planned buffer(const std::string& name, std::vector<float> values, DType dtype) {
    auto shared = std::make_shared<std::vector<float>>(std::move(values));
    const auto n = static_cast<std::int64_t>(shared->size());
    return {name, Shape{n}, dtype, [shared](float* dst, std::uint64_t first, std::size_t count) {
                std::memcpy(dst, shared->data() + first, count * 4);
            }};
}

// The image embedder's non-visual parts that real unCLIP files keep but nothing reads (spec §2.2,
// inferred from FrozenOpenCLIPImageEmbedder / ClipImageEmbedder): -h keeps OpenCLIP's token and
// position embeddings, ln_final and projections; -l keeps the whole OpenAI ViT-L/14 text tower.
std::vector<TensorSpec> embedder_extras(const ModelConfig& c) {
    // Only the official models get them: they are large and say nothing about a reduced model.
    if (c.variant == Variant::sd2 || !detail::first_difference(c, reference_config(c.variant)).empty()) return {};
    ModelConfig text = c;
    if (c.variant == Variant::unclip_h) {
        text.text = TextArch{49408, 77, 1024, 1, 64};
        std::vector<TensorSpec> out;
        for (auto& s : tensor_table(text, Component::text))
            if (s.name.rfind("transformer.", 0) != 0) out.push_back(s);
        return out;
    }
    text.text = TextArch{49408, 77, 768, 11, 64};  // 12 blocks stored: the table's optional last one
    return tensor_table(text, Component::text);
}

}  // namespace

void write_random_checkpoint(const std::string& path, const ModelConfig& config, const RandomCheckpointOptions& options) {
    if (options.layout != Layout::single_file && options.layout != Layout::diffusers)
        throw Error(Status::invalid_argument, "random checkpoint: layout must be single-file or diffusers");
    const ModelConfig& c = config;
    std::vector<Component> components{Component::unet, Component::vae, Component::text};
    if (c.vision.kind != VisionKind::none) components.push_back(Component::vision);
    const int last = static_cast<int>(c.unet.channel_mult.size()) * (c.unet.num_res_blocks + 1) - 1;
    const std::string prediction_tensor = std::string(ldm_prefix(Component::unet)) + "output_blocks." +
                                          std::to_string(last) + ".1.transformer_blocks.0.norm1.bias";
    const auto dist = [&](const std::string& prefix, const TensorSpec& s) {
        return distribution(prefix + s.name, s.name, s.shape, options.seed, prediction_tensor, c.prediction);
    };

    if (options.layout == Layout::single_file) {
        std::vector<Planned> plan;
        const auto add = [&](const std::string& prefix, const TensorSpec& s) {
            const Distribution d = dist(prefix, s);
            plan.push_back({prefix + s.name, s.shape, options.dtype, [d](float* dst, std::uint64_t first, std::size_t n) {
                                for (std::size_t i = 0; i < n; ++i) dst[i] = d(first + i);
                            }});
        };
        for (Component comp : components)
            for (const auto& s : tensor_table(c, comp)) add(ldm_prefix(comp), s);
        for (const auto& s : embedder_extras(c)) add("embedder.model.", s);
        // In the dtype of the weights: the official fp16 merges are 40,000 bytes smaller than these
        // 20 buffers in F32 would make them, i.e. they converted the buffers along with the weights.
        for (auto& [name, values] : schedule_buffers(false)) plan.push_back(buffer(name, std::move(values), options.dtype));
        if (c.variant != Variant::sd2)
            for (auto& [name, values] : schedule_buffers(true))
                plan.push_back(buffer("noise_augmentor." + name, std::move(values), options.dtype));
        write_file(path, plan, options.sparse);
        return;
    }

    const fs::path dir = path;
    fs::create_directories(dir);
    const bool unclip = c.variant != Variant::sd2;
    const char* torch_dtype = options.dtype == DType::f32 ? "float32" : options.dtype == DType::f16 ? "float16" : "bfloat16";
    const auto folder_of = [](Component comp) {
        switch (comp) {
            case Component::unet: return "unet";
            case Component::vae: return "vae";
            case Component::text: return "text_encoder";
            case Component::vision: return "image_encoder";
        }
        return "";
    };
    for (Component comp : components) {
        std::vector<Planned> plan;
        for (const auto& s : tensor_table(c, comp)) {
            if (s.diffusers.empty()) continue;
            const Distribution d = dist(ldm_prefix(comp), s);
            const std::int64_t rows = s.shape.rank() > 0 ? s.shape[0] : 1;
            const std::int64_t cols = s.shape.rank() > 1 ? s.shape.numel() / rows : 1;
            for (std::size_t part = 0; part < s.diffusers.size(); ++part) {
                Shape shape = s.shape;
                std::function<std::uint64_t(std::uint64_t)> ldm_index = [](std::uint64_t k) { return k; };
                if (s.transform == Transform::conv1x1) shape = Shape{s.shape[0], s.shape[1]};
                if (s.transform == Transform::transpose) {
                    shape = Shape{s.shape[1], s.shape[0]};
                    // diffusers [B, A] element (r, col) holds LDM [A, B] element (col, r)
                    ldm_index = [rows, cols](std::uint64_t k) {
                        const auto r = k / static_cast<std::uint64_t>(rows), col = k % static_cast<std::uint64_t>(rows);
                        return col * static_cast<std::uint64_t>(cols) + r;
                    };
                }
                if (s.transform == Transform::fuse_qkv) {
                    shape = s.shape.rank() == 2 ? Shape{s.shape[0] / 3, s.shape[1]} : Shape{s.shape[0] / 3};
                    const auto base = static_cast<std::uint64_t>(part) * static_cast<std::uint64_t>(shape.numel());
                    ldm_index = [base](std::uint64_t k) { return base + k; };
                }
                plan.push_back({s.diffusers[part], shape, options.dtype,
                                [d, ldm_index](float* dst, std::uint64_t first, std::size_t n) {
                                    for (std::size_t i = 0; i < n; ++i) dst[i] = d(ldm_index(first + i));
                                }});
            }
        }
        fs::create_directories(dir / folder_of(comp));
        const std::string stem = comp == Component::unet || comp == Component::vae ? "diffusion_pytorch_model" : "model";
        write_file(dir / folder_of(comp) / (stem + ".safetensors"), plan, options.sparse);
    }

    // Configs with the fields diffusers and transformers need to instantiate each class.
    const auto& u = c.unet;
    std::vector<int> widths, heads;
    Json down = Json::array(), up = Json::array();
    for (std::size_t i = 0; i < u.channel_mult.size(); ++i) {
        widths.push_back(u.model_channels * u.channel_mult[i]);
        heads.push_back(std::max(1, widths.back() / u.head_channels));
        down.push_back(u.attention[i] ? "CrossAttnDownBlock2D" : "DownBlock2D");
    }
    for (std::size_t i = u.channel_mult.size(); i-- > 0;) up.push_back(u.attention[i] ? "CrossAttnUpBlock2D" : "UpBlock2D");
    Json unet = {{"_class_name", "UNet2DConditionModel"}, {"act_fn", "silu"}, {"attention_head_dim", heads},
                 {"block_out_channels", widths}, {"center_input_sample", false},
                 {"class_embed_type", unclip ? Json("projection") : Json(nullptr)},
                 {"projection_class_embeddings_input_dim", unclip ? Json(u.adm_in_channels) : Json(nullptr)},
                 {"cross_attention_dim", u.context_dim}, {"down_block_types", down}, {"up_block_types", up},
                 {"mid_block_type", "UNetMidBlock2DCrossAttn"}, {"downsample_padding", 1}, {"flip_sin_to_cos", true},
                 {"freq_shift", 0}, {"in_channels", u.in_channels}, {"out_channels", u.out_channels},
                 {"layers_per_block", u.num_res_blocks}, {"norm_eps", 1e-5}, {"norm_num_groups", 32},
                 {"transformer_layers_per_block", u.transformer_depth}, {"use_linear_projection", true},
                 {"sample_size", 96}};
    write_json(dir / "unet" / "config.json", unet);
    std::vector<int> vae_widths;
    for (int m : c.vae.ch_mult) vae_widths.push_back(c.vae.ch * m);
    Json vae = {{"_class_name", "AutoencoderKL"}, {"act_fn", "silu"}, {"block_out_channels", vae_widths},
                {"down_block_types", std::vector<std::string>(vae_widths.size(), "DownEncoderBlock2D")},
                {"up_block_types", std::vector<std::string>(vae_widths.size(), "UpDecoderBlock2D")},
                {"in_channels", c.vae.in_channels}, {"out_channels", c.vae.in_channels},
                {"latent_channels", c.vae.z_channels}, {"layers_per_block", c.vae.num_res_blocks},
                {"norm_num_groups", 32}, {"sample_size", 768}, {"scaling_factor", 0.18215}};
    write_json(dir / "vae" / "config.json", vae);
    const auto& t = c.text;
    Json text = {{"architectures", {"CLIPTextModel"}}, {"model_type", "clip_text_model"}, {"hidden_act", "gelu"},
                 {"hidden_size", t.width}, {"intermediate_size", 4 * t.width},
                 {"num_attention_heads", std::max(1, t.width / t.head_width)}, {"num_hidden_layers", t.layers},
                 {"vocab_size", t.vocab}, {"max_position_embeddings", t.context_length}, {"layer_norm_eps", 1e-5},
                 {"projection_dim", t.width}, {"bos_token_id", 49406}, {"eos_token_id", 49407}, {"pad_token_id", 1},
                 {"torch_dtype", torch_dtype}};
    write_json(dir / "text_encoder" / "config.json", text);
    Json index = {{"_class_name", unclip ? "StableUnCLIPImg2ImgPipeline" : "StableDiffusionPipeline"},
                  {"_diffusers_version", "0.42.1"},
                  {"scheduler", {"diffusers", "DDIMScheduler"}},
                  {"text_encoder", {"transformers", "CLIPTextModel"}},
                  {"tokenizer", {"transformers", "CLIPTokenizer"}},
                  {"unet", {"diffusers", "UNet2DConditionModel"}},
                  {"vae", {"diffusers", "AutoencoderKL"}}};
    fs::create_directories(dir / "scheduler");
    write_json(dir / "scheduler" / "scheduler_config.json",
               {{"_class_name", "DDIMScheduler"}, {"beta_start", 0.00085}, {"beta_end", 0.012},
                {"beta_schedule", "scaled_linear"}, {"num_train_timesteps", 1000}, {"clip_sample", false},
                {"set_alpha_to_one", false}, {"steps_offset", 1},
                {"prediction_type", c.prediction == Prediction::v ? "v_prediction" : "epsilon"}});
    if (unclip) {
        const auto& v = c.vision;
        Json image = {{"architectures", {"CLIPVisionModelWithProjection"}}, {"model_type", "clip_vision_model"},
                      {"hidden_act", v.kind == VisionKind::openai_l ? "quick_gelu" : "gelu"},
                      {"hidden_size", v.width}, {"intermediate_size", 4 * v.width},
                      {"num_attention_heads", std::max(1, v.width / v.head_width)}, {"num_hidden_layers", v.layers},
                      {"image_size", v.image_size}, {"patch_size", v.patch}, {"projection_dim", v.embed_dim},
                      {"num_channels", 3}, {"layer_norm_eps", 1e-5}, {"torch_dtype", torch_dtype}};
        if (v.kind != VisionKind::none) write_json(dir / "image_encoder" / "config.json", image);
        index["feature_extractor"] = {"transformers", "CLIPImageProcessor"};
        index["image_encoder"] = {"transformers", "CLIPVisionModelWithProjection"};
        index["image_normalizer"] = {"stable_unclip", "StableUnCLIPImageNormalizer"};
        index["image_noising_scheduler"] = {"diffusers", "DDPMScheduler"};
        const std::int64_t dim = c.noise_aug_dim();
        fs::create_directories(dir / "image_normalizer");
        write_json(dir / "image_normalizer" / "config.json",
                   {{"_class_name", "StableUnCLIPImageNormalizer"}, {"embedding_dim", dim}});
        write_file(dir / "image_normalizer" / "diffusion_pytorch_model.safetensors",
                   {{"mean", Shape{1, dim}, options.dtype, [](float* d, std::uint64_t, std::size_t n) { std::fill(d, d + n, 0.0f); }},
                    {"std", Shape{1, dim}, options.dtype, [](float* d, std::uint64_t, std::size_t n) { std::fill(d, d + n, 1.0f); }}},
                   options.sparse);
        fs::create_directories(dir / "image_noising_scheduler");
        write_json(dir / "image_noising_scheduler" / "scheduler_config.json",
                   {{"_class_name", "DDPMScheduler"}, {"beta_schedule", "squaredcos_cap_v2"}, {"num_train_timesteps", 1000}});
        fs::create_directories(dir / "feature_extractor");
        write_json(dir / "feature_extractor" / "preprocessor_config.json",
                   {{"image_processor_type", "CLIPImageProcessor"}, {"crop_size", {{"height", 224}, {"width", 224}}},
                    {"size", {{"shortest_edge", 224}}}, {"do_resize", true}, {"do_center_crop", true},
                    {"do_rescale", true}, {"do_normalize", true}, {"do_convert_rgb", true}, {"resample", 3},
                    {"rescale_factor", 1.0 / 255}, {"image_mean", {0.48145466, 0.4578275, 0.40821073}},
                    {"image_std", {0.26862954, 0.26130258, 0.27577711}}});
    }
    write_json(dir / "model_index.json", index);
}

}  // namespace unclip::io
