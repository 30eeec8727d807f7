// The tiny golden model saved by tests/golden/checkpoint.py in the three layouts must load to
// the same weights, the same detected configuration and the same module outputs.
#include <vector>

#include "checkpoint_helpers.hpp"
#include "unclip/backend/cpu.hpp"
#include "unclip/io/ckpt.hpp"
#include "unclip/nn/resblock.hpp"

using namespace unclip;

namespace {
const io::Checkpoint& single_file() {
    static const io::Checkpoint c = io::load_checkpoint(test::golden("tiny_unclip_l.safetensors"), test::reduced());
    return c;
}
const io::Checkpoint& ckpt() {
    static const io::Checkpoint c = io::load_checkpoint(test::golden("tiny_unclip_l.ckpt"), test::reduced());
    return c;
}
const io::Checkpoint& diffusers() {
    static const io::Checkpoint c = io::load_checkpoint(test::golden("tiny_unclip_l"), test::reduced());
    return c;
}

void check_same_config(const io::ModelConfig& a, const io::ModelConfig& b) {
    CHECK(a.variant == b.variant);
    CHECK(a.prediction == b.prediction);
    CHECK(a.reduced == b.reduced);
    CHECK(io::describe(a) == io::describe(b));
    CHECK(a.unet.num_res_blocks == b.unet.num_res_blocks);
    CHECK(a.vae.num_res_blocks == b.vae.num_res_blocks);
    CHECK(a.text.vocab == b.text.vocab);
    CHECK(a.text.context_length == b.text.context_length);
    CHECK(a.vision.patch == b.vision.patch);
}

// Runs the UNet's first residual block (input_blocks.1.0) from a checkpoint's weights in fp32.
Tensor run_first_resblock(const io::Checkpoint& c) {
    const nn::WeightMap w = io::convert_weights(c.unet, DType::f32);
    const auto& u = c.config.unet;
    nn::ResBlockConfig cfg;
    cfg.in_channels = cfg.out_channels = u.model_channels;
    cfg.emb_channels = u.time_embed_dim();
    cfg.groups = 4;  // the golden UNet's norm_num_groups
    const nn::ResBlock<CpuBackend, float> block(cfg, nn::load_resblock<float>(w, "input_blocks.1.0.", cfg));
    Tensor x = Tensor::empty(DType::f32, {1, u.model_channels, 4, 4});
    Tensor emb = Tensor::empty(DType::f32, {1, cfg.emb_channels});
    for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>((i * 37) % 17) / 8.0f - 1.0f;
    for (std::int64_t i = 0; i < emb.numel(); ++i) emb.data<float>()[i] = static_cast<float>((i * 11) % 13) / 6.0f - 1.0f;
    Tensor y = Tensor::empty(DType::f32, x.shape());
    CpuBackend::Context ctx(1);
    Scratch scratch(block.scratch_bytes(x.shape()));
    block.forward(ctx, view_of<const float>(x), view_of<const float>(emb), view_of<float>(y), scratch);
    return y;
}
}  // namespace

TEST_SUITE("checkpoint") {

TEST_CASE("the golden model is detected as a reduced unclip-l v-model in all three layouts") {
    for (const io::Checkpoint* c : {&single_file(), &ckpt(), &diffusers()}) {
        INFO("layout " << io::layout_name(c->layout));
        CHECK(c->config.variant == io::Variant::unclip_l);
        CHECK(c->config.prediction == io::Prediction::v);
        CHECK(c->config.reduced);
        CHECK(c->config.unet.adm_in_channels == 1536);
        CHECK(c->config.unet.model_channels == 8);
        CHECK(c->config.unet.channel_mult == std::vector<int>{1, 2});
        CHECK(c->config.unet.attention == std::vector<bool>{true, false});
        CHECK(c->config.unet.context_dim == 32);
        CHECK(c->config.text.layers == 2);
        CHECK(c->config.vision.kind == io::VisionKind::openai_l);
        CHECK(c->config.vision.embed_dim == 768);
        CHECK(c->config.vision.tokens() == 17);
    }
    CHECK(single_file().layout == io::Layout::single_file);
    CHECK(ckpt().layout == io::Layout::ckpt);
    CHECK(diffusers().layout == io::Layout::diffusers);
    check_same_config(single_file().config, ckpt().config);
    check_same_config(single_file().config, diffusers().config);
}

TEST_CASE("single-file safetensors and .ckpt load to bit-identical weights, all as zero-copy views") {
    for (io::Component comp : {io::Component::unet, io::Component::vae, io::Component::text, io::Component::vision}) {
        INFO("component " << io::component_name(comp));
        CHECK(single_file().weights(comp).size() > 0);
        CHECK(test::differences(single_file().weights(comp), ckpt().weights(comp)).empty());
        for (const auto& [name, t] : ckpt().weights(comp).tensors()) CHECK_FALSE(t.owns_storage());
    }
}

TEST_CASE("the diffusers folder loads to the same weights under LDM names") {
    for (io::Component comp : {io::Component::unet, io::Component::vae, io::Component::vision}) {
        INFO("component " << io::component_name(comp));
        const auto diff = test::differences(single_file().weights(comp), diffusers().weights(comp));
        CHECK_MESSAGE(diff.empty(), (diff.empty() ? std::string() : diff.front()));
    }
    // diffusers' text encoder stops at the block SD 2.x reads: the LDM file's last block and
    // projection are absent there, everything else matches.
    nn::WeightMap used;
    for (const auto& [name, t] : single_file().text.tensors())
        if (name.rfind("transformer.resblocks.2.", 0) != 0 && name != "text_projection" && name != "logit_scale")
            used.insert(name, t);
    CHECK(test::differences(used, diffusers().text).empty());
    CHECK(single_file().text.find("transformer.resblocks.2.attn.in_proj_weight") != nullptr);
}

TEST_CASE("fused and transposed diffusers tensors are copies, plain renames stay views") {
    const auto& d = diffusers();
    CHECK(d.text.find("transformer.resblocks.0.attn.in_proj_weight")->owns_storage());
    CHECK(d.vision.find("proj")->owns_storage());
    CHECK_FALSE(d.unet.find("input_blocks.0.0.weight")->owns_storage());
    CHECK_FALSE(d.vae.find("encoder.mid.attn_1.q.weight")->owns_storage());  // reshaped Linear -> 1x1 conv
    CHECK(d.vae.find("encoder.mid.attn_1.q.weight")->shape() == Shape{16, 16, 1, 1});
}

TEST_CASE("the three layouts give identical ResBlock outputs") {
    const Tensor a = run_first_resblock(single_file());
    const Tensor b = run_first_resblock(ckpt());
    const Tensor c = run_first_resblock(diffusers());
    CHECK(test::compare(a, a).expected_norm > 0);
    CHECK(test::bit_identical(a, b));
    CHECK(test::bit_identical(a, c));
}

TEST_CASE("a diffusers folder provides the image normalizer, tokenizer and feature extractor locations") {
    const auto& d = diffusers();
    REQUIRE(d.image_normalizer.has_value());
    CHECK(d.image_normalizer->mean.shape() == Shape{1, 768});
    CHECK(d.image_normalizer->std.shape() == Shape{1, 768});
    CHECK_FALSE(d.feature_extractor_dir.empty());
    CHECK_FALSE(single_file().image_normalizer.has_value());
}

TEST_CASE("the .ckpt reader lists integer tensors and skips training metadata") {
    const auto file = io::CkptFile::open(test::golden("tiny_unclip_l.ckpt"));
    const io::CkptEntry* counter = file.find("model_ema.num_updates");
    REQUIRE(counter != nullptr);
    CHECK(counter->dtype_name == "I32");
    CHECK_FALSE(counter->dtype.has_value());
    CHECK(file.find("global_step") == nullptr);
    CHECK_THROWS_STATUS(file.get("model_ema.num_updates"), Status::bad_model, "dtype I32 not supported");
}

TEST_CASE("a prediction override wins over what the checkpoint says") {
    io::LoadOptions options = test::reduced();
    options.prediction = io::Prediction::eps;
    CHECK(io::load_checkpoint(test::golden("tiny_unclip_l.safetensors"), options).config.prediction == io::Prediction::eps);
    CHECK(io::load_checkpoint(test::golden("tiny_unclip_l"), options).config.prediction == io::Prediction::eps);
}

TEST_CASE("convert_weights shares tensors already in the dtype and converts the others") {
    const nn::WeightMap f16 = io::convert_weights(single_file().vae, DType::f16);
    const nn::WeightMap f32 = io::convert_weights(single_file().vae, DType::f32);
    const Tensor& original = *single_file().vae.find("decoder.conv_in.weight");
    REQUIRE(original.dtype() == DType::f16);
    CHECK(f16.find("decoder.conv_in.weight")->raw_data() == original.raw_data());
    const Tensor& wide = *f32.find("decoder.conv_in.weight");
    CHECK(wide.dtype() == DType::f32);
    CHECK(wide.owns_storage());
    CHECK(test::bit_identical(wide.to(DType::f16), original));
}

}  // TEST_SUITE

TEST_SUITE("checkpoint") {

TEST_CASE("diffusers .fp16 weight files are used when asked for, and when they are all there is") {
    test::TempDir dir;
    namespace fs = std::filesystem;
    fs::copy(test::golden("tiny_unclip_l"), dir / "p", fs::copy_options::recursive);
    const fs::path plain = dir / "p" / "unet" / "diffusion_pytorch_model.safetensors";
    const fs::path fp16 = dir / "p" / "unet" / "diffusion_pytorch_model.fp16.safetensors";
    fs::rename(plain, fp16);
    const io::Checkpoint fallback = io::load_checkpoint((dir / "p").string(), test::reduced());
    CHECK(test::differences(fallback.unet, diffusers().unet).empty());

    // Both present: the default takes the plain file, diffusers_variant "fp16" the other.
    auto tensors = test::raw_tensors(fp16.string());
    for (auto& t : tensors)
        if (t.name == "conv_in.bias") t.bytes.assign(t.bytes.size(), '\0');
    test::write_raw_safetensors(plain, tensors);
    io::LoadOptions options = test::reduced();
    CHECK(io::load_checkpoint((dir / "p").string(), options).unet.find("input_blocks.0.0.bias")->data<const Half>()[0].bits == 0);
    options.diffusers_variant = "fp16";
    const io::Checkpoint chosen = io::load_checkpoint((dir / "p").string(), options);
    CHECK(test::bit_identical(*chosen.unet.find("input_blocks.0.0.bias"), *diffusers().unet.find("input_blocks.0.0.bias")));
    CHECK(chosen.unet.find("input_blocks.0.0.bias")->data<const Half>()[0].bits != 0);
}

}  // TEST_SUITE
