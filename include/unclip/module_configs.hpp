#pragma once
// From what a checkpoint says (io::ModelConfig) to the configs the modules are built with.
#include <string>

#include "unclip/io/model_config.hpp"
#include "unclip/nn/clip_text.hpp"
#include "unclip/nn/clip_vision.hpp"
#include "unclip/nn/unet.hpp"
#include "unclip/nn/vae.hpp"

namespace unclip {

inline nn::UNetConfig unet_config(const io::UnetArch& a) {
    nn::UNetConfig c;
    c.in_channels = a.in_channels;
    c.out_channels = a.out_channels;
    c.model_channels = a.model_channels;
    c.channel_mult = a.channel_mult;
    c.num_res_blocks = a.num_res_blocks;
    c.attention_levels = a.attention;
    c.head_channels = a.head_channels;
    c.context_dim = a.context_dim;
    c.transformer_depth = a.transformer_depth;
    c.adm_in_channels = a.adm_in_channels;
    return c;
}

inline nn::VaeConfig vae_config(const io::VaeArch& a) {
    nn::VaeConfig c;
    c.image_channels = a.in_channels;
    c.ch = a.ch;
    c.ch_mult = a.ch_mult;
    c.num_res_blocks = a.num_res_blocks;
    c.z_channels = a.z_channels;
    c.embed_dim = a.z_channels;
    return c;
}

// The text tower reads its layer count and projection off the weights: LDM files keep all
// OpenCLIP blocks (SD 2.x reads the penultimate) and text_projection; a diffusers text_encoder/
// keeps only the blocks that are used, reads its last, and has no projection.
inline nn::ClipTextConfig clip_text_config(const io::TextArch& a, const nn::WeightMap& weights) {
    nn::ClipTextConfig c;
    c.vocab = a.vocab;
    c.context = a.context_length;
    c.width = a.width;
    c.mlp_hidden = 4 * a.width;
    c.heads = a.width / a.head_width;
    const bool has_extra_block = weights.find("transformer.resblocks." + std::to_string(a.layers) + ".ln_1.weight");
    c.layers = a.layers + (has_extra_block ? 1 : 0);
    c.output_layer = has_extra_block ? -2 : -1;
    c.embed_dim = weights.find("text_projection") && has_extra_block ? a.width : 0;
    return c;
}

inline nn::ClipVisionConfig clip_vision_config(const io::VisionArch& a) {
    nn::ClipVisionConfig c = a.kind == io::VisionKind::openai_l ? nn::ClipVisionConfig::openai_vit_l14()
                                                                : nn::ClipVisionConfig::open_clip_vit_h14();
    c.image_size = a.image_size;
    c.patch = a.patch;
    c.width = a.width;
    c.mlp_hidden = 4 * a.width;
    c.embed_dim = a.embed_dim;
    c.layers = a.layers;
    c.heads = a.width / a.head_width;
    return c;
}

}  // namespace unclip
