#pragma once
// One file of tensors seen uniformly, whatever its container: names, shapes and dtypes without
// touching the data, and a getter for zero-copy views. The checkpoint loaders work on these.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "unclip/io/checkpoint.hpp"
#include "unclip/tensor.hpp"

namespace unclip::io::detail {

struct SourceInfo {
    std::vector<std::int64_t> dims;
    std::string dtype_name;
    std::optional<DType> dtype;
};

struct TensorSource {
    std::string label;  // the path, as errors name it
    bool zip = false;   // a PyTorch zip archive rather than safetensors
    std::unordered_map<std::string, SourceInfo> tensors;
    std::function<Tensor(const std::string&)> get;

    const SourceInfo* find(const std::string& name) const {
        const auto it = tensors.find(name);
        return it == tensors.end() ? nullptr : &it->second;
    }
    // Dimension `axis` of a tensor, or -1 when the tensor is absent or has fewer dimensions.
    std::int64_t dim(const std::string& name, std::size_t axis) const {
        const SourceInfo* info = find(name);
        return info && axis < info->dims.size() ? info->dims[axis] : -1;
    }
    bool has(const std::string& name) const { return find(name) != nullptr; }
};

// Opens a .safetensors file or a PyTorch zip checkpoint (.ckpt/.pt/.bin), told apart by content.
TensorSource open_source(const std::string& path);

[[noreturn]] void fail(const std::string& label, const std::string& what);

// "[1280, 320]" for a dimension list.
std::string dims_str(const std::vector<std::int64_t>& dims);

// tensor_table for an architecture read from a file: an impossible size (a tensor of the wrong
// rank, a config with zero layers) is the file's fault, so it becomes Status::bad_model naming it.
std::vector<TensorSpec> table_for(const std::string& label, const ModelConfig& config, Component component);

// Views every tensor of `table` from `source` under `prefix` (LDM names) into `out`, checking
// presence (unless optional), shape and dtype; errors name the file and the first few culprits.
void collect_ldm(const TensorSource& source, const std::string& prefix, const std::vector<TensorSpec>& table,
                 nn::WeightMap& out);
// The same through the diffusers names of `table`, applying each spec's transform.
void collect_diffusers(const TensorSource& source, const std::string& prefix, const std::vector<TensorSpec>& table,
                       nn::WeightMap& out);

// Vision arch from LDM/open_clip names under `prefix`, or from transformers names; nullopt when
// the source has no image tower in that layout.
std::optional<VisionArch> detect_vision_ldm(const TensorSource& source, const std::string& prefix);
std::optional<VisionArch> detect_vision_hf(const TensorSource& source, const std::string& prefix);
// Fills kind and head width from the sizes of the official towers; reduced towers get the kind
// `fallback` (or openai-l for 768-wide embeddings when fallback is none).
void classify_vision(VisionArch& arch, VisionKind fallback);
// Checks an architecture against the official one; "" when equal, else the first difference.
std::string first_difference(const ModelConfig& found, const ModelConfig& reference);

// The weights of one diffusers component folder: <stem>[.<variant>].safetensors, falling back to
// the other precision and to .bin archives.
TensorSource open_weights(const std::string& dir, const std::string& stem, const std::string& variant);
// The diffusers folder loader (diffusers.cpp).
Checkpoint load_diffusers(const std::string& dir, const LoadOptions& options);
// Variant from the ADM width (ComfyUI supported_models.py: 2048 -> unclip-h, 1536 -> unclip-l,
// none -> SD 2.x); throws "unknown variant" for anything else.
Variant variant_from_adm(const std::string& label, int adm_in_channels);
// Shared tail of every loader: strict-size check, vision consistency, optional vision file.
void finish_config(Checkpoint& ckpt, const LoadOptions& options);

// Architectures read from LDM names under a prefix (checkpoint.cpp); each throws naming the file
// when the component is absent or malformed.
UnetArch detect_unet(const TensorSource& source, const std::string& prefix);
VaeArch detect_vae(const TensorSource& source, const std::string& prefix);
TextArch detect_text(const TensorSource& source, const std::string& prefix);
// ComfyUI's v/eps heuristic for plain SD 2.x UNets.
Prediction guess_prediction(const TensorSource& source, const std::string& prefix, const UnetArch& arch);
// Architectures from a diffusers component's config.json (diffusers.cpp).
UnetArch unet_arch(const std::filesystem::path& config_json);
VaeArch vae_arch(const std::filesystem::path& config_json);
TextArch text_arch(const std::filesystem::path& config_json);
// A transformers CLIPTextModel file seen with its "text_model." prefix, whichever version saved it.
TensorSource with_text_model_prefix(TensorSource source);

// Separate component files (component.cpp): the checkpoint `ckpt` with each component named in
// `options` (unet_path, vae_path, text_encoder_path) replaced by that file's weights, validated
// against ckpt.config.
void replace_components(Checkpoint& ckpt, const LoadOptions& options);
// A checkpoint assembled from component files only: options.unet_path decides the variant and
// vae_path and text_encoder_path are required.
Checkpoint load_from_components(const LoadOptions& options);

}  // namespace unclip::io::detail
