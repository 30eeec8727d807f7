#include "unclip/io/checkpoint.hpp"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/tensor_source.hpp"
#include "unclip/io/ckpt.hpp"
#include "unclip/io/safetensors.hpp"

namespace unclip::io {

const char* layout_name(Layout layout) noexcept {
    switch (layout) {
        case Layout::single_file: return "single-file";
        case Layout::ckpt: return "ckpt";
        case Layout::diffusers: return "diffusers";
    }
    return "unknown";
}

const nn::WeightMap& Checkpoint::weights(Component component) const noexcept {
    switch (component) {
        case Component::unet: return unet;
        case Component::vae: return vae;
        case Component::text: return text;
        case Component::vision: return vision;
    }
    return unet;
}

namespace detail {

void fail(const std::string& label, const std::string& what) {
    throw Error(Status::bad_model, "open '" + label + "': " + what);
}

std::string dims_str(const std::vector<std::int64_t>& dims) {
    std::string s = "[";
    for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
}

TensorSource open_source(const std::string& path) {
    char magic[4] = {};
    {
        std::ifstream in(path, std::ios::binary);
        if (!in) throw Error(Status::io, "open '" + path + "': cannot open for reading");
        in.read(magic, 4);
    }
    TensorSource source;
    source.label = path;
    if (std::memcmp(magic, "PK", 2) == 0) {
        const CkptFile file = CkptFile::open(path);
        source.zip = true;
        for (const auto& e : file.entries()) source.tensors[e.name] = {e.dims, e.dtype_name, e.dtype};
        source.get = [file](const std::string& name) { return file.get(name); };
        return source;
    }
    if (static_cast<unsigned char>(magic[0]) == 0x80 && magic[1] <= 5)
        fail(path, "a legacy (pre-1.6) PyTorch pickle; re-save it with a current torch.save or as safetensors");
    const SafetensorsFile file = SafetensorsFile::open(path);
    for (const auto& e : file.entries()) source.tensors[e.name] = {e.dims, e.dtype_name, e.dtype};
    source.get = [file](const std::string& name) { return file.get(name); };
    return source;
}

namespace {

bool same_dims(const std::vector<std::int64_t>& dims, const Shape& shape) {
    if (dims.size() != static_cast<std::size_t>(shape.rank())) return false;
    for (int i = 0; i < shape.rank(); ++i)
        if (dims[static_cast<std::size_t>(i)] != shape[i]) return false;
    return true;
}

std::vector<std::int64_t> shape_dims(const Shape& shape) { return {shape.begin(), shape.end()}; }

void check_tensor(const TensorSource& source, const std::string& name, const SourceInfo& info, const Shape& expected) {
    if (!same_dims(info.dims, expected))
        fail(source.label, "tensor '" + name + "': shape " + dims_str(info.dims) + ", expected " + expected.str());
    if (!info.dtype)
        fail(source.label, "tensor '" + name + "': dtype " + info.dtype_name + " not supported (F32, F16 and BF16 are)");
}

class MissingList {
public:
    void add(const std::string& name) {
        if (names_.size() < 5) names_.push_back(name);
        ++count_;
    }
    void raise_if_any(const std::string& label, const std::string& what) const {
        if (!count_) return;
        std::string list;
        for (const auto& n : names_) list += (list.empty() ? "" : ", ") + n;
        if (count_ > names_.size()) list += ", ... (" + std::to_string(count_ - names_.size()) + " more)";
        fail(label, what + ": " + std::to_string(count_) + " tensor" + (count_ == 1 ? "" : "s") + " missing: " + list);
    }

private:
    std::vector<std::string> names_;
    std::size_t count_ = 0;
};

// Copies a [a, b] tensor of any dtype into a new contiguous [b, a] one.
Tensor transposed(const Tensor& src) {
    const Tensor in = src.contiguous();
    const std::int64_t rows = in.dim(0), cols = in.dim(1);
    Tensor out = Tensor::empty(in.dtype(), Shape{cols, rows});
    const std::size_t size = dtype_size(in.dtype());
    const auto* s = static_cast<const std::byte*>(in.raw_data());
    auto* d = static_cast<std::byte*>(out.raw_data());
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t c = 0; c < cols; ++c)
            std::memcpy(d + static_cast<std::size_t>(c * rows + r) * size, s + static_cast<std::size_t>(r * cols + c) * size,
                        size);
    return out;
}

}  // namespace

std::vector<TensorSpec> table_for(const std::string& label, const ModelConfig& config, Component component) {
    try {
        return tensor_table(config, component);
    } catch (const Error& e) {
        if (e.status() != Status::invalid_argument) throw;
        fail(label, std::string(component_name(component)) + ": " + e.what());
    }
}

void collect_ldm(const TensorSource& source, const std::string& prefix, const std::vector<TensorSpec>& table,
                 nn::WeightMap& out) {
    MissingList missing;
    for (const auto& spec : table) {
        const std::string name = prefix + spec.name;
        const SourceInfo* info = source.find(name);
        if (!info) {
            if (!spec.optional) missing.add(name);
            continue;
        }
        check_tensor(source, name, *info, spec.shape);
    }
    missing.raise_if_any(source.label, "weights incomplete");
    for (const auto& spec : table)
        if (source.has(prefix + spec.name)) out.insert(spec.name, source.get(prefix + spec.name));
}

void collect_diffusers(const TensorSource& source, const std::string& prefix, const std::vector<TensorSpec>& table,
                       nn::WeightMap& out) {
    MissingList missing;
    for (const auto& spec : table) {
        if (spec.diffusers.empty()) continue;  // LDM-only tensors, not needed for inference
        for (const auto& part : spec.diffusers) {
            const std::string name = prefix + part;
            const SourceInfo* info = source.find(name);
            if (!info) {
                missing.add(name);
                continue;
            }
            std::vector<std::int64_t> expected = shape_dims(spec.shape);
            if (spec.transform == Transform::conv1x1) expected.resize(2);
            if (spec.transform == Transform::transpose) std::swap(expected[0], expected[1]);
            if (spec.transform == Transform::fuse_qkv) expected[0] /= 3;
            check_tensor(source, name, *info, Shape::from_range(expected.begin(), expected.end()));
        }
    }
    missing.raise_if_any(source.label, "weights incomplete");

    for (const auto& spec : table) {
        if (spec.diffusers.empty()) continue;
        const std::string first = prefix + spec.diffusers[0];
        switch (spec.transform) {
            case Transform::copy: out.insert(spec.name, source.get(first)); break;
            case Transform::conv1x1: out.insert(spec.name, source.get(first).contiguous().reshape(spec.shape)); break;
            case Transform::transpose: out.insert(spec.name, transposed(source.get(first))); break;
            case Transform::fuse_qkv: {
                // q, k and v become rows [0, w), [w, 2w), [2w, 3w) of OpenCLIP's in_proj.
                const Tensor q = source.get(first).contiguous();
                Tensor fused = Tensor::empty(q.dtype(), spec.shape);
                auto* dst = static_cast<std::byte*>(fused.raw_data());
                for (std::size_t i = 0; i < 3; ++i) {
                    const Tensor part = i == 0 ? q : source.get(prefix + spec.diffusers[i]).contiguous();
                    if (part.dtype() != q.dtype())
                        fail(source.label, "tensor '" + prefix + spec.diffusers[i] + "': dtype " +
                                               std::string(dtype_name(part.dtype())) + " differs from its q projection");
                    std::memcpy(dst + i * part.nbytes(), part.raw_data(), part.nbytes());
                }
                out.insert(spec.name, fused);
                break;
            }
        }
    }
}

namespace {
// A tensor detection reads a size from: absent or of too low a rank, it is named as missing.
void need(const TensorSource& s, const std::string& name, std::size_t rank) {
    const SourceInfo* info = s.find(name);
    if (!info) fail(s.label, "'" + name + "' is missing");
    if (info->dims.size() < rank)
        fail(s.label, "tensor '" + name + "': shape " + dims_str(info->dims) + " has fewer than " +
                          std::to_string(rank) + " dimensions");
}
}  // namespace

std::optional<VisionArch> detect_vision_ldm(const TensorSource& s, const std::string& p) {
    if (!s.has(p + "conv1.weight")) return std::nullopt;
    need(s, p + "conv1.weight", 4);
    need(s, p + "positional_embedding", 2);
    need(s, p + "proj", 2);
    VisionArch a;
    a.width = static_cast<int>(s.dim(p + "conv1.weight", 0));
    a.patch = static_cast<int>(s.dim(p + "conv1.weight", 2));
    const auto tokens = s.dim(p + "positional_embedding", 0);
    a.image_size = a.patch * static_cast<int>(std::lround(std::sqrt(static_cast<double>(std::max<std::int64_t>(tokens - 1, 0)))));
    a.embed_dim = static_cast<int>(s.dim(p + "proj", 1));
    a.layers = 0;
    while (s.has(p + "transformer.resblocks." + std::to_string(a.layers) + ".ln_1.weight")) ++a.layers;
    return a;
}

std::optional<VisionArch> detect_vision_hf(const TensorSource& s, const std::string& p) {
    const std::string patch = p + "vision_model.embeddings.patch_embedding.weight";
    if (!s.has(patch)) return std::nullopt;
    need(s, patch, 4);
    need(s, p + "vision_model.embeddings.position_embedding.weight", 2);
    need(s, p + "visual_projection.weight", 2);
    VisionArch a;
    a.width = static_cast<int>(s.dim(patch, 0));
    a.patch = static_cast<int>(s.dim(patch, 2));
    const auto tokens = s.dim(p + "vision_model.embeddings.position_embedding.weight", 0);
    a.image_size = a.patch * static_cast<int>(std::lround(std::sqrt(static_cast<double>(std::max<std::int64_t>(tokens - 1, 0)))));
    a.embed_dim = static_cast<int>(s.dim(p + "visual_projection.weight", 0));
    a.layers = 0;
    while (s.has(p + "vision_model.encoder.layers." + std::to_string(a.layers) + ".layer_norm1.weight")) ++a.layers;
    return a;
}

void classify_vision(VisionArch& a, VisionKind fallback) {
    const VisionArch h = reference_config(Variant::unclip_h).vision, l = reference_config(Variant::unclip_l).vision;
    if (a.width == h.width && a.layers == h.layers) a.kind = VisionKind::openclip_h;
    else if (a.width == l.width && a.layers == l.layers) a.kind = VisionKind::openai_l;
    else if (fallback != VisionKind::none) a.kind = fallback;
    else a.kind = a.embed_dim == l.embed_dim ? VisionKind::openai_l : VisionKind::openclip_h;
    a.head_width = a.kind == VisionKind::openclip_h ? h.head_width : l.head_width;
}

Variant variant_from_adm(const std::string& label, int adm) {
    if (adm == 0) return Variant::sd2;
    if (adm == 2048) return Variant::unclip_h;
    if (adm == 1536) return Variant::unclip_l;
    fail(label, "unknown variant: the UNet's ADM input (label_emb) is " + std::to_string(adm) +
                    " wide; sd21-unclip-h has 2048, sd21-unclip-l 1536, plain SD 2.x none");
}

namespace {
std::string vec(const std::vector<int>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
    return s + "]";
}
std::string vec(const std::vector<bool>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::string(v[i] ? "1" : "0");
    return s + "]";
}
template <class T>
void diff(std::string& out, const char* what, const T& found, const T& expected) {
    if (out.empty() && !(found == expected)) {
        if constexpr (std::is_same_v<T, int>) out = std::string(what) + " " + std::to_string(found) + " (expected " + std::to_string(expected) + ")";
        else out = std::string(what) + " " + vec(found) + " (expected " + vec(expected) + ")";
    }
}
}  // namespace

std::string first_difference(const ModelConfig& f, const ModelConfig& r) {
    std::string d;
    diff(d, "UNet in_channels", f.unet.in_channels, r.unet.in_channels);
    diff(d, "UNet out_channels", f.unet.out_channels, r.unet.out_channels);
    diff(d, "UNet model_channels", f.unet.model_channels, r.unet.model_channels);
    diff(d, "UNet channel_mult", f.unet.channel_mult, r.unet.channel_mult);
    diff(d, "UNet attention levels", f.unet.attention, r.unet.attention);
    diff(d, "UNet num_res_blocks", f.unet.num_res_blocks, r.unet.num_res_blocks);
    diff(d, "UNet transformer_depth", f.unet.transformer_depth, r.unet.transformer_depth);
    diff(d, "UNet context_dim", f.unet.context_dim, r.unet.context_dim);
    diff(d, "VAE ch", f.vae.ch, r.vae.ch);
    diff(d, "VAE ch_mult", f.vae.ch_mult, r.vae.ch_mult);
    diff(d, "VAE num_res_blocks", f.vae.num_res_blocks, r.vae.num_res_blocks);
    diff(d, "VAE z_channels", f.vae.z_channels, r.vae.z_channels);
    diff(d, "text width", f.text.width, r.text.width);
    diff(d, "text layers", f.text.layers, r.text.layers);
    diff(d, "text vocab", f.text.vocab, r.text.vocab);
    diff(d, "text context_length", f.text.context_length, r.text.context_length);
    if (f.vision.kind != VisionKind::none && r.vision.kind != VisionKind::none) {
        diff(d, "vision width", f.vision.width, r.vision.width);
        diff(d, "vision layers", f.vision.layers, r.vision.layers);
        diff(d, "vision patch", f.vision.patch, r.vision.patch);
        diff(d, "vision image_size", f.vision.image_size, r.vision.image_size);
        diff(d, "vision embed_dim", f.vision.embed_dim, r.vision.embed_dim);
    }
    return d;
}

namespace {

// A vision file, or a diffusers image_encoder folder.
TensorSource open_vision_file(const std::string& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) return open_weights(path, "model", "");
    return open_source(path);
}

// Reads an image tower file in any supported key layout into LDM names.
nn::WeightMap vision_from_source(const TensorSource& s, VisionArch& arch, VisionKind fallback) {
    nn::WeightMap out;
    ModelConfig config;
    for (const char* prefix : {"embedder.model.visual.", "visual.", "model.visual.", ""}) {
        if (auto a = detect_vision_ldm(s, prefix)) {
            classify_vision(*a, fallback);
            config.vision = *a;
            collect_ldm(s, prefix, table_for(s.label, config, Component::vision), out);
            arch = *a;
            return out;
        }
    }
    if (auto a = detect_vision_hf(s, "")) {
        classify_vision(*a, fallback);
        config.vision = *a;
        collect_diffusers(s, "", table_for(s.label, config, Component::vision), out);
        arch = *a;
        return out;
    }
    fail(s.label, "no CLIP image tower found (expected 'visual.conv1.weight', 'conv1.weight' or "
                  "'vision_model.embeddings.patch_embedding.weight')");
}

void check_reduced_vision(const std::string& label, const VisionArch& a, bool allow_reduced) {
    if (allow_reduced) return;
    for (Variant v : {Variant::unclip_h, Variant::unclip_l}) {
        const VisionArch r = reference_config(v).vision;
        if (a.width == r.width && a.layers == r.layers && a.patch == r.patch && a.image_size == r.image_size &&
            a.embed_dim == r.embed_dim)
            return;
    }
    fail(label, "unknown image tower: width " + std::to_string(a.width) + ", " + std::to_string(a.layers) +
                    " layers, embedding " + std::to_string(a.embed_dim) + " is neither ViT-H/14 nor ViT-L/14");
}

}  // namespace

UnetArch detect_unet(const TensorSource& s, const std::string& p) {
    UnetArch a;
    const std::string conv_in = p + "input_blocks.0.0.weight";
    if (!s.has(conv_in)) fail(s.label, "no UNet found: '" + conv_in + "' is missing");
    if (s.find(conv_in)->dims.size() != 4) fail(s.label, "tensor '" + conv_in + "': not a 4-D convolution weight");
    a.model_channels = static_cast<int>(s.dim(conv_in, 0));
    a.in_channels = static_cast<int>(s.dim(conv_in, 1));
    if (s.has(p + "out.2.weight")) a.out_channels = static_cast<int>(s.dim(p + "out.2.weight", 0));
    a.adm_in_channels = s.has(p + "label_emb.0.0.weight") ? static_cast<int>(s.dim(p + "label_emb.0.0.weight", 1)) : 0;
    a.channel_mult.clear();
    a.attention.clear();
    if (a.model_channels <= 0) fail(s.label, "tensor '" + conv_in + "': no output channels");

    // Walk the input blocks as ComfyUI model_detection.py does: a block with "0.op" closes a level.
    std::vector<int> per_level{0};
    int context = -1, depth = -1;
    for (int block = 1;; ++block) {
        const std::string b = p + "input_blocks." + std::to_string(block) + ".";
        if (s.has(b + "0.op.weight")) {
            per_level.push_back(0);
            continue;
        }
        if (!s.has(b + "0.out_layers.3.weight")) break;
        const auto out = s.dim(b + "0.out_layers.3.weight", 0);
        const bool attn = s.has(b + "1.proj_in.weight");
        const int mult = static_cast<int>(out / a.model_channels);
        if (per_level.back() == 0) {
            a.channel_mult.push_back(mult);
            a.attention.push_back(attn);
        } else if (mult != a.channel_mult.back() || attn != a.attention.back()) {
            fail(s.label, "unsupported UNet: the blocks of level " + std::to_string(per_level.size() - 1) +
                              " differ in width or attention");
        }
        ++per_level.back();
        if (attn && depth < 0) {
            depth = 0;
            while (s.has(b + "1.transformer_blocks." + std::to_string(depth) + ".norm1.weight")) ++depth;
            context = static_cast<int>(s.dim(b + "1.transformer_blocks.0.attn2.to_k.weight", 1));
        }
    }
    if (a.channel_mult.empty()) fail(s.label, "no UNet found: no residual block under '" + p + "input_blocks.'");
    if (per_level.back() == 0) per_level.pop_back();
    for (int n : per_level)
        if (n != per_level[0]) fail(s.label, "unsupported UNet: levels have different numbers of residual blocks");
    a.num_res_blocks = per_level[0];
    if (depth < 0) {  // no attention on the input side: read the middle block's
        depth = 0;
        while (s.has(p + "middle_block.1.transformer_blocks." + std::to_string(depth) + ".norm1.weight")) ++depth;
        context = static_cast<int>(s.dim(p + "middle_block.1.transformer_blocks.0.attn2.to_k.weight", 1));
    }
    a.transformer_depth = std::max(depth, 1);
    a.context_dim = context > 0 ? context : a.context_dim;
    return a;
}

VaeArch detect_vae(const TensorSource& s, const std::string& p) {
    VaeArch a;
    const std::string conv_in = p + "encoder.conv_in.weight";
    if (!s.has(conv_in)) fail(s.label, "no VAE found: '" + conv_in + "' is missing");
    need(s, conv_in, 4);
    a.ch = static_cast<int>(s.dim(conv_in, 0));
    a.in_channels = static_cast<int>(s.dim(conv_in, 1));
    a.ch_mult.clear();
    while (s.has(p + "encoder.down." + std::to_string(a.ch_mult.size()) + ".block.0.conv2.weight"))
        a.ch_mult.push_back(static_cast<int>(
            s.dim(p + "encoder.down." + std::to_string(a.ch_mult.size()) + ".block.0.conv2.weight", 0) / std::max(a.ch, 1)));
    a.num_res_blocks = 0;
    while (s.has(p + "encoder.down.0.block." + std::to_string(a.num_res_blocks) + ".conv1.weight")) ++a.num_res_blocks;
    if (s.has(p + "post_quant_conv.weight")) a.z_channels = static_cast<int>(s.dim(p + "post_quant_conv.weight", 0));
    if (a.ch_mult.empty() || a.num_res_blocks == 0) fail(s.label, "no VAE found: no encoder blocks under '" + p + "'");
    return a;
}

TextArch detect_text(const TensorSource& s, const std::string& p) {
    TextArch a;
    const std::string tokens = p + "token_embedding.weight";
    if (!s.has(tokens)) fail(s.label, "no text encoder found: '" + tokens + "' is missing");
    need(s, tokens, 2);
    need(s, p + "positional_embedding", 2);
    a.vocab = static_cast<int>(s.dim(tokens, 0));
    a.width = static_cast<int>(s.dim(tokens, 1));
    a.context_length = static_cast<int>(s.dim(p + "positional_embedding", 0));
    int stored = 0;
    while (s.has(p + "transformer.resblocks." + std::to_string(stored) + ".ln_1.weight")) ++stored;
    if (stored < 2) fail(s.label, "text encoder under '" + p + "' has " + std::to_string(stored) + " blocks, needs at least 2");
    a.layers = stored - 1;  // SD 2.x conditions on the penultimate block
    return a;
}

// ComfyUI supported_models.py SD20.model_type: a v-model's last transformer norm1 bias has a
// population std above 0.09.
Prediction guess_prediction(const TensorSource& s, const std::string& prefix, const UnetArch& a) {
    const int last = static_cast<int>(a.channel_mult.size()) * (a.num_res_blocks + 1) - 1;
    const std::string name = prefix + "output_blocks." + std::to_string(last) + ".1.transformer_blocks.0.norm1.bias";
    const SourceInfo* info = s.find(name);
    if (!info || !info->dtype) return Prediction::eps;
    const Tensor bias = s.get(name).to(DType::f32);
    const float* v = bias.data<const float>();
    const auto n = bias.numel();
    if (n == 0) return Prediction::eps;
    double mean = 0, sq = 0;
    for (std::int64_t i = 0; i < n; ++i) mean += v[i];
    mean /= static_cast<double>(n);
    for (std::int64_t i = 0; i < n; ++i) sq += (v[i] - mean) * (v[i] - mean);
    return std::sqrt(sq / static_cast<double>(n)) > 0.09 ? Prediction::v : Prediction::eps;
}

namespace {

Checkpoint load_ldm(const std::string& path, const LoadOptions& options) {
    const TensorSource s = open_source(path);
    Checkpoint ckpt;
    ckpt.path = path;
    ckpt.layout = s.zip ? Layout::ckpt : Layout::single_file;
    ModelConfig& c = ckpt.config;
    c.unet = detect_unet(s, ldm_prefix(Component::unet));
    c.variant = variant_from_adm(path, c.unet.adm_in_channels);
    c.vae = detect_vae(s, ldm_prefix(Component::vae));
    c.text = detect_text(s, ldm_prefix(Component::text));
    c.vision.kind = VisionKind::none;
    if (auto v = detect_vision_ldm(s, ldm_prefix(Component::vision))) {
        if (c.variant == Variant::sd2) fail(path, "an image tower without an ADM input: not an unCLIP UNet");
        classify_vision(*v, c.variant == Variant::unclip_h ? VisionKind::openclip_h : VisionKind::openai_l);
        c.vision = *v;
    }
    if (options.prediction) c.prediction = *options.prediction;
    else if (c.variant == Variant::sd2) c.prediction = guess_prediction(s, ldm_prefix(Component::unet), c.unet);
    else c.prediction = Prediction::v;  // both official unCLIP models are v-prediction fine-tunes

    finish_config(ckpt, options);  // before reading weights: an unknown variant is the clearer error
    for (Component comp : {Component::unet, Component::vae, Component::text})
        collect_ldm(s, ldm_prefix(comp), table_for(path, c, comp), comp == Component::unet ? ckpt.unet
                                                                  : comp == Component::vae ? ckpt.vae : ckpt.text);
    if (c.vision.kind != VisionKind::none && ckpt.vision.size() == 0)
        collect_ldm(s, ldm_prefix(Component::vision), table_for(path, c, Component::vision), ckpt.vision);
    return ckpt;
}

}  // namespace

void finish_config(Checkpoint& ckpt, const LoadOptions& options) {
    ModelConfig& c = ckpt.config;
    const std::string& label = ckpt.path;
    if (!options.clip_vision_path.empty()) {
        VisionArch arch;
        const TensorSource s = open_vision_file(options.clip_vision_path);
        const VisionKind fallback = c.variant == Variant::unclip_h   ? VisionKind::openclip_h
                                    : c.variant == Variant::unclip_l ? VisionKind::openai_l
                                                                     : VisionKind::none;
        ckpt.vision = vision_from_source(s, arch, fallback);
        check_reduced_vision(options.clip_vision_path, arch, options.allow_reduced);
        c.vision = arch;
    }
    if (c.variant != Variant::sd2 && c.vision.kind != VisionKind::none && c.vision.embed_dim != c.noise_aug_dim())
        fail(label, "the image tower embeds to " + std::to_string(c.vision.embed_dim) + " features but the UNet's ADM input (" +
                        std::to_string(c.unet.adm_in_channels) + ") expects " + std::to_string(c.noise_aug_dim()));
    const std::string d = first_difference(c, reference_config(c.variant));
    c.reduced = !d.empty();
    if (c.reduced && !options.allow_reduced)
        fail(label, std::string("unknown variant: the ADM input says ") + variant_name(c.variant) + " but " + d +
                        "; reduced test models need LoadOptions::allow_reduced");
}

}  // namespace detail

Checkpoint load_checkpoint(const std::string& path, const LoadOptions& options) {
    namespace fs = std::filesystem;
    if (path.empty()) {
        if (options.unet_path.empty())
            throw Error(Status::invalid_argument, "load_checkpoint: neither a checkpoint path nor a unet_path");
        return detail::load_from_components(options);
    }
    std::error_code ec;
    Checkpoint ckpt = fs::is_directory(path, ec) ? detail::load_diffusers(path, options) : detail::load_ldm(path, options);
    detail::replace_components(ckpt, options);
    return ckpt;
}

nn::WeightMap load_clip_vision(const std::string& path, VisionArch& arch, bool allow_reduced) {
    const detail::TensorSource source = detail::open_vision_file(path);
    nn::WeightMap out = detail::vision_from_source(source, arch, VisionKind::none);
    detail::check_reduced_vision(path, arch, allow_reduced);
    return out;
}

nn::WeightMap convert_weights(const nn::WeightMap& weights, DType dtype) {
    nn::WeightMap out;
    for (const auto& [name, tensor] : weights.tensors()) {
        if (tensor.dtype() == dtype && tensor.is_contiguous()) out.insert(name, tensor);
        else out.insert(name, tensor.to(dtype));
    }
    return out;
}

}  // namespace unclip::io
