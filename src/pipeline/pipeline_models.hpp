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

struct Models {
    io::Checkpoint checkpoint;
    // Each component's weights: Linear/Conv2d matrices as the file stores them (usually mapped),
    // everything else widened to fp32 on demand; the modules borrow them.
    nn::WeightMap unet_weights, vae_weights, text_weights, vision_weights;
    std::optional<nn::UNet<CpuBackend, float>> unet;
    std::optional<nn::AutoencoderKL<CpuBackend, float>> vae;
    std::optional<nn::ClipTextModel<CpuBackend, float>> text;
    std::optional<nn::ClipVisionModel<CpuBackend, float>> vision;  // absent without an image tower
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
