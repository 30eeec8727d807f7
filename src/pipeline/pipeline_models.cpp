#include "pipeline/pipeline_models.hpp"

#include <filesystem>

namespace unclip::pipeline {
namespace {

nn::ClipTextConfig text_config(const io::TextArch& arch, const nn::WeightMap& weights) {
    nn::ClipTextConfig c;
    c.vocab = arch.vocab;
    c.context = arch.context_length;
    c.width = arch.width;
    c.mlp_hidden = 4 * arch.width;
    c.heads = arch.width / arch.head_width;
    // LDM files keep all OpenCLIP blocks and SD 2.x reads the penultimate; a diffusers
    // text_encoder/ keeps only the blocks that are used and reads its last.
    const bool has_extra_block = weights.find("transformer.resblocks." + std::to_string(arch.layers) + ".ln_1.weight");
    c.layers = arch.layers + (has_extra_block ? 1 : 0);
    c.output_layer = has_extra_block ? -2 : -1;
    c.embed_dim = weights.find("text_projection") && has_extra_block ? arch.width : 0;
    return c;
}

nn::ClipVisionConfig vision_config(const io::VisionArch& arch) {
    nn::ClipVisionConfig c = arch.kind == io::VisionKind::openai_l ? nn::ClipVisionConfig::openai_vit_l14()
                                                                   : nn::ClipVisionConfig::open_clip_vit_h14();
    c.image_size = arch.image_size;
    c.patch = arch.patch;
    c.width = arch.width;
    c.mlp_hidden = 4 * arch.width;
    c.embed_dim = arch.embed_dim;
    c.layers = arch.layers;
    c.heads = arch.width / arch.head_width;
    return c;
}

}  // namespace

std::unique_ptr<Models> load_models(const std::string& path, const io::LoadOptions& options) {
    auto m = std::make_unique<Models>();
    m->checkpoint = io::load_checkpoint(path, options);
    const io::ModelConfig& cfg = m->checkpoint.config;

    m->unet_weights = io::convert_weights(m->checkpoint.unet, DType::f32);
    const auto ucfg = unet_config(cfg.unet);
    m->unet.emplace(ucfg, nn::load_unet<float>(m->unet_weights, "", ucfg));

    m->vae_weights = io::convert_weights(m->checkpoint.vae, DType::f32);
    const auto vcfg = vae_config(cfg.vae);
    m->vae.emplace(vcfg, nn::load_vae_encoder<float>(m->vae_weights, "", vcfg), nn::load_vae_decoder<float>(m->vae_weights, "", vcfg));

    m->text_weights = io::convert_weights(m->checkpoint.text, DType::f32);
    const auto tcfg = text_config(cfg.text, m->text_weights);
    m->text.emplace(tcfg, nn::load_clip_text<float>(m->text_weights, "", tcfg));

    if (cfg.vision.kind != io::VisionKind::none) {
        m->vision_weights = io::convert_weights(m->checkpoint.vision, DType::f32);
        const auto icfg = vision_config(cfg.vision);
        m->vision.emplace(icfg, nn::load_clip_vision<float>(m->vision_weights, "", icfg));
    }

    const std::filesystem::path tokenizer_dir = m->checkpoint.tokenizer_dir;
    if (!tokenizer_dir.empty() && std::filesystem::exists(tokenizer_dir / "vocab.json"))
        m->tokenizer.emplace(text::ClipTokenizer::from_files(tokenizer_dir / "vocab.json", tokenizer_dir / "merges.txt"));
    else
        m->tokenizer.emplace(text::ClipTokenizer::bundled());
    return m;
}

}  // namespace unclip::pipeline
