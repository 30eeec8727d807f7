#pragma once
// Module configs of the golden fixtures written by tests/golden/*.py (their "config" metadata).
#include <vector>

#include <nlohmann/json.hpp>

#include "unclip/nn/clip_text.hpp"
#include "unclip/nn/clip_vision.hpp"
#include "unclip/nn/vae.hpp"
#include "unet_fixture.hpp"

namespace unclip::test {

inline nn::Activation clip_activation(const nlohmann::json& j) {
    return j.at("activation") == "quick_gelu" ? nn::Activation::quick_gelu : nn::Activation::gelu;
}

inline nn::ClipTextConfig text_config(const nlohmann::json& j) {
    nn::ClipTextConfig c;
    c.vocab = j.at("vocab");
    c.context = j.at("context");
    c.width = j.at("width");
    c.heads = j.at("heads");
    c.layers = j.at("layers");
    c.mlp_hidden = j.at("mlp_hidden");
    c.embed_dim = j.at("embed_dim");
    c.end_id = j.at("end_id");
    c.activation = clip_activation(j);
    c.eps = j.at("eps");
    return c;
}

inline nn::ClipVisionConfig vision_config(const nlohmann::json& j) {
    nn::ClipVisionConfig c;
    c.image_size = j.at("image_size");
    c.patch = j.at("patch");
    c.width = j.at("width");
    c.heads = j.at("heads");
    c.layers = j.at("layers");
    c.mlp_hidden = j.at("mlp_hidden");
    c.embed_dim = j.at("embed_dim");
    c.activation = clip_activation(j);
    c.eps = j.at("eps");
    return c;
}

inline nn::VaeConfig vae_config(const nlohmann::json& j) {
    nn::VaeConfig cfg;
    cfg.ch = j.at("ch");
    cfg.ch_mult = j.at("ch_mult").get<std::vector<int>>();
    cfg.num_res_blocks = j.at("num_res_blocks");
    cfg.z_channels = j.at("z_channels");
    cfg.embed_dim = j.at("embed_dim");
    cfg.groups = j.at("groups");
    return cfg;
}

}  // namespace unclip::test
