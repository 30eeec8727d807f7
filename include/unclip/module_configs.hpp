#pragma once
// From what a checkpoint says (io::ModelConfig) to the configs the modules are built with.
#include "unclip/io/model_config.hpp"
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

}  // namespace unclip
