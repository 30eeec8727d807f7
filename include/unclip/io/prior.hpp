#pragma once
// The text-to-image-embedding prior of Stable unCLIP-L (diffusers StableUnCLIPPipeline): four
// subfolders of a diffusers folder, as in stabilityai/stable-diffusion-2-1-unclip-small:
//   prior/                 PriorTransformer (config.json, diffusion_pytorch_model.safetensors)
//   prior_text_encoder/    transformers CLIPTextModelWithProjection (config.json, model.safetensors):
//                          OpenAI CLIP ViT-L/14's text tower, quick_gelu, projected EOS embedding
//   prior_tokenizer/       CLIPTokenizer vocab.json + merges.txt (absent: the bundled CLIP vocabulary)
//   prior_scheduler/       scheduler_config.json (UnCLIPScheduler or DDPMScheduler)
#include <cstdint>
#include <string>

#include "unclip/detail/export.hpp"
#include "unclip/io/model_config.hpp"
#include "unclip/nn/clip_text.hpp"
#include "unclip/nn/prior_transformer.hpp"
#include "unclip/nn/weights.hpp"
#include "unclip/sampling/prior_scheduler.hpp"

namespace unclip::io {

struct PriorCheckpoint {
    std::string path;                           // the folder holding prior/ etc.
    nn::PriorTransformerConfig prior_config;
    nn::ClipTextConfig text_config;             // all blocks, last output, quick_gelu/gelu, projection
    nn::WeightMap prior;                        // diffusers names, fp32
    nn::WeightMap text;                         // OpenCLIP/LDM names as load_clip_text reads them, fp32
    sampling::PriorSchedulerConfig scheduler;
    std::string tokenizer_dir;                  // prior_tokenizer/ when it has vocab.json and merges.txt
};

// True when `path` is a folder with a prior/ subfolder.
UNCLIP_CXX_API bool has_prior(const std::string& path);

// Loads and validates the four parts (weights in F32, F16 or BF16, converted to fp32). Throws
// Error(Status::io) for unreadable files and Error(Status::bad_model) naming the file and culprit:
// a missing subfolder or weight file, an unsupported config value (PriorTransformer options other
// than Karlo's: encoder_hid_proj_type "linear", added_emb_type "prd", 4 additional embeddings,
// SiLU time embedding, clip_embed_dim = embedding_dim; a text encoder hidden_act other than
// quick_gelu/gelu; see PriorSchedulerConfig::from_json for the scheduler), a missing or misshapen
// tensor, or text and prior widths that do not fit together.
UNCLIP_CXX_API PriorCheckpoint load_prior(const std::string& path);

// The architecture of a random prior (tests and demos).
struct RandomPriorConfig {
    nn::PriorTransformerConfig prior;
    int text_layers = 1, text_heads = 2;
    std::int64_t text_mlp_hidden = 64;
    std::string scheduler_json;  // prior_scheduler/scheduler_config.json; empty: Karlo's, as DDPMScheduler
};

// A prior as small as the architecture allows, whose image embeddings are `embedding_dim` wide
// (768 to condition unclip-l), with its own 514-token byte-level tokenizer (no merges).
UNCLIP_CXX_API RandomPriorConfig tiny_prior_config(std::int64_t embedding_dim = 768);

// Writes prior/, prior_text_encoder/, prior_tokenizer/ and prior_scheduler/ into `folder`
// (created if needed; other contents are left alone) with seeded random weights in fp32: the same
// seed gives the same files. Throws Error(Status::invalid_argument) for an inconsistent config and
// Error(Status::io) naming the path when writing fails.
UNCLIP_CXX_API void write_random_prior(const std::string& folder, const RandomPriorConfig& config, std::uint64_t seed);

// The sd21-unclip-l architecture shrunk as io::tiny_unclip_config shrinks -h (768-wide image
// embeddings, so that the loader recognises unclip-l and a prior's embeddings fit).
UNCLIP_CXX_API ModelConfig tiny_unclip_l_config();

}  // namespace unclip::io
