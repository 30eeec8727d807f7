// diffusers folders (StableUnCLIPImg2ImgPipeline.save_pretrained and the hub repos): each
// component's config.json gives its architecture, the shared tensor table maps its names to LDM.
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/tensor_source.hpp"

namespace unclip::io::detail {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

Json read_json(const fs::path& path) {
    std::ifstream in(path);
    if (!in) throw Error(Status::io, "open '" + path.string() + "': cannot open for reading");
    try {
        return Json::parse(in);
    } catch (const Json::exception& e) {
        fail(path.string(), std::string("not valid JSON: ") + e.what());
    }
}

// A required config field, with the file and field named when absent or of the wrong type.
template <class T>
T field(const Json& j, const char* name, const fs::path& file) {
    if (!j.contains(name)) fail(file.string(), std::string("no '") + name + "' field");
    try {
        return j.at(name).get<T>();
    } catch (const Json::exception&) {
        fail(file.string(), std::string("field '") + name + "' has the wrong type");
    }
}
template <class T>
T field_or(const Json& j, const char* name, const fs::path& file, T fallback) {
    return j.contains(name) && !j.at(name).is_null() ? field<T>(j, name, file) : fallback;
}

std::vector<int> multipliers(const std::vector<int>& widths, const fs::path& file) {
    if (widths.empty() || widths[0] <= 0) fail(file.string(), "block_out_channels is empty");
    std::vector<int> mult;
    for (int w : widths) {
        if (w % widths[0]) fail(file.string(), "block_out_channels are not multiples of the first");
        mult.push_back(w / widths[0]);
    }
    return mult;
}

}  // namespace

UnetArch unet_arch(const fs::path& file) {
    const Json j = read_json(file);
    UnetArch a;
    const auto widths = field<std::vector<int>>(j, "block_out_channels", file);
    a.model_channels = widths.empty() ? 0 : widths[0];
    a.channel_mult = multipliers(widths, file);
    a.in_channels = field_or<int>(j, "in_channels", file, 4);
    a.out_channels = field_or<int>(j, "out_channels", file, 4);
    a.num_res_blocks = field<int>(j, "layers_per_block", file);
    a.context_dim = field<int>(j, "cross_attention_dim", file);
    const auto types = field<std::vector<std::string>>(j, "down_block_types", file);
    if (types.size() != widths.size()) fail(file.string(), "down_block_types and block_out_channels differ in length");
    a.attention.clear();
    for (const auto& t : types) a.attention.push_back(t.rfind("CrossAttn", 0) == 0);
    if (j.contains("transformer_layers_per_block") && j["transformer_layers_per_block"].is_number_integer())
        a.transformer_depth = j["transformer_layers_per_block"].get<int>();
    const auto embed = field_or<std::string>(j, "class_embed_type", file, "");
    a.adm_in_channels = embed == "projection" ? field<int>(j, "projection_class_embeddings_input_dim", file) : 0;
    if (!embed.empty() && embed != "projection")
        fail(file.string(), "class_embed_type '" + embed + "' is not supported (unCLIP uses 'projection')");
    return a;
}

VaeArch vae_arch(const fs::path& file) {
    const Json j = read_json(file);
    VaeArch a;
    const auto widths = field<std::vector<int>>(j, "block_out_channels", file);
    a.ch = widths.empty() ? 0 : widths[0];
    a.ch_mult = multipliers(widths, file);
    a.in_channels = field_or<int>(j, "in_channels", file, 3);
    a.num_res_blocks = field<int>(j, "layers_per_block", file);
    a.z_channels = field<int>(j, "latent_channels", file);
    return a;
}

TextArch text_arch(const fs::path& file) {
    const Json j = read_json(file);
    TextArch a;
    a.width = field<int>(j, "hidden_size", file);
    // diffusers' SD 2.x text encoder already stops at the block LDM reads (23 of OpenCLIP's 24).
    a.layers = field<int>(j, "num_hidden_layers", file);
    a.vocab = field<int>(j, "vocab_size", file);
    a.context_length = field<int>(j, "max_position_embeddings", file);
    return a;
}

namespace {

VisionArch vision_arch(const fs::path& file) {
    const Json j = read_json(file);
    VisionArch a;
    a.width = field<int>(j, "hidden_size", file);
    a.layers = field<int>(j, "num_hidden_layers", file);
    a.image_size = field<int>(j, "image_size", file);
    a.patch = field<int>(j, "patch_size", file);
    a.embed_dim = field<int>(j, "projection_dim", file);
    const auto act = field_or<std::string>(j, "hidden_act", file, "gelu");
    a.kind = act == "quick_gelu" ? VisionKind::openai_l : VisionKind::openclip_h;
    return a;
}

}  // namespace

// transformers 5 saves CLIPTextModel without the "text_model." prefix that 4.x wrote (and the
// hub's files have); the table uses the prefixed names, so unprefixed files are seen through it.
TensorSource with_text_model_prefix(TensorSource source) {
    const std::string prefix = "text_model.";
    for (const auto& entry : source.tensors)
        if (entry.first.rfind(prefix, 0) == 0) return source;
    TensorSource renamed;
    renamed.label = source.label;
    for (auto& [name, info] : source.tensors) renamed.tensors.emplace(prefix + name, std::move(info));
    renamed.get = [inner = std::move(source.get), n = prefix.size()](const std::string& name) {
        return inner(name.substr(n));
    };
    return renamed;
}

TensorSource open_weights(const std::string& dir_name, const std::string& stem, const std::string& variant) {
    const fs::path dir = dir_name;
    const std::string preferred = variant.empty() ? "" : "." + variant;
    const std::string other = variant.empty() ? ".fp16" : "";
    for (const std::string& v : {preferred, other})
        if (fs::exists(dir / (stem + v + ".safetensors"))) return open_source((dir / (stem + v + ".safetensors")).string());
    if (fs::exists(dir / (stem + ".safetensors.index.json")))
        fail(dir.string(), "sharded weights (" + stem + ".safetensors.index.json) are not supported");
    for (const std::string& v : {preferred, other})  // older repos: torch.save zip archives
        if (fs::exists(dir / (stem + v + ".bin"))) return open_source((dir / (stem + v + ".bin")).string());
    fail(dir.string(), "no weights: neither " + stem + ".safetensors nor " + stem + ".bin");
}

Checkpoint load_diffusers(const std::string& dir_name, const LoadOptions& options) {
    const fs::path dir = dir_name;
    if (!fs::exists(dir / "model_index.json"))
        fail(dir_name, "a directory without model_index.json is not a diffusers pipeline folder");
    const Json index = read_json(dir / "model_index.json");
    if (!index.is_object()) fail((dir / "model_index.json").string(), "not a JSON object");
    for (const char* required : {"unet", "vae", "text_encoder"})
        if (!index.contains(required) || !fs::is_directory(dir / required))
            fail(dir_name, std::string("component '") + required + "' is missing");

    Checkpoint ckpt;
    ckpt.path = dir_name;
    ckpt.layout = Layout::diffusers;
    ModelConfig& c = ckpt.config;
    c.unet = unet_arch(dir / "unet" / "config.json");
    c.variant = variant_from_adm(dir_name, c.unet.adm_in_channels);
    c.vae = vae_arch(dir / "vae" / "config.json");
    c.text = text_arch(dir / "text_encoder" / "config.json");
    c.vision.kind = VisionKind::none;
    const bool has_image_encoder = index.contains("image_encoder") && fs::is_directory(dir / "image_encoder");
    if (has_image_encoder) {
        c.vision = vision_arch(dir / "image_encoder" / "config.json");
        const VisionKind from_act = c.vision.kind;
        classify_vision(c.vision, from_act);
    }

    c.prediction = c.variant == Variant::sd2 ? Prediction::eps : Prediction::v;
    if (fs::exists(dir / "scheduler" / "scheduler_config.json")) {
        const fs::path file = dir / "scheduler" / "scheduler_config.json";
        const auto type = field_or<std::string>(read_json(file), "prediction_type", file, "");
        if (type == "v_prediction") c.prediction = Prediction::v;
        else if (type == "epsilon") c.prediction = Prediction::eps;
        else if (!type.empty()) fail(file.string(), "prediction_type '" + type + "' is not supported");
    }
    if (options.prediction) c.prediction = *options.prediction;

    finish_config(ckpt, options);
    const std::string& variant = options.diffusers_variant;
    collect_diffusers(open_weights((dir / "unet").string(), "diffusion_pytorch_model", variant), "",
                      table_for(dir_name, c, Component::unet), ckpt.unet);
    collect_diffusers(open_weights((dir / "vae").string(), "diffusion_pytorch_model", variant), "",
                      table_for(dir_name, c, Component::vae), ckpt.vae);
    collect_diffusers(with_text_model_prefix(open_weights((dir / "text_encoder").string(), "model", variant)), "",
                      table_for(dir_name, c, Component::text), ckpt.text);
    if (has_image_encoder && options.clip_vision_path.empty())
        collect_diffusers(open_weights((dir / "image_encoder").string(), "model", variant), "",
                          table_for(dir_name, c, Component::vision), ckpt.vision);

    if (fs::is_directory(dir / "image_normalizer")) {
        const TensorSource s = open_weights((dir / "image_normalizer").string(), "diffusion_pytorch_model", variant);
        const std::vector<std::int64_t> expected{1, c.noise_aug_dim()};
        for (const char* name : {"mean", "std"}) {
            const SourceInfo* info = s.find(name);
            if (!info) fail(s.label, std::string("weights incomplete: 1 tensor missing: ") + name);
            if (info->dims != expected)
                fail(s.label, std::string("tensor '") + name + "': shape " + dims_str(info->dims) + ", expected " +
                                  dims_str(expected));
            if (!info->dtype) fail(s.label, std::string("tensor '") + name + "': dtype " + info->dtype_name + " not supported");
        }
        ckpt.image_normalizer = ImageNormalizer{s.get("mean"), s.get("std")};
    }
    if (fs::is_directory(dir / "tokenizer")) ckpt.tokenizer_dir = (dir / "tokenizer").string();
    if (fs::is_directory(dir / "feature_extractor")) ckpt.feature_extractor_dir = (dir / "feature_extractor").string();
    return ckpt;
}

}  // namespace unclip::io::detail
