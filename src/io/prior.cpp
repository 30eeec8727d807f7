// Stable unCLIP's prior folders (diffusers StableUnCLIPPipeline.save_pretrained layout): loading
// with the transformers -> OpenCLIP name mapping of the text tower, and a seeded random writer.
#include "unclip/io/prior.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "unclip/io/checkpoint.hpp"
#include "unclip/io/safetensors.hpp"
#include "unclip/io/tiny_model.hpp"
#include "unclip/sampling/rng.hpp"

namespace unclip::io {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

[[noreturn]] void bad(const fs::path& file, const std::string& what) {
    throw Error(Status::bad_model, file.string() + ": " + what);
}

std::string read_text(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(Status::io, "open '" + path.string() + "': cannot open for reading");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

Json read_json(const fs::path& path) {
    const Json j = Json::parse(read_text(path), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) bad(path, "not a JSON object");
    return j;
}

// An integer field; `fallback` < 0 means required.
std::int64_t int_field(const Json& j, const char* key, std::int64_t fallback, const fs::path& file) {
    if (!j.contains(key) || j[key].is_null()) {
        if (fallback < 0) bad(file, std::string("no \"") + key + "\" field");
        return fallback;
    }
    if (!j[key].is_number_integer() || j[key].get<std::int64_t>() < 0 || j[key].get<std::int64_t>() > (1 << 20))
        bad(file, std::string("\"") + key + "\" is not an integer in [0, 2^20]");
    return j[key].get<std::int64_t>();
}

std::string optional_string(const Json& j, const char* key, const std::string& fallback, const fs::path& file) {
    if (!j.contains(key)) return fallback;
    if (j[key].is_null()) return "";
    if (!j[key].is_string()) bad(file, std::string("\"") + key + "\" is not a string");
    return j[key].get<std::string>();
}

// The first weight file that exists among `names` in `dir`.
fs::path weight_file(const fs::path& dir, std::initializer_list<const char*> names) {
    for (const char* n : names)
        if (fs::exists(dir / n)) return dir / n;
    std::string list;
    for (const char* n : names) list += (list.empty() ? "" : " or ") + std::string(n);
    if (fs::exists(dir / "pytorch_model.bin") || fs::exists(dir / "diffusion_pytorch_model.bin"))
        bad(dir, "only a .bin weight file; convert it to .safetensors (" + list + ")");
    bad(dir, "no weight file (" + list + ")");
}

nn::WeightMap read_weights(const fs::path& file) {
    const SafetensorsFile f = SafetensorsFile::open(file.string());
    nn::WeightMap map;
    for (const auto& e : f.entries())
        if (e.dtype) map.insert(e.name, f.get(e.name));
    return convert_weights(map, DType::f32);
}

nn::PriorTransformerConfig prior_config_from(const Json& j, const fs::path& file) {
    nn::PriorTransformerConfig c;
    c.heads = static_cast<int>(int_field(j, "num_attention_heads", 32, file));
    c.head_dim = static_cast<int>(int_field(j, "attention_head_dim", 64, file));
    c.layers = static_cast<int>(int_field(j, "num_layers", 20, file));
    c.embedding_dim = int_field(j, "embedding_dim", 768, file);
    c.num_embeddings = int_field(j, "num_embeddings", 77, file);
    c.time_embed_dim = int_field(j, "time_embed_dim", 0, file);
    c.embedding_proj_dim = int_field(j, "embedding_proj_dim", 0, file);
    if (c.heads < 1 || c.head_dim < 1 || c.embedding_dim < 1 || c.num_embeddings < 1)
        bad(file, "heads, head dim, embedding_dim and num_embeddings must be positive");
    if (int_field(j, "additional_embeddings", 4, file) != 4)
        bad(file, "additional_embeddings must be 4 (text embedding, time, x_t, readout)");
    const std::int64_t clip_dim = int_field(j, "clip_embed_dim", 0, file);
    if (clip_dim != 0 && clip_dim != c.embedding_dim)
        bad(file, "clip_embed_dim " + std::to_string(clip_dim) + " differs from embedding_dim " + std::to_string(c.embedding_dim));
    const auto require = [&](const char* key, const std::string& fallback, std::initializer_list<const char*> allowed) {
        const std::string v = optional_string(j, key, fallback, file);
        for (const char* a : allowed)
            if (v == a) return v;
        bad(file, std::string("\"") + key + "\" '" + v + "' is not supported");
    };
    require("time_embed_act_fn", "silu", {"silu"});
    require("encoder_hid_proj_type", "linear", {"linear"});
    require("added_emb_type", "prd", {"prd"});
    c.norm_in = require("norm_in_type", "", {"", "layer"}) == "layer";
    c.embedding_proj_norm = require("embedding_proj_norm_type", "", {"", "layer"}) == "layer";
    return c;
}

nn::ClipTextConfig text_config_from(const Json& j, const fs::path& file) {
    nn::ClipTextConfig c;
    c.vocab = int_field(j, "vocab_size", 49408, file);
    c.context = int_field(j, "max_position_embeddings", 77, file);
    c.width = int_field(j, "hidden_size", 512, file);
    c.mlp_hidden = int_field(j, "intermediate_size", 2048, file);
    c.heads = static_cast<int>(int_field(j, "num_attention_heads", 8, file));
    c.layers = static_cast<int>(int_field(j, "num_hidden_layers", 12, file));
    c.embed_dim = int_field(j, "projection_dim", 512, file);
    c.output_layer = -1;  // last_hidden_state: final LayerNorm over the last block
    if (c.vocab < 2 || c.context < 2 || c.width < 1 || c.heads < 1 || c.layers < 1 || c.embed_dim < 1 || c.mlp_hidden < 1)
        bad(file, "vocab_size, max_position_embeddings, widths, heads and layers must be positive");
    const std::string act = optional_string(j, "hidden_act", "quick_gelu", file);
    if (act == "quick_gelu") c.activation = nn::Activation::quick_gelu;
    else if (act == "gelu") c.activation = nn::Activation::gelu;
    else bad(file, "hidden_act '" + act + "' is not supported (quick_gelu or gelu)");
    if (j.contains("layer_norm_eps") && j["layer_norm_eps"].is_number()) c.eps = j["layer_norm_eps"].get<float>();
    // transformers CLIPTextTransformer pools at argmax(input_ids) when eos_token_id is the legacy 2
    // (OpenAI's configs): the highest id, the end token 49407 = vocab - 1; otherwise at the first
    // eos_token_id.
    const std::int64_t eos = int_field(j, "eos_token_id", 2, file);
    c.end_id = static_cast<std::int32_t>(eos == 2 ? c.vocab - 1 : eos);
    if (c.end_id >= c.vocab) bad(file, "eos_token_id " + std::to_string(eos) + " outside the vocabulary");
    return c;
}

// transformers CLIPTextModelWithProjection names -> the OpenCLIP names load_clip_text reads.
nn::WeightMap text_to_open_clip(const nn::WeightMap& hf, const nn::ClipTextConfig& c, const fs::path& file) {
    const std::string p = hf.find("text_model.embeddings.token_embedding.weight") ? "text_model." : "";
    nn::WeightMap out;
    const auto take = [&](const std::string& name) -> Tensor {
        const Tensor* t = hf.find(name);
        if (!t) bad(file, "tensor '" + name + "': missing");
        return *t;
    };
    out.insert("token_embedding.weight", take(p + "embeddings.token_embedding.weight"));
    out.insert("positional_embedding", take(p + "embeddings.position_embedding.weight"));
    const std::int64_t w = c.width;
    for (int i = 0; i < c.layers; ++i) {
        const std::string src = p + "encoder.layers." + std::to_string(i) + ".";
        const std::string dst = "transformer.resblocks." + std::to_string(i) + ".";
        for (const char* part : {"weight", "bias"}) {
            const bool weight = std::string(part) == "weight";
            Tensor fused = Tensor::empty(DType::f32, weight ? Shape{3 * w, w} : Shape{3 * w});
            const std::int64_t block = weight ? w * w : w;
            int k = 0;
            for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
                const std::string name = src + "self_attn." + proj + "." + part;
                const Tensor t = take(name);
                if (t.numel() != block) bad(file, "tensor '" + name + "': shape " + t.shape().str() + ", expected width " + std::to_string(w));
                std::copy_n(t.data<const float>(), block, fused.data<float>() + k++ * block);
            }
            out.insert(dst + "attn.in_proj_" + part, fused);
            out.insert(dst + "attn.out_proj." + part, take(src + "self_attn.out_proj." + part));
            out.insert(dst + "ln_1." + part, take(src + "layer_norm1." + part));
            out.insert(dst + "ln_2." + part, take(src + "layer_norm2." + part));
            out.insert(dst + "mlp.c_fc." + part, take(src + "mlp.fc1." + part));
            out.insert(dst + "mlp.c_proj." + part, take(src + "mlp.fc2." + part));
        }
    }
    out.insert("ln_final.weight", take(p + "final_layer_norm.weight"));
    out.insert("ln_final.bias", take(p + "final_layer_norm.bias"));
    const Tensor proj = take("text_projection.weight");  // [embed_dim, width], used as x W^T
    if (proj.shape() != Shape{c.embed_dim, w})
        bad(file, "tensor 'text_projection.weight': shape " + proj.shape().str() + ", expected [" +
                      std::to_string(c.embed_dim) + ", " + std::to_string(w) + "]");
    Tensor transposed = Tensor::empty(DType::f32, {w, c.embed_dim});
    for (std::int64_t r = 0; r < c.embed_dim; ++r)
        for (std::int64_t k = 0; k < w; ++k) transposed.data<float>()[k * c.embed_dim + r] = proj.data<const float>()[r * w + k];
    out.insert("text_projection", transposed);
    return out;
}

void write_json(const fs::path& path, const Json& j) {
    fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary);
    out << j.dump(2) << "\n";
    if (!out) throw Error(Status::io, "write '" + path.string() + "': failed");
}

void write_text(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary);
    out << text;
    if (!out) throw Error(Status::io, "write '" + path.string() + "': failed");
}

// GPT-2 / CLIP byte-level alphabet: printable Latin-1 bytes stand for themselves, the others for
// U+0100 onwards in byte order (CLIP simple_tokenizer.py bytes_to_unicode), as UTF-8.
std::vector<std::string> byte_alphabet() {
    std::vector<std::uint32_t> code(256);
    std::uint32_t next = 256;
    for (std::uint32_t b = 0; b < 256; ++b) {
        const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        code[b] = printable ? b : next++;
    }
    std::vector<std::string> out;
    for (std::uint32_t c : code) {
        std::string s;
        if (c < 0x80) {
            s += static_cast<char>(c);
        } else {
            s += static_cast<char>(0xC0 | (c >> 6));
            s += static_cast<char>(0x80 | (c & 0x3F));
        }
        out.push_back(s);
    }
    return out;
}

// Seeded weights: tensor k of the list gets randn from manual_seed(seed * 1000003 + k), scaled.
struct RandomTensors {
    SafetensorsWriter writer;
    std::uint64_t seed;
    std::uint64_t ordinal = 0;
    RandomTensors(const fs::path& path, std::uint64_t s) : writer(path.string()), seed(s) {}
    void add(const std::string& name, const Shape& shape, float scale, float offset = 0.0f) {
        Tensor t = Tensor::empty(DType::f32, shape);
        sampling::TorchGenerator g(seed * 1000003ull + ordinal++);
        g.randn(t.data<float>(), static_cast<std::size_t>(t.numel()));
        for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = t.data<float>()[i] * scale + offset;
        writer.add(name, t);
    }
    void linear(const std::string& prefix, std::int64_t in, std::int64_t out) {
        add(prefix + "weight", {out, in}, 1.0f / std::sqrt(static_cast<float>(in)));
        add(prefix + "bias", {out}, 0.02f);
    }
    void norm(const std::string& prefix, std::int64_t dim) {
        add(prefix + "weight", {dim}, 0.1f, 1.0f);
        add(prefix + "bias", {dim}, 0.02f);
    }
};

const char* const kKarloSchedulerJson = R"({
  "_class_name": "DDPMScheduler",
  "beta_schedule": "squaredcos_cap_v2",
  "clip_sample": true,
  "clip_sample_range": 5.0,
  "num_train_timesteps": 1000,
  "prediction_type": "sample",
  "variance_type": "fixed_small_log"
})";

}  // namespace

bool has_prior(const std::string& path) {
    std::error_code ec;
    return !path.empty() && fs::is_directory(fs::path(path) / "prior", ec);
}

PriorCheckpoint load_prior(const std::string& path) {
    const fs::path root(path);
    if (!fs::is_directory(root)) throw Error(Status::io, "prior '" + path + "': not a folder");
    for (const char* sub : {"prior", "prior_text_encoder", "prior_scheduler"})
        if (!fs::is_directory(root / sub)) bad(root, std::string("no ") + sub + "/ subfolder (a prior needs prior/, "
                                                     "prior_text_encoder/, prior_tokenizer/ and prior_scheduler/)");
    PriorCheckpoint c;
    c.path = path;
    c.prior_config = prior_config_from(read_json(root / "prior" / "config.json"), root / "prior" / "config.json");
    c.text_config = text_config_from(read_json(root / "prior_text_encoder" / "config.json"),
                                     root / "prior_text_encoder" / "config.json");
    const fs::path scheduler = root / "prior_scheduler" / "scheduler_config.json";
    c.scheduler = sampling::PriorSchedulerConfig::from_json(read_text(scheduler), scheduler.string());

    const auto& p = c.prior_config;
    const auto& t = c.text_config;
    if (t.width != p.embedding_dim || t.embed_dim != p.text_embed_dim() || t.context != p.num_embeddings)
        bad(root, "the prior text encoder (hidden " + std::to_string(t.width) + ", projection " + std::to_string(t.embed_dim) +
                      ", " + std::to_string(t.context) + " tokens) does not fit the prior (embedding_dim " +
                      std::to_string(p.embedding_dim) + ", text embedding " + std::to_string(p.text_embed_dim()) + ", " +
                      std::to_string(p.num_embeddings) + " tokens)");

    const fs::path prior_file = weight_file(root / "prior", {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"});
    c.prior = read_weights(prior_file);
    const fs::path text_file = weight_file(root / "prior_text_encoder", {"model.safetensors", "model.fp16.safetensors"});
    c.text = text_to_open_clip(read_weights(text_file), t, text_file);
    // Validate every tensor now, naming the file, rather than at module construction.
    try {
        (void)nn::load_prior_transformer<float>(c.prior, "", p);
    } catch (const Error& e) {
        bad(prior_file, e.what());
    }
    try {
        (void)nn::load_clip_text<float>(c.text, "", t);
    } catch (const Error& e) {
        bad(text_file, e.what());
    }
    const fs::path tok = root / "prior_tokenizer";
    if (fs::exists(tok / "vocab.json") && fs::exists(tok / "merges.txt")) c.tokenizer_dir = tok.string();
    return c;
}

RandomPriorConfig tiny_prior_config(std::int64_t embedding_dim) {
    RandomPriorConfig c;
    c.prior.heads = 2;
    c.prior.head_dim = 8;
    c.prior.layers = 2;
    c.prior.embedding_dim = embedding_dim;
    c.prior.num_embeddings = 77;
    c.text_layers = 1;
    c.text_heads = 2;
    c.text_mlp_hidden = 64;
    return c;
}

void write_random_prior(const std::string& folder, const RandomPriorConfig& config, std::uint64_t seed) {
    const auto& p = config.prior;
    if (p.heads < 1 || p.head_dim < 1 || p.layers < 0 || p.embedding_dim < 2 || p.num_embeddings < 2 ||
        config.text_layers < 1 || config.text_heads < 1 || config.text_mlp_hidden < 1 || p.embedding_dim % config.text_heads != 0 ||
        p.inner_dim() % 2 != 0)
        throw Error(Status::invalid_argument, "write_random_prior: inconsistent architecture");
    const fs::path root(folder);
    const std::int64_t inner = p.inner_dim(), e = p.embedding_dim, te = p.text_embed_dim();
    const std::vector<std::string> alphabet = byte_alphabet();
    const std::int64_t vocab = 2 * 256 + 2;

    // prior/
    Json pc = {{"_class_name", "PriorTransformer"}, {"num_attention_heads", p.heads}, {"attention_head_dim", p.head_dim},
               {"num_layers", p.layers}, {"embedding_dim", e}, {"num_embeddings", p.num_embeddings},
               {"additional_embeddings", 4}, {"dropout", 0.0}, {"time_embed_act_fn", "silu"},
               {"norm_in_type", p.norm_in ? Json("layer") : Json()},
               {"embedding_proj_norm_type", p.embedding_proj_norm ? Json("layer") : Json()},
               {"encoder_hid_proj_type", "linear"}, {"added_emb_type", "prd"},
               {"time_embed_dim", p.time_embed_dim > 0 ? Json(p.time_embed_dim) : Json()},
               {"embedding_proj_dim", p.embedding_proj_dim > 0 ? Json(p.embedding_proj_dim) : Json()},
               {"clip_embed_dim", Json()}};
    write_json(root / "prior" / "config.json", pc);
    {
        RandomTensors r(root / "prior" / "diffusion_pytorch_model.safetensors", seed);
        r.linear("time_embedding.linear_1.", inner, p.time_dim());
        r.linear("time_embedding.linear_2.", p.time_dim(), inner);
        r.linear("proj_in.", e, inner);
        if (p.embedding_proj_norm) r.norm("embedding_proj_norm.", te);
        r.linear("embedding_proj.", te, inner);
        r.linear("encoder_hidden_states_proj.", e, inner);
        r.add("positional_embedding", {1, p.max_tokens(), inner}, 0.1f);
        r.add("prd_embedding", {1, 1, inner}, 0.5f);
        if (p.norm_in) r.norm("norm_in.", inner);
        for (int i = 0; i < p.layers; ++i) {
            const std::string b = "transformer_blocks." + std::to_string(i) + ".";
            r.norm(b + "norm1.", inner);
            for (const char* q : {"to_q.", "to_k.", "to_v.", "to_out.0."}) r.linear(b + "attn1." + q, inner, inner);
            r.norm(b + "norm3.", inner);
            r.linear(b + "ff.net.0.proj.", inner, 4 * inner);
            r.linear(b + "ff.net.2.", 4 * inner, inner);
        }
        r.norm("norm_out.", inner);
        r.linear("proj_to_clip_embeddings.", inner, e);
        r.add("clip_mean", {1, e}, 0.1f);
        r.add("clip_std", {1, e}, 0.1f, 1.0f);
        r.writer.finish();
    }

    // prior_text_encoder/: OpenAI CLIP's text config shape, shrunk.
    const std::int64_t w = e;
    Json tc = {{"architectures", {"CLIPTextModelWithProjection"}}, {"model_type", "clip_text_model"},
               {"vocab_size", vocab}, {"max_position_embeddings", p.num_embeddings}, {"hidden_size", w},
               {"intermediate_size", config.text_mlp_hidden}, {"num_attention_heads", config.text_heads},
               {"num_hidden_layers", config.text_layers}, {"projection_dim", te}, {"hidden_act", "quick_gelu"},
               {"layer_norm_eps", 1e-5}, {"attention_dropout", 0.0}, {"initializer_factor", 1.0},
               {"initializer_range", 0.02}, {"bos_token_id", vocab - 2}, {"eos_token_id", vocab - 1},
               {"pad_token_id", vocab - 1}, {"dtype", "float32"}};
    write_json(root / "prior_text_encoder" / "config.json", tc);
    {
        RandomTensors r(root / "prior_text_encoder" / "model.safetensors", seed + 1);
        r.add("text_model.embeddings.token_embedding.weight", {vocab, w}, 0.5f);
        r.add("text_model.embeddings.position_embedding.weight", {p.num_embeddings, w}, 0.1f);
        for (int i = 0; i < config.text_layers; ++i) {
            const std::string b = "text_model.encoder.layers." + std::to_string(i) + ".";
            r.norm(b + "layer_norm1.", w);
            for (const char* q : {"q_proj.", "k_proj.", "v_proj.", "out_proj."}) r.linear(b + "self_attn." + q, w, w);
            r.norm(b + "layer_norm2.", w);
            r.linear(b + "mlp.fc1.", w, config.text_mlp_hidden);
            r.linear(b + "mlp.fc2.", config.text_mlp_hidden, w);
        }
        r.norm("text_model.final_layer_norm.", w);
        r.add("text_projection.weight", {te, w}, 1.0f / std::sqrt(static_cast<float>(w)));
        r.writer.finish();
    }

    // prior_tokenizer/: every byte and every word-final byte, no merges.
    Json v = Json::object();
    for (std::size_t b = 0; b < 256; ++b) v[alphabet[b]] = b;
    for (std::size_t b = 0; b < 256; ++b) v[alphabet[b] + "</w>"] = 256 + b;
    v["<|startoftext|>"] = vocab - 2;
    v["<|endoftext|>"] = vocab - 1;
    write_text(root / "prior_tokenizer" / "vocab.json", v.dump() + "\n");
    write_text(root / "prior_tokenizer" / "merges.txt", "#version: 0.2\n");
    write_json(root / "prior_tokenizer" / "tokenizer_config.json",
               {{"tokenizer_class", "CLIPTokenizer"}, {"model_max_length", p.num_embeddings},
                {"bos_token", "<|startoftext|>"}, {"eos_token", "<|endoftext|>"}, {"pad_token", "<|endoftext|>"},
                {"unk_token", "<|endoftext|>"}});

    // prior_scheduler/
    write_text(root / "prior_scheduler" / "scheduler_config.json",
               (config.scheduler_json.empty() ? std::string(kKarloSchedulerJson) : config.scheduler_json) + "\n");
}

ModelConfig tiny_unclip_l_config() {
    ModelConfig c = tiny_unclip_config();
    c.variant = Variant::unclip_l;
    const VisionArch l = reference_config(Variant::unclip_l).vision;
    c.vision = l;
    c.vision.width = 64;  // one 64-wide head, as ViT-L/14's
    c.vision.layers = 2;
    c.vision.embed_dim = 768;
    c.unet.adm_in_channels = 2 * c.vision.embed_dim;
    return c;
}

}  // namespace unclip::io
