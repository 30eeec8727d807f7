#pragma once
// Loading a Stable Diffusion 2.x / unCLIP checkpoint in any of the layouts users bring:
//   - single-file LDM .safetensors (ComfyUI merges, community fp16 files),
//   - PyTorch .ckpt (read without executing its pickle, see ckpt.hpp),
//   - a diffusers folder (model_index.json + unet/ vae/ text_encoder/ image_encoder/ ...),
// plus an optional separate CLIP vision file (ComfyUI clip_vision, open_clip or transformers keys).
//
// The result holds one WeightMap per component, keyed by LDM names relative to the component
// prefix (UNet: "input_blocks.1.0.in_layers.0.weight", VAE: "decoder.conv_in.weight", text:
// "transformer.resblocks.0.attn.in_proj_weight", vision: "conv1.weight"), and the ModelConfig
// inferred from the tensors' names and shapes (never from a file name).
//
// Memory: tensors are views into the memory-mapped files in the file's dtype; nothing is copied
// except where a layout differs in data, not only in name: diffusers' split q/k/v projections are
// fused into one in_proj tensor and transposed projections (text_projection, visual proj) are
// transposed, which allocates those tensors. Convert per module with convert_weights().
#include <optional>
#include <string>
#include <vector>

#include "unclip/detail/export.hpp"
#include "unclip/io/model_config.hpp"
#include "unclip/nn/weights.hpp"
#include "unclip/tensor.hpp"

namespace unclip::io {

enum class Layout : std::uint8_t { single_file, ckpt, diffusers };
UNCLIP_CXX_API const char* layout_name(Layout layout) noexcept;  // "single-file", "ckpt", "diffusers"

struct LoadOptions {
    // Overrides the prediction type found in the checkpoint (diffusers scheduler config; for LDM
    // files unCLIP is v and plain SD 2.x is decided by ComfyUI's norm-bias heuristic).
    std::optional<Prediction> prediction;
    // A CLIP vision file to use as the image tower (required for unCLIP when the checkpoint has
    // none; replaces the checkpoint's own tower when given). Empty: none.
    std::string clip_vision_path;
    // Accept architectures smaller than the official ones (tests, experiments). Off: a
    // checkpoint whose shapes match no official variant is an error ("unknown variant").
    bool allow_reduced = false;
    // Which diffusers weight files to prefer: "" for model.safetensors, "fp16" for
    // model.fp16.safetensors; the other is used when the preferred one is absent.
    std::string diffusers_variant;
};

// The image_normalizer of a diffusers unCLIP folder (StableUnCLIPImageNormalizer): per-feature
// mean and std of the image embeddings, [1, D] each, views into the file.
struct ImageNormalizer {
    Tensor mean, std;
};

struct Checkpoint {
    std::string path;
    Layout layout = Layout::single_file;
    ModelConfig config;
    nn::WeightMap unet, vae, text, vision;   // vision empty when config.vision.kind == none
    std::optional<ImageNormalizer> image_normalizer;
    // Diffusers folders only: where the tokenizer and feature extractor live (for the text and
    // image modules); empty otherwise or when absent.
    std::string tokenizer_dir, feature_extractor_dir;

    const nn::WeightMap& weights(Component component) const noexcept;
};

// Loads and validates: every tensor the detected architecture needs is present with its exact
// shape (tensor_table), in F32, F16 or BF16. Keys that belong to no component are ignored.
// Throws Error(Status::io) if a file cannot be read and Error(Status::bad_model) naming the file
// and the culprit otherwise: missing tensors (the first few names), a wrong shape (name,
// expected, found), an unsupported dtype (name and dtype), an unknown variant, a malformed
// container, or a directory without model_index.json.
// The result is immutable; its views keep the mapped files alive.
UNCLIP_CXX_API Checkpoint load_checkpoint(const std::string& path, const LoadOptions& options = {});

// Loads an image tower alone: LDM/open_clip keys ("embedder.model.visual.", "visual." or no
// prefix) or transformers keys ("vision_model.", "visual_projection.weight"); a .safetensors or
// .ckpt file or a diffusers image_encoder folder. Names in the result follow the LDM layout.
// `arch` receives the detected tower; reduced sizes need allow_reduced.
UNCLIP_CXX_API nn::WeightMap load_clip_vision(const std::string& path, VisionArch& arch, bool allow_reduced = false);

// The weights as contiguous tensors of `dtype`: tensors already in that dtype and contiguous are
// shared (no copy), the others are converted into newly allocated storage.
UNCLIP_CXX_API nn::WeightMap convert_weights(const nn::WeightMap& weights, DType dtype);

}  // namespace unclip::io
