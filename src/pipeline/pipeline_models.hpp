#pragma once
// The modules of a loaded checkpoint, built once per Pipeline on the CPU backend in fp32.
#include <memory>
#include <optional>
#include <string>

#include "unclip/io/checkpoint.hpp"
#include "unclip/io/prior.hpp"
#include "unclip/module_configs.hpp"
#include "unclip/nn/clip_text.hpp"
#include "unclip/nn/clip_vision.hpp"
#include "unclip/nn/instances.hpp"
#include "unclip/text/tokenizer.hpp"

namespace unclip::pipeline {

// Each component's weights. The modules borrow them.
struct ComponentWeights {
    nn::WeightMap unet_weights, vae_weights, text_weights, vision_weights;
};

// The four modules on one backend, built over that backend's ComponentWeights.
template <class Backend>
struct ComponentModules {
    std::optional<nn::UNet<Backend, float>> unet;
    std::optional<nn::AutoencoderKL<Backend, float>> vae;
    std::optional<nn::ClipTextModel<Backend, float>> text;
    std::optional<nn::ClipVisionModel<Backend, float>> vision;  // absent without an image tower

    void build(const io::ModelConfig& cfg, const ComponentWeights& w) {
        const auto ucfg = unet_config(cfg.unet);
        unet.emplace(ucfg, nn::load_unet<float>(w.unet_weights, "", ucfg));
        const auto vcfg = vae_config(cfg.vae);
        vae.emplace(vcfg, nn::load_vae_encoder<float>(w.vae_weights, "", vcfg), nn::load_vae_decoder<float>(w.vae_weights, "", vcfg));
        const auto tcfg = clip_text_config(cfg.text, w.text_weights);
        text.emplace(tcfg, nn::load_clip_text<float>(w.text_weights, "", tcfg));
        if (cfg.vision.kind != io::VisionKind::none) {
            const auto icfg = clip_vision_config(cfg.vision);
            vision.emplace(icfg, nn::load_clip_vision<float>(w.vision_weights, "", icfg));
        }
    }
};

// Linear/Conv2d matrices as the file stores them (usually mapped), everything else widened to
// fp32 on demand.
struct Models : ComponentWeights, ComponentModules<CpuBackend> {
    io::Checkpoint checkpoint;
    std::optional<text::ClipTokenizer> tokenizer;
};

// Hands the resident pages of the memory-mapped tensors in `weights` back to the kernel (they are
// read from the file again on next use): PipelineOptions::low_memory after each encoder pass.
void release_resident_pages(const nn::WeightMap& weights) noexcept;

// Loads `path` (see io::load_checkpoint) and builds every module.
std::unique_ptr<Models> load_models(const std::string& path, const io::LoadOptions& options);

// The text-to-image-embedding prior (io::load_prior) and its text tower, tokenizer and sampler.
struct PriorModels {
    io::PriorCheckpoint checkpoint;
    std::optional<nn::PriorTransformer<CpuBackend, float>> prior;
    std::optional<nn::ClipTextModel<CpuBackend, float>> text;
    std::optional<text::ClipTokenizer> tokenizer;
    std::optional<sampling::PriorScheduler> scheduler;
};
std::unique_ptr<PriorModels> load_prior_models(const std::string& path);

}  // namespace unclip::pipeline
