#include "pipeline/pipeline_models.hpp"

#include <filesystem>

namespace unclip::pipeline {
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
    const auto tcfg = clip_text_config(cfg.text, m->text_weights);
    m->text.emplace(tcfg, nn::load_clip_text<float>(m->text_weights, "", tcfg));

    if (cfg.vision.kind != io::VisionKind::none) {
        m->vision_weights = io::convert_weights(m->checkpoint.vision, DType::f32);
        const auto icfg = clip_vision_config(cfg.vision);
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
