#pragma once
// The UNet config of a golden fixture written by tests/golden/unet.py (its "config" metadata).
#include <vector>

#include <nlohmann/json.hpp>

#include "unclip/nn/unet.hpp"

namespace unclip::test {

inline nn::UNetConfig unet_config(const nlohmann::json& j) {
    nn::UNetConfig cfg;
    cfg.model_channels = j.at("model_channels");
    cfg.channel_mult = j.at("channel_mult").get<std::vector<int>>();
    cfg.num_res_blocks = j.at("num_res_blocks");
    cfg.attention_levels = j.at("attention_levels").get<std::vector<bool>>();
    cfg.head_channels = j.at("head_channels");
    cfg.context_dim = j.at("context_dim");
    cfg.adm_in_channels = j.at("adm_in_channels");
    cfg.groups = j.at("groups");
    return cfg;
}

}  // namespace unclip::test
