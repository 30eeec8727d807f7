#pragma once
// Loading a Stable Diffusion 2.x / unCLIP checkpoint in any of the layouts users bring:
//   - single-file LDM .safetensors (ComfyUI merges, community fp16 files),
//   - PyTorch .ckpt (read without executing its pickle, see ckpt.hpp),
//   - a diffusers folder (model_index.json + unet/ vae/ text_encoder/ image_encoder/ ...),
// plus an optional separate CLIP vision file (ComfyUI clip_vision, open_clip or transformers keys)
// and optional separate UNet, VAE and text encoder files, as ComfyUI's UNETLoader, VAELoader and
// CLIPLoader take them (see load_component).
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
    // Separate component files (any form load_component accepts). Empty: the component comes from
    // the checkpoint. When set, the file replaces that component of the checkpoint and must have
    // the architecture the checkpoint's own component has; the checkpoint must still hold all of
    // its UNet, VAE and text encoder. With an empty checkpoint path, unet_path alone decides the
    // variant and vae_path and text_encoder_path are required; the image tower then comes only
    // from clip_vision_path (without one, generation takes image embeddings, not pictures).
    std::string unet_path, vae_path, text_encoder_path;
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
// `path` may be empty when options.unet_path is set (a model from component files; path and
// layout of the result are then the UNet file's). Throws Error(Status::invalid_argument) when
// both are empty, or when path is empty and vae_path or text_encoder_path is too.
// The result is immutable; its views keep the mapped files alive.
UNCLIP_CXX_API Checkpoint load_checkpoint(const std::string& path, const LoadOptions& options = {});

// Loads an image tower alone: LDM/open_clip keys ("embedder.model.visual.", "visual." or no
// prefix) or transformers keys ("vision_model.", "visual_projection.weight"); a .safetensors or
// .ckpt file or a diffusers image_encoder folder. Names in the result follow the LDM layout.
// `arch` receives the detected tower; reduced sizes need allow_reduced.
UNCLIP_CXX_API nn::WeightMap load_clip_vision(const std::string& path, VisionArch& arch, bool allow_reduced = false);

// Loads one component alone, as ComfyUI's UNETLoader / VAELoader / CLIPLoader do, from
//   - LDM keys with the component prefix ("model.diffusion_model.", "first_stage_model.",
//     "cond_stage_model.model.", "embedder.model.visual."): a whole checkpoint serves too,
//   - the same keys with no prefix (standalone VAE files such as vae-ft-mse-840000-ema-pruned,
//     OpenCLIP text towers; "visual." and "model.visual." for the image tower),
//   - a diffusers component folder (unet/, vae/, text_encoder/, image_encoder/; a pipeline folder
//     holding it is accepted too) or its weight file (diffusers or transformers names),
// as .safetensors or .ckpt. The result has the names Checkpoint's WeightMap of that component has
// and is validated against tensor_table(expected, component): every required tensor present with
// its exact shape, in F32, F16 or BF16. `diffusers_variant` as LoadOptions::diffusers_variant.
// Throws Error(Status::io) if the file cannot be read and Error(Status::bad_model) naming the file
// and the culprit otherwise: a file holding another component ("holds a VAE, not a text
// encoder"), no known layout, missing tensors (the first few names), a wrong shape or dtype.
UNCLIP_CXX_API nn::WeightMap load_component(const std::string& path, Component component, const ModelConfig& expected,
                                            const std::string& diffusers_variant = "");

// The weights as contiguous tensors of `dtype`: tensors already in that dtype and contiguous are
// shared (no copy), the others are converted into newly allocated storage.
UNCLIP_CXX_API nn::WeightMap convert_weights(const nn::WeightMap& weights, DType dtype);

}  // namespace unclip::io
