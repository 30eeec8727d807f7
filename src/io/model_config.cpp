#include "unclip/io/model_config.hpp"

#include <sstream>
#include <utility>

namespace unclip::io {

const char* variant_name(Variant variant) noexcept {
    switch (variant) {
        case Variant::sd2: return "sd2";
        case Variant::unclip_h: return "unclip-h";
        case Variant::unclip_l: return "unclip-l";
    }
    return "unknown";
}
const char* prediction_name(Prediction prediction) noexcept { return prediction == Prediction::v ? "v" : "eps"; }
const char* vision_kind_name(VisionKind kind) noexcept {
    switch (kind) {
        case VisionKind::none: return "none";
        case VisionKind::openclip_h: return "openclip-h";
        case VisionKind::openai_l: return "openai-l";
    }
    return "unknown";
}
const char* component_name(Component component) noexcept {
    switch (component) {
        case Component::unet: return "unet";
        case Component::vae: return "vae";
        case Component::text: return "text";
        case Component::vision: return "vision";
    }
    return "unknown";
}
const char* ldm_prefix(Component component) noexcept {
    switch (component) {
        case Component::unet: return "model.diffusion_model.";
        case Component::vae: return "first_stage_model.";
        case Component::text: return "cond_stage_model.model.";
        case Component::vision: return "embedder.model.visual.";
    }
    return "";
}

// Spec §1.1 and §3: the yaml of the official checkpoints, the ViT-H-14 / ViT-L-14 configs.
ModelConfig reference_config(Variant variant) {
    ModelConfig c;
    c.variant = variant;
    c.prediction = Prediction::v;
    if (variant == Variant::sd2) {
        c.unet.adm_in_channels = 0;
        c.vision = VisionArch{};
        c.vision.kind = VisionKind::none;
    } else if (variant == Variant::unclip_h) {
        c.unet.adm_in_channels = 2048;
        c.vision = VisionArch{VisionKind::openclip_h, 224, 14, 1280, 32, 1024, 80};
    } else {
        c.unet.adm_in_channels = 1536;
        c.vision = VisionArch{VisionKind::openai_l, 224, 14, 1024, 24, 768, 64};
    }
    return c;
}

namespace {

using Dims = std::initializer_list<std::int64_t>;

// Appends specs while walking a module tree; `ldm` and `dif` are the current prefixes.
struct Table {
    std::vector<TensorSpec> specs;

    void add(const std::string& ldm, Shape shape, const std::string& dif, Transform t = Transform::copy) {
        specs.push_back({ldm, shape, dif.empty() ? std::vector<std::string>{} : std::vector<std::string>{dif}, t, false});
    }
    void optional(const std::string& ldm, Shape shape) { specs.push_back({ldm, shape, {}, Transform::copy, true}); }
    void weight_bias(const std::string& ldm, Shape weight, const std::string& dif, Transform t = Transform::copy) {
        add(ldm + ".weight", weight, dif.empty() ? dif : dif + ".weight", t);
        add(ldm + ".bias", Shape{weight[0]}, dif.empty() ? dif : dif + ".bias");
    }
    void norm(const std::string& ldm, std::int64_t c, const std::string& dif) { weight_bias(ldm, Shape{c}, dif); }
    void conv(const std::string& ldm, std::int64_t out, std::int64_t in, std::int64_t k, const std::string& dif) {
        weight_bias(ldm, Shape{out, in, k, k}, dif);
    }
    void linear(const std::string& ldm, std::int64_t out, std::int64_t in, const std::string& dif, bool bias = true) {
        if (bias) weight_bias(ldm, Shape{out, in}, dif);
        else add(ldm + ".weight", Shape{out, in}, dif + ".weight");
    }

    // openaimodel.py ResBlock <-> diffusers ResnetBlock2D (spec §2.4.1).
    void unet_resblock(const std::string& ldm, const std::string& dif, std::int64_t cin, std::int64_t cout,
                       std::int64_t emb) {
        norm(ldm + ".in_layers.0", cin, dif + ".norm1");
        conv(ldm + ".in_layers.2", cout, cin, 3, dif + ".conv1");
        linear(ldm + ".emb_layers.1", cout, emb, dif + ".time_emb_proj");
        norm(ldm + ".out_layers.0", cout, dif + ".norm2");
        conv(ldm + ".out_layers.3", cout, cout, 3, dif + ".conv2");
        if (cin != cout) conv(ldm + ".skip_connection", cout, cin, 1, dif + ".conv_shortcut");
    }

    // SpatialTransformer with linear projections; diffusers Transformer2DModel uses the same names.
    void transformer(const std::string& ldm, const std::string& dif, std::int64_t c, std::int64_t context, int depth) {
        norm(ldm + ".norm", c, dif + ".norm");
        linear(ldm + ".proj_in", c, c, dif + ".proj_in");
        for (int d = 0; d < depth; ++d) {
            const std::string sub = ".transformer_blocks." + std::to_string(d);
            const std::string l = ldm + sub, f = dif + sub;
            for (const char* q : {".attn1.to_q", ".attn1.to_k", ".attn1.to_v"}) linear(l + q, c, c, f + q, false);
            linear(l + ".attn1.to_out.0", c, c, f + ".attn1.to_out.0");
            linear(l + ".attn2.to_q", c, c, f + ".attn2.to_q", false);
            linear(l + ".attn2.to_k", c, context, f + ".attn2.to_k", false);
            linear(l + ".attn2.to_v", c, context, f + ".attn2.to_v", false);
            linear(l + ".attn2.to_out.0", c, c, f + ".attn2.to_out.0");
            linear(l + ".ff.net.0.proj", 8 * c, c, f + ".ff.net.0.proj");  // GEGLU: value and gate
            linear(l + ".ff.net.2", c, 4 * c, f + ".ff.net.2");
            for (const char* n : {".norm1", ".norm2", ".norm3"}) norm(l + n, c, f + n);
        }
        linear(ldm + ".proj_out", c, c, dif + ".proj_out");
    }

    // LDM model.py ResnetBlock <-> diffusers ResnetBlock2D without time embedding (spec §2.4.2).
    void vae_resblock(const std::string& ldm, const std::string& dif, std::int64_t cin, std::int64_t cout) {
        norm(ldm + ".norm1", cin, dif + ".norm1");
        conv(ldm + ".conv1", cout, cin, 3, dif + ".conv1");
        norm(ldm + ".norm2", cout, dif + ".norm2");
        conv(ldm + ".conv2", cout, cout, 3, dif + ".conv2");
        if (cin != cout) conv(ldm + ".nin_shortcut", cout, cin, 1, dif + ".conv_shortcut");
    }

    void vae_mid(const std::string& ldm, const std::string& dif, std::int64_t c) {
        vae_resblock(ldm + ".block_1", dif + ".resnets.0", c, c);
        norm(ldm + ".attn_1.norm", c, dif + ".attentions.0.group_norm");
        const std::pair<const char*, const char*> parts[] = {
            {".q", ".to_q"}, {".k", ".to_k"}, {".v", ".to_v"}, {".proj_out", ".to_out.0"}};
        for (const auto& [l, f] : parts) {
            add(ldm + ".attn_1" + l + ".weight", Shape{c, c, 1, 1}, dif + ".attentions.0" + f + ".weight", Transform::conv1x1);
            add(ldm + ".attn_1" + l + ".bias", Shape{c}, dif + ".attentions.0" + f + ".bias");
        }
        vae_resblock(ldm + ".block_2", dif + ".resnets.1", c, c);
    }

    // OpenCLIP ResidualAttentionBlock <-> transformers CLIPEncoderLayer (spec §2.4.3).
    void clip_block(const std::string& ldm, const std::string& dif, std::int64_t w, bool keep_diffusers) {
        const auto d = [&](const std::string& s) { return keep_diffusers ? dif + s : std::string(); };
        norm(ldm + ".ln_1", w, d(".layer_norm1"));
        std::vector<std::string> qkv_w, qkv_b;
        if (keep_diffusers)
            for (const char* p : {".self_attn.q_proj", ".self_attn.k_proj", ".self_attn.v_proj"}) {
                qkv_w.push_back(dif + p + ".weight");
                qkv_b.push_back(dif + p + ".bias");
            }
        const Transform fuse = keep_diffusers ? Transform::fuse_qkv : Transform::copy;
        specs.push_back({ldm + ".attn.in_proj_weight", Shape{3 * w, w}, qkv_w, fuse, !keep_diffusers});
        specs.push_back({ldm + ".attn.in_proj_bias", Shape{3 * w}, qkv_b, fuse, !keep_diffusers});
        linear(ldm + ".attn.out_proj", w, w, d(".self_attn.out_proj"));
        norm(ldm + ".ln_2", w, d(".layer_norm2"));
        linear(ldm + ".mlp.c_fc", 4 * w, w, d(".mlp.fc1"));
        linear(ldm + ".mlp.c_proj", w, 4 * w, d(".mlp.fc2"));
        if (!keep_diffusers)
            for (auto it = specs.end() - 12; it != specs.end(); ++it) it->optional = true;
    }
};

void require(bool ok, const std::string& what) {
    if (!ok) throw Error(Status::invalid_argument, "model config: " + what);
}

// Bounds far beyond any released model and small enough that a table stays small: a config.json
// asking for 10^8 res blocks (allow_reduced) would otherwise be enumerated for minutes.
constexpr int kMaxLevels = 8, kMaxBlocks = 64, kMaxLayers = 256, kMaxMultiplier = 64;
constexpr int kMaxWidth = 1 << 16, kMaxVocab = 1 << 20;
void require_bounded(const std::string& what, int value, int limit) {
    require(value <= limit, what + " " + std::to_string(value) + " is over the limit of " + std::to_string(limit));
}
void require_bounded_mult(const std::string& what, const std::vector<int>& mult) {
    require_bounded(what + " levels", static_cast<int>(mult.size()), kMaxLevels);
    for (const int m : mult) require(m > 0 && m <= kMaxMultiplier, what + " entries must be in [1, " + std::to_string(kMaxMultiplier) + "]");
}

void unet_table(const UnetArch& a, Table& t) {
    const auto levels = a.channel_mult.size();
    require(levels > 0 && a.attention.size() == levels, "UNet attention list must have one entry per level");
    require_bounded_mult("UNet channel_mult", a.channel_mult);
    require_bounded("UNet num_res_blocks", a.num_res_blocks, kMaxBlocks);
    require_bounded("UNet transformer_depth", a.transformer_depth, kMaxBlocks);
    for (const auto& [name, value] : {std::pair{"model_channels", a.model_channels}, std::pair{"context_dim", a.context_dim},
                                      std::pair{"adm_in_channels", a.adm_in_channels},
                                      std::pair{"in_channels", a.in_channels}, std::pair{"out_channels", a.out_channels}})
        require_bounded(std::string("UNet ") + name, value, kMaxWidth);
    require(a.model_channels > 0 && a.num_res_blocks > 0 && a.transformer_depth > 0 && a.context_dim > 0,
            "UNet sizes must be positive");
    const std::int64_t mc = a.model_channels, emb = a.time_embed_dim();
    t.linear("time_embed.0", emb, mc, "time_embedding.linear_1");
    t.linear("time_embed.2", emb, emb, "time_embedding.linear_2");
    if (a.adm_in_channels > 0) {
        t.linear("label_emb.0.0", emb, a.adm_in_channels, "class_embedding.linear_1");
        t.linear("label_emb.0.2", emb, emb, "class_embedding.linear_2");
    }
    t.conv("input_blocks.0.0", mc, a.in_channels, 3, "conv_in");

    std::vector<std::int64_t> skips{mc};
    std::int64_t ch = mc;
    int block = 1;
    for (std::size_t level = 0; level < levels; ++level) {
        const std::int64_t out = mc * a.channel_mult[level];
        const std::string down = "down_blocks." + std::to_string(level);
        for (int i = 0; i < a.num_res_blocks; ++i, ++block) {
            const std::string ldm = "input_blocks." + std::to_string(block);
            t.unet_resblock(ldm + ".0", down + ".resnets." + std::to_string(i), ch, out, emb);
            ch = out;
            if (a.attention[level])
                t.transformer(ldm + ".1", down + ".attentions." + std::to_string(i), ch, a.context_dim, a.transformer_depth);
            skips.push_back(ch);
        }
        if (level + 1 < levels) {
            t.conv("input_blocks." + std::to_string(block) + ".0.op", ch, ch, 3, down + ".downsamplers.0.conv");
            skips.push_back(ch);
            ++block;
        }
    }

    t.unet_resblock("middle_block.0", "mid_block.resnets.0", ch, ch, emb);
    t.transformer("middle_block.1", "mid_block.attentions.0", ch, a.context_dim, a.transformer_depth);
    t.unet_resblock("middle_block.2", "mid_block.resnets.1", ch, ch, emb);

    block = 0;
    for (std::size_t up = 0; up < levels; ++up) {
        const std::size_t level = levels - 1 - up;
        const std::int64_t out = mc * a.channel_mult[level];
        const std::string dif = "up_blocks." + std::to_string(up);
        for (int i = 0; i <= a.num_res_blocks; ++i, ++block) {
            const std::string ldm = "output_blocks." + std::to_string(block);
            const std::int64_t skip = skips.back();
            skips.pop_back();
            t.unet_resblock(ldm + ".0", dif + ".resnets." + std::to_string(i), ch + skip, out, emb);
            ch = out;
            int sub = 1;
            if (a.attention[level]) {
                t.transformer(ldm + ".1", dif + ".attentions." + std::to_string(i), ch, a.context_dim, a.transformer_depth);
                sub = 2;
            }
            if (level > 0 && i == a.num_res_blocks)
                t.conv(ldm + "." + std::to_string(sub) + ".conv", ch, ch, 3, dif + ".upsamplers.0.conv");
        }
    }
    t.norm("out.0", ch, "conv_norm_out");
    t.conv("out.2", a.out_channels, ch, 3, "conv_out");
}

void vae_table(const VaeArch& a, Table& t) {
    const auto levels = a.ch_mult.size();
    require_bounded_mult("VAE ch_mult", a.ch_mult);
    require_bounded("VAE num_res_blocks", a.num_res_blocks, kMaxBlocks);
    require_bounded("VAE ch", a.ch, kMaxWidth);
    require_bounded("VAE z_channels", a.z_channels, kMaxWidth);
    require_bounded("VAE in_channels", a.in_channels, kMaxWidth);
    require(levels > 0 && a.ch > 0 && a.num_res_blocks > 0 && a.z_channels > 0, "VAE sizes must be positive");
    std::int64_t ch = a.ch;
    t.conv("encoder.conv_in", ch, a.in_channels, 3, "encoder.conv_in");
    for (std::size_t level = 0; level < levels; ++level) {
        const std::int64_t out = std::int64_t{a.ch} * a.ch_mult[level];
        const std::string ldm = "encoder.down." + std::to_string(level), dif = "encoder.down_blocks." + std::to_string(level);
        for (int j = 0; j < a.num_res_blocks; ++j) {
            t.vae_resblock(ldm + ".block." + std::to_string(j), dif + ".resnets." + std::to_string(j), ch, out);
            ch = out;
        }
        if (level + 1 < levels) t.conv(ldm + ".downsample.conv", ch, ch, 3, dif + ".downsamplers.0.conv");
    }
    t.vae_mid("encoder.mid", "encoder.mid_block", ch);
    t.norm("encoder.norm_out", ch, "encoder.conv_norm_out");
    t.conv("encoder.conv_out", 2 * a.z_channels, ch, 3, "encoder.conv_out");
    t.conv("quant_conv", 2 * a.z_channels, 2 * a.z_channels, 1, "quant_conv");
    t.conv("post_quant_conv", a.z_channels, a.z_channels, 1, "post_quant_conv");

    t.conv("decoder.conv_in", ch, a.z_channels, 3, "decoder.conv_in");
    t.vae_mid("decoder.mid", "decoder.mid_block", ch);
    for (std::size_t up = 0; up < levels; ++up) {
        const std::size_t level = levels - 1 - up;
        const std::int64_t out = std::int64_t{a.ch} * a.ch_mult[level];
        const std::string ldm = "decoder.up." + std::to_string(level), dif = "decoder.up_blocks." + std::to_string(up);
        for (int j = 0; j <= a.num_res_blocks; ++j) {
            t.vae_resblock(ldm + ".block." + std::to_string(j), dif + ".resnets." + std::to_string(j), ch, out);
            ch = out;
        }
        if (level > 0) t.conv(ldm + ".upsample.conv", ch, ch, 3, dif + ".upsamplers.0.conv");
    }
    t.norm("decoder.norm_out", ch, "decoder.conv_norm_out");
    t.conv("decoder.conv_out", a.in_channels, ch, 3, "decoder.conv_out");
}

void text_table(const TextArch& a, Table& t) {
    require_bounded("text layers", a.layers, kMaxLayers);
    require_bounded("text width", a.width, kMaxWidth);
    require_bounded("text vocab", a.vocab, kMaxVocab);
    require_bounded("text context_length", a.context_length, kMaxWidth);
    require(a.width > 0 && a.layers > 0 && a.vocab > 0 && a.context_length > 0, "text sizes must be positive");
    const std::int64_t w = a.width;
    t.add("token_embedding.weight", Shape{a.vocab, w}, "text_model.embeddings.token_embedding.weight");
    t.add("positional_embedding", Shape{a.context_length, w}, "text_model.embeddings.position_embedding.weight");
    for (int i = 0; i < a.layers; ++i)
        t.clip_block("transformer.resblocks." + std::to_string(i), "text_model.encoder.layers." + std::to_string(i), w, true);
    // The LDM file keeps the whole OpenCLIP tower; SD 2.x conditioning never reads its last block.
    t.clip_block("transformer.resblocks." + std::to_string(a.layers), "", w, false);
    t.norm("ln_final", w, "text_model.final_layer_norm");
    t.optional("text_projection", Shape{w, w});
    t.optional("logit_scale", Shape{});
}

void vision_table(const VisionArch& a, Table& t) {
    require(a.kind != VisionKind::none, "no image tower in this configuration");
    require_bounded("vision layers", a.layers, kMaxLayers);
    require_bounded("vision width", a.width, kMaxWidth);
    require_bounded("vision embed_dim", a.embed_dim, kMaxWidth);
    require_bounded("vision image_size", a.image_size, kMaxWidth);
    require(a.width > 0 && a.layers > 0 && a.patch > 0 && a.image_size >= a.patch && a.embed_dim > 0,
            "image tower sizes must be positive");
    const std::int64_t w = a.width;
    t.add("conv1.weight", Shape{w, 3, a.patch, a.patch}, "vision_model.embeddings.patch_embedding.weight");
    t.add("class_embedding", Shape{w}, "vision_model.embeddings.class_embedding");
    t.add("positional_embedding", Shape{a.tokens(), w}, "vision_model.embeddings.position_embedding.weight");
    t.norm("ln_pre", w, "vision_model.pre_layrnorm");  // sic: transformers' spelling
    for (int i = 0; i < a.layers; ++i)
        t.clip_block("transformer.resblocks." + std::to_string(i), "vision_model.encoder.layers." + std::to_string(i), w, true);
    t.norm("ln_post", w, "vision_model.post_layernorm");
    t.add("proj", Shape{w, a.embed_dim}, "visual_projection.weight", Transform::transpose);
}

}  // namespace

std::vector<TensorSpec> tensor_table(const ModelConfig& config, Component component) {
    Table t;
    switch (component) {
        case Component::unet: unet_table(config.unet, t); break;
        case Component::vae: vae_table(config.vae, t); break;
        case Component::text: text_table(config.text, t); break;
        case Component::vision: vision_table(config.vision, t); break;
    }
    return std::move(t.specs);
}

namespace {
std::string list(const std::vector<int>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
    return s + "]";
}
}  // namespace

std::string describe(const ModelConfig& c) {
    std::ostringstream out;
    out << variant_name(c.variant) << (c.reduced ? " (reduced)" : "") << ": prediction " << prediction_name(c.prediction)
        << ", UNet " << c.unet.model_channels << "x" << list(c.unet.channel_mult) << " context " << c.unet.context_dim
        << " ADM " << c.unet.adm_in_channels << ", VAE " << c.vae.ch << "x" << list(c.vae.ch_mult) << ", text "
        << c.text.width << "x" << c.text.layers << ", vision " << vision_kind_name(c.vision.kind);
    if (c.vision.kind != VisionKind::none)
        out << " " << c.vision.width << "x" << c.vision.layers << " -> " << c.vision.embed_dim;
    return out.str();
}

}  // namespace unclip::io
