// Times the full-size CLIP encoders unCLIP runs on the CPU, with random weights: the OpenCLIP
// ViT-H/14 text tower (one 77-token prompt, all 24 blocks + pooled projection, as ComfyUI runs it)
// and the ViT-H/14 vision tower (one 224x224 image). Prints the median wall time of `--repeats`
// runs after a warm-up. Needs about 4 GiB of memory for the fp32 weights.
//   bench_clip [--threads N] [--repeats R] [--only text|vision] [--bf16]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench_timing.hpp"
#include "unclip/nn/instances.hpp"
#include "unclip/text/tokenizer.hpp"

using namespace unclip;

namespace {

// Small uniform values from a xorshift generator: fast for a billion weights; the values do not
// matter for timing as long as they stay finite and normal.
void fill(Tensor& t, float scale, float offset, std::uint64_t& state) {
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        p[i] = offset + scale * (static_cast<float>(state >> 40) / static_cast<float>(1 << 24) - 0.5f);
    }
}

void add(nn::WeightMap& map, const std::string& name, const Shape& shape, std::uint64_t& state, float offset = 0.0f) {
    Tensor t = Tensor::empty(DType::f32, shape);
    fill(t, 0.04f, offset, state);
    map.insert(name, t);
}

void add_blocks(nn::WeightMap& map, int layers, std::int64_t width, std::int64_t hidden, std::uint64_t& state) {
    for (int i = 0; i < layers; ++i) {
        const std::string p = "transformer.resblocks." + std::to_string(i) + ".";
        add(map, p + "ln_1.weight", {width}, state, 1.0f);
        add(map, p + "ln_1.bias", {width}, state);
        add(map, p + "attn.in_proj_weight", {3 * width, width}, state);
        add(map, p + "attn.in_proj_bias", {3 * width}, state);
        add(map, p + "attn.out_proj.weight", {width, width}, state);
        add(map, p + "attn.out_proj.bias", {width}, state);
        add(map, p + "ln_2.weight", {width}, state, 1.0f);
        add(map, p + "ln_2.bias", {width}, state);
        add(map, p + "mlp.c_fc.weight", {hidden, width}, state);
        add(map, p + "mlp.c_fc.bias", {hidden}, state);
        add(map, p + "mlp.c_proj.weight", {width, hidden}, state);
        add(map, p + "mlp.c_proj.bias", {width}, state);
    }
}
}  // namespace

int main(int argc, char** argv) {
    int threads = 2, repeats = 5;
    std::string only;
    bool bf16 = false;  // --bf16: GEMMs with bf16 inputs (CpuBackend::Context::set_bf16_gemm)
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--bf16")) bf16 = true;
        else if (i + 1 < argc && !std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[++i]);
        else if (i + 1 < argc && !std::strcmp(argv[i], "--repeats")) repeats = std::atoi(argv[++i]);
        else if (i + 1 < argc && !std::strcmp(argv[i], "--only")) only = argv[++i];
    }
    CpuBackend::Context ctx(threads);
    ctx.set_bf16_gemm(bf16);
    if (bf16) std::printf("bf16 GEMMs %s\n", CpuBackend::has_bf16_gemm() ? "on" : "unavailable on this CPU (fp32)");
    std::printf("threads %d, median of %d\n%-44s %10s\n", ctx.threads(), repeats, "encoder", "seconds");
    std::uint64_t state = 88172645463325252ull;

    if (only.empty() || only == "text") {
        const auto cfg = nn::ClipTextConfig::open_clip_vit_h14();
        nn::WeightMap map;
        add(map, "token_embedding.weight", {cfg.vocab, cfg.width}, state);
        add(map, "positional_embedding", {cfg.context, cfg.width}, state);
        add_blocks(map, cfg.layers, cfg.width, cfg.mlp_hidden, state);
        add(map, "ln_final.weight", {cfg.width}, state, 1.0f);
        add(map, "ln_final.bias", {cfg.width}, state);
        add(map, "text_projection", {cfg.width, cfg.embed_dim}, state);
        const nn::ClipTextModel<CpuBackend, float> model(cfg, nn::load_clip_text<float>(map, "", cfg));
        const auto ids = text::ClipTokenizer::bundled().tokenize("a photo of an astronaut riding a horse on the moon");
        Tensor hidden = Tensor::empty(DType::f32, {1, 77, cfg.width});
        Tensor pooled = Tensor::empty(DType::f32, {1, cfg.embed_dim});
        View<float> pooled_view = view_of<float>(pooled);
        Scratch scratch(model.scratch_bytes(1, 77));
        const double s = bench::median_seconds(repeats, [&] {
            model.forward(ctx, CView<std::int32_t>{ids.data(), {1, 77}}, view_of<float>(hidden), &pooled_view, scratch);
        });
        std::printf("%-44s %10.3f\n", "text ViT-H/14, 1x77 tokens, 24 blocks + pooled", s);
    }
    if (only.empty() || only == "vision") {
        const auto cfg = nn::ClipVisionConfig::open_clip_vit_h14();
        nn::WeightMap map;
        add(map, "conv1.weight", {cfg.width, 3, cfg.patch, cfg.patch}, state);
        add(map, "class_embedding", {cfg.width}, state);
        add(map, "positional_embedding", {cfg.tokens(), cfg.width}, state);
        add(map, "ln_pre.weight", {cfg.width}, state, 1.0f);
        add(map, "ln_pre.bias", {cfg.width}, state);
        add_blocks(map, cfg.layers, cfg.width, cfg.mlp_hidden, state);
        add(map, "ln_post.weight", {cfg.width}, state, 1.0f);
        add(map, "ln_post.bias", {cfg.width}, state);
        add(map, "proj", {cfg.width, cfg.embed_dim}, state);
        const nn::ClipVisionModel<CpuBackend, float> model(cfg, nn::load_clip_vision<float>(map, "", cfg));
        Tensor pixels = Tensor::empty(DType::f32, {1, 3, cfg.image_size, cfg.image_size});
        fill(pixels, 4.0f, 0.0f, state);
        Tensor embeds = Tensor::empty(DType::f32, {1, cfg.embed_dim});
        Scratch scratch(model.scratch_bytes(1));
        const double s = bench::median_seconds(repeats, [&] {
            model.forward(ctx, view_of<const float>(pixels), view_of<float>(embeds), scratch);
        });
        std::printf("%-44s %10.3f\n", "vision ViT-H/14, 1x3x224x224, 32 blocks", s);
    }
    return 0;
}
