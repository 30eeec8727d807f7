// Component files: a UNet, VAE, text encoder or image tower alone, as ComfyUI's UNETLoader,
// VAELoader and CLIPLoader take them. Names go through the same tensor table and collectors as
// whole checkpoints, so a component file and the component inside a checkpoint load alike.
#include <filesystem>
#include <optional>

#include "io/tensor_source.hpp"

namespace unclip::io {
namespace detail {
namespace {

namespace fs = std::filesystem;

const char* noun(Component component) {
    switch (component) {
        case Component::unet: return "a UNet";
        case Component::vae: return "a VAE";
        case Component::text: return "a text encoder";
        case Component::vision: return "a CLIP image tower";
    }
    return "an unknown component";
}

// Where LDM-named files put a component: the checkpoint prefix first, then what standalone files
// use (ComfyUI's VAE files and OpenCLIP towers have bare names; open_clip's image tower "visual.").
std::vector<std::string> ldm_prefixes(Component component) {
    if (component == Component::vision) return {ldm_prefix(component), "visual.", "model.visual.", ""};
    return {ldm_prefix(component), ""};
}

// A key that only this component's LDM layout has, relative to its prefix. The VAE's is a block
// name because diffusers' VAE shares "encoder.conv_in" with LDM.
const char* ldm_key(Component component) {
    switch (component) {
        case Component::unet: return "input_blocks.0.0.weight";
        case Component::vae: return "encoder.down.0.block.0.conv1.weight";
        case Component::text: return "token_embedding.weight";
        case Component::vision: return "conv1.weight";
    }
    return "";
}

const char* diffusers_key(Component component) {
    switch (component) {
        case Component::unet: return "time_embedding.linear_1.weight";
        case Component::vae: return "encoder.down_blocks.0.resnets.0.conv1.weight";
        case Component::text: return "text_model.embeddings.token_embedding.weight";
        case Component::vision: return "vision_model.embeddings.patch_embedding.weight";
    }
    return "";
}

const char* diffusers_folder(Component component) {
    switch (component) {
        case Component::unet: return "unet";
        case Component::vae: return "vae";
        case Component::text: return "text_encoder";
        case Component::vision: return "image_encoder";
    }
    return "";
}

std::optional<std::string> find_ldm_prefix(const TensorSource& s, Component component) {
    for (const auto& prefix : ldm_prefixes(component))
        if (s.has(prefix + ldm_key(component))) return prefix;
    return std::nullopt;
}

bool has_diffusers(const TensorSource& s, Component component) {
    // transformers 5 writes CLIPTextModel without "text_model."
    return s.has(diffusers_key(component)) ||
           (component == Component::text && s.has("embeddings.token_embedding.weight"));
}

// One component file: where its tensors are and how they are named.
struct ComponentSource {
    Component component = Component::unet;
    TensorSource source;
    std::string prefix;        // LDM names under this prefix, unless diffusers
    bool diffusers = false;    // diffusers / transformers names
    fs::path config_json;      // beside diffusers weights; empty when there is none
};

ComponentSource open_component(const std::string& path, Component component, const std::string& variant) {
    ComponentSource out;
    out.component = component;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        fs::path dir = path;
        if (fs::exists(dir / "model_index.json", ec)) {  // a whole pipeline folder: take the one component
            dir /= diffusers_folder(component);
            if (!fs::is_directory(dir, ec))
                fail(path, std::string("a diffusers pipeline folder without ") + diffusers_folder(component) + "/");
        }
        // diffusers names its weights after the library that saves them; a folder with the other
        // library's file holds another component, which the checks below then name.
        const bool transformers = component == Component::text || component == Component::vision;
        const char* stem = transformers ? "model" : "diffusion_pytorch_model";
        const char* other_stem = transformers ? "diffusion_pytorch_model" : "model";
        try {
            out.source = open_weights(dir.string(), stem, variant);
        } catch (const Error& e) {
            if (e.status() != Status::bad_model) throw;
            try {
                out.source = open_weights(dir.string(), other_stem, variant);
            } catch (const Error&) {
                throw e;
            }
        }
    } else {
        out.source = open_source(path);
    }
    if (auto prefix = find_ldm_prefix(out.source, component)) {
        out.prefix = *prefix;
        return out;
    }
    if (has_diffusers(out.source, component)) {
        out.diffusers = true;
        const fs::path beside = fs::path(out.source.label).parent_path() / "config.json";
        if (fs::exists(beside, ec)) out.config_json = beside;
        if (component == Component::text) out.source = with_text_model_prefix(std::move(out.source));
        return out;
    }
    for (Component other : {Component::unet, Component::vae, Component::text, Component::vision})
        if (other != component && (find_ldm_prefix(out.source, other) || has_diffusers(out.source, other)))
            fail(out.source.label, std::string("holds ") + noun(other) + ", not " + noun(component));
    std::string keys;
    for (const auto& prefix : ldm_prefixes(component)) keys += "'" + prefix + ldm_key(component) + "', ";
    fail(out.source.label, std::string("unknown layout: no ") + component_name(component) + " tensors found (expected " +
                               keys + "or '" + diffusers_key(component) + "')");
}

void collect_component(const ComponentSource& c, const ModelConfig& config, nn::WeightMap& out) {
    const auto table = table_for(c.source.label, config, c.component);
    if (c.diffusers) collect_diffusers(c.source, "", table, out);
    else collect_ldm(c.source, c.prefix, table, out);
}

// The component's architecture as its own file states it: from its names and shapes, or from the
// config.json of its diffusers folder (diffusers names alone do not say e.g. the text tower's depth
// the way LDM files do).
void detect_arch(const ComponentSource& c, ModelConfig& config) {
    if (c.diffusers && c.config_json.empty())
        fail(c.source.label, "diffusers weights without their folder's config.json beside them: the architecture is "
                             "unknown (give the folder, or a checkpoint as the model path)");
    switch (c.component) {
        case Component::unet: config.unet = c.diffusers ? unet_arch(c.config_json) : detect_unet(c.source, c.prefix); break;
        case Component::vae: config.vae = c.diffusers ? vae_arch(c.config_json) : detect_vae(c.source, c.prefix); break;
        case Component::text: config.text = c.diffusers ? text_arch(c.config_json) : detect_text(c.source, c.prefix); break;
        case Component::vision: break;  // image towers come through clip_vision_path
    }
}

}  // namespace

void replace_components(Checkpoint& ckpt, const LoadOptions& options) {
    if (!options.unet_path.empty())
        ckpt.unet = load_component(options.unet_path, Component::unet, ckpt.config, options.diffusers_variant);
    if (!options.vae_path.empty())
        ckpt.vae = load_component(options.vae_path, Component::vae, ckpt.config, options.diffusers_variant);
    if (!options.text_encoder_path.empty())
        ckpt.text = load_component(options.text_encoder_path, Component::text, ckpt.config, options.diffusers_variant);
}

Checkpoint load_from_components(const LoadOptions& options) {
    std::string missing;
    if (options.vae_path.empty()) missing = "vae_path";
    if (options.text_encoder_path.empty()) missing += missing.empty() ? "text_encoder_path" : " and text_encoder_path";
    if (!missing.empty())
        throw Error(Status::invalid_argument, "load_checkpoint: without a checkpoint, unet_path '" + options.unet_path +
                                                  "' needs a VAE and a text encoder too (missing: " + missing + ")");
    const std::string& variant = options.diffusers_variant;
    const ComponentSource unet = open_component(options.unet_path, Component::unet, variant);
    const ComponentSource vae = open_component(options.vae_path, Component::vae, variant);
    const ComponentSource text = open_component(options.text_encoder_path, Component::text, variant);

    Checkpoint ckpt;
    ckpt.path = options.unet_path;
    ckpt.layout = unet.diffusers ? Layout::diffusers : unet.source.zip ? Layout::ckpt : Layout::single_file;
    ModelConfig& c = ckpt.config;
    detect_arch(unet, c);
    c.variant = variant_from_adm(unet.source.label, c.unet.adm_in_channels);
    detect_arch(vae, c);
    detect_arch(text, c);
    c.vision.kind = VisionKind::none;
    if (options.prediction) c.prediction = *options.prediction;
    else if (c.variant != Variant::sd2) c.prediction = Prediction::v;  // both official unCLIP models are v-models
    else c.prediction = unet.diffusers ? Prediction::eps : guess_prediction(unet.source, unet.prefix, c.unet);

    // Within one checkpoint these agree by construction; separate files are checked where they meet.
    if (c.text.width != c.unet.context_dim)
        fail(text.source.label, "the text encoder is " + std::to_string(c.text.width) + " wide but the UNet in '" +
                                    unet.source.label + "' cross-attends to " + std::to_string(c.unet.context_dim));
    if (c.vae.z_channels != c.unet.in_channels || c.vae.z_channels != c.unet.out_channels)
        fail(vae.source.label, "the VAE has " + std::to_string(c.vae.z_channels) + " latent channels but the UNet in '" +
                                   unet.source.label + "' takes " + std::to_string(c.unet.in_channels) + " and gives " +
                                   std::to_string(c.unet.out_channels));

    finish_config(ckpt, options);
    collect_component(unet, c, ckpt.unet);
    collect_component(vae, c, ckpt.vae);
    collect_component(text, c, ckpt.text);
    return ckpt;
}

}  // namespace detail

nn::WeightMap load_component(const std::string& path, Component component, const ModelConfig& expected,
                             const std::string& diffusers_variant) {
    const detail::ComponentSource c = detail::open_component(path, component, diffusers_variant);
    nn::WeightMap out;
    detail::collect_component(c, expected, out);
    return out;
}

}  // namespace unclip::io
