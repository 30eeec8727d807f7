#pragma once
// What a checkpoint contains, as far as its tensors tell: the model variant, the architecture of
// each component, and the table of every tensor name and shape that architecture implies. The
// same table serves the loader (which validates against it), the diffusers name mapping and the
// random-weights tool, so a name or shape is written down exactly once.
#include <cstdint>
#include <string>
#include <vector>

#include "unclip/detail/export.hpp"
#include "unclip/tensor.hpp"

namespace unclip::io {

enum class Variant : std::uint8_t {
    sd2,        // plain SD 2.x (512 eps base or 768 v): no ADM input, no image tower
    unclip_h,   // sd21-unclip-h: ADM input 2048, OpenCLIP ViT-H/14 image tower
    unclip_l,   // sd21-unclip-l: ADM input 1536, OpenAI CLIP ViT-L/14 image tower
};
enum class Prediction : std::uint8_t { eps, v };
// The image tower's layout and activation; the LDM key names of both are the same.
enum class VisionKind : std::uint8_t { none, openclip_h, openai_l };
enum class Component : std::uint8_t { unet, vae, text, vision };

// "sd2", "unclip-h", "unclip-l"; "eps", "v"; "none", "openclip-h", "openai-l"; "unet", ...
UNCLIP_CXX_API const char* variant_name(Variant variant) noexcept;
UNCLIP_CXX_API const char* prediction_name(Prediction prediction) noexcept;
UNCLIP_CXX_API const char* vision_kind_name(VisionKind kind) noexcept;
UNCLIP_CXX_API const char* component_name(Component component) noexcept;

// LDM openaimodel.py UNetModel, SD 2.x form (linear projections in the transformers).
struct UnetArch {
    int in_channels = 4, out_channels = 4, model_channels = 320;
    std::vector<int> channel_mult{1, 2, 4, 4};
    std::vector<bool> attention{true, true, true, false};  // per level; the middle always has one
    int num_res_blocks = 2;       // per level on the input side; the output side has one more
    int transformer_depth = 1;
    int context_dim = 1024;       // text width seen by cross-attention
    int adm_in_channels = 0;      // 0: no label_emb (plain SD 2.x)
    int head_channels = 64;       // not stored in files: SD 2.x uses 64 (num_head_channels)
    int time_embed_dim() const noexcept { return 4 * model_channels; }
};

// LDM model.py Encoder/Decoder of AutoencoderKL.
struct VaeArch {
    int in_channels = 3, ch = 128, z_channels = 4, num_res_blocks = 2;
    std::vector<int> ch_mult{1, 2, 4, 4};
};

// OpenCLIP text tower. `layers` counts the blocks the conditioning uses: the LDM file stores one
// more (SD 2.x reads the penultimate block), diffusers' 23-layer CLIPTextModel stores exactly these.
struct TextArch {
    int vocab = 49408, context_length = 77, width = 1024, layers = 23;
    int head_width = 64;          // not stored in files: OpenCLIP's default
};

struct VisionArch {
    VisionKind kind = VisionKind::none;
    int image_size = 224, patch = 14, width = 1280, layers = 32, embed_dim = 1024;
    int head_width = 80;          // not stored in files: 80 for ViT-H/14, 64 for ViT-L/14
    int tokens() const noexcept { return (image_size / patch) * (image_size / patch) + 1; }
};

struct ModelConfig {
    Variant variant = Variant::unclip_h;
    Prediction prediction = Prediction::v;
    // False for the official sizes; true when a reduced (test) model was accepted on request.
    bool reduced = false;
    UnetArch unet;
    VaeArch vae;
    TextArch text;
    VisionArch vision;            // kind none when the checkpoint has no image tower
    // unCLIP noise augmentation width (= image embedding width); 0 for plain SD 2.x.
    int noise_aug_dim() const noexcept { return unet.adm_in_channels / 2; }
};

// The official architecture of a variant (prediction v for all three; SD 2.x 512-base is eps).
UNCLIP_CXX_API ModelConfig reference_config(Variant variant);

// How a diffusers tensor becomes the LDM one.
enum class Transform : std::uint8_t {
    copy,       // same data and shape
    conv1x1,    // diffusers Linear [o, i] <-> LDM 1x1 conv [o, i, 1, 1] (VAE attention): a reshape
    transpose,  // diffusers [b, a] <-> LDM [a, b] (projections used as x @ P): copies
    fuse_qkv,   // diffusers q, k, v [w, w] / [w] <-> LDM in_proj [3w, w] / [3w]: copies
};

// One tensor of a component: its LDM name relative to the component prefix, its LDM shape, and
// its diffusers counterpart (three names for fuse_qkv; none for tensors diffusers does not keep).
struct TensorSpec {
    std::string name;
    Shape shape;
    std::vector<std::string> diffusers;
    Transform transform = Transform::copy;
    // Present in LDM files but not needed for inference (the text tower's last block and its
    // projection): validated when present, never required.
    bool optional = false;
};

// The LDM prefix of a component in single-file checkpoints: "model.diffusion_model.", ...
UNCLIP_CXX_API const char* ldm_prefix(Component component) noexcept;
// Every tensor of a component, in module order. Throws Error(Status::invalid_argument) if the
// architecture is inconsistent (e.g. an attention list shorter than channel_mult).
UNCLIP_CXX_API std::vector<TensorSpec> tensor_table(const ModelConfig& config, Component component);

// A short human description: "unclip-h (v, UNet 320x[1,2,4,4], ADM 2048, text 1024x23, ...)".
UNCLIP_CXX_API std::string describe(const ModelConfig& config);

}  // namespace unclip::io
