// Real-size names and shapes of every variant in both layouts the random-weights tool writes,
// checked through the real loader on sparse files (headers only: no gigabytes written), and the
// tool's values at reduced size: both layouts bit-identical, in each precision.
#include "checkpoint_helpers.hpp"
#include "unclip/io/random_checkpoint.hpp"

using namespace unclip;

namespace {

io::ModelConfig tiny(io::Variant variant) {
    io::ModelConfig c = io::reference_config(variant);
    c.unet.model_channels = 32;
    c.unet.channel_mult = {1, 2};
    c.unet.attention = {true, false};
    c.unet.num_res_blocks = 1;
    c.unet.context_dim = 32;
    c.vae.ch = 8;
    c.vae.ch_mult = {1, 2};
    c.vae.num_res_blocks = 1;
    c.text.width = 32;
    c.text.layers = 2;
    c.text.vocab = 100;
    c.vision.width = 32;
    c.vision.layers = 2;
    c.vision.patch = 8;
    c.vision.image_size = 32;
    return c;
}

// Every tensor of the table is in the map with its exact shape (LDM-only ones only when kept).
void check_against_table(const io::Checkpoint& ckpt, const io::ModelConfig& config, io::Component comp) {
    const auto table = io::tensor_table(config, comp);
    std::size_t expected = 0;
    for (const auto& spec : table) {
        const Tensor* t = ckpt.weights(comp).find(spec.name);
        const bool kept = ckpt.layout != io::Layout::diffusers || !spec.diffusers.empty();
        if (!kept) {
            CHECK(t == nullptr);
            continue;
        }
        ++expected;
        REQUIRE_MESSAGE(t != nullptr, spec.name);
        CHECK_MESSAGE(t->shape() == spec.shape, spec.name);
    }
    CHECK(ckpt.weights(comp).size() == expected);
}

}  // namespace

TEST_SUITE("checkpoint") {

TEST_CASE("full-size unclip-h, unclip-l and SD 2.1 load from sparse files of both layouts with the official shapes") {
    for (io::Variant variant : {io::Variant::unclip_h, io::Variant::unclip_l, io::Variant::sd2}) {
        for (io::Layout layout : {io::Layout::single_file, io::Layout::diffusers}) {
            INFO(io::variant_name(variant) << " " << io::layout_name(layout));
            test::TempDir dir;
            const io::ModelConfig reference = io::reference_config(variant);
            io::RandomCheckpointOptions options;
            options.layout = layout;
            options.sparse = true;
            const auto path = (dir / (layout == io::Layout::diffusers ? "model" : "model.safetensors")).string();
            io::write_random_checkpoint(path, reference, options);

            const io::Checkpoint ckpt = io::load_checkpoint(path);
            CHECK(ckpt.config.variant == variant);
            CHECK_FALSE(ckpt.config.reduced);
            CHECK(ckpt.config.vision.kind == reference.vision.kind);
            CHECK(io::describe(ckpt.config).find(io::describe(reference).substr(io::describe(reference).find(", UNet"))) !=
                  std::string::npos);
            for (io::Component comp : {io::Component::unet, io::Component::vae, io::Component::text})
                check_against_table(ckpt, reference, comp);
            if (variant != io::Variant::sd2) check_against_table(ckpt, reference, io::Component::vision);
        }
    }
}

TEST_CASE("the official shapes the modules rely on are the ones in the table") {
    const io::ModelConfig h = io::reference_config(io::Variant::unclip_h), l = io::reference_config(io::Variant::unclip_l);
    const auto shape_of = [](const io::ModelConfig& c, io::Component comp, const std::string& name) {
        for (const auto& s : io::tensor_table(c, comp))
            if (s.name == name) return s.shape;
        FAIL("no tensor " << name);
        return Shape{};
    };
    CHECK(shape_of(h, io::Component::unet, "label_emb.0.0.weight") == Shape{1280, 2048});
    CHECK(shape_of(l, io::Component::unet, "label_emb.0.0.weight") == Shape{1280, 1536});
    CHECK(shape_of(h, io::Component::unet, "output_blocks.5.2.conv.weight") == Shape{1280, 1280, 3, 3});
    CHECK(shape_of(h, io::Component::unet, "output_blocks.2.1.conv.weight") == Shape{1280, 1280, 3, 3});
    CHECK(shape_of(h, io::Component::unet, "output_blocks.6.0.skip_connection.weight") == Shape{640, 1920, 1, 1});
    CHECK(shape_of(h, io::Component::unet, "input_blocks.8.1.transformer_blocks.0.attn2.to_k.weight") == Shape{1280, 1024});
    CHECK(shape_of(h, io::Component::unet, "middle_block.1.transformer_blocks.0.ff.net.0.proj.weight") == Shape{10240, 1280});
    CHECK(shape_of(h, io::Component::vae, "decoder.up.1.block.0.nin_shortcut.weight") == Shape{256, 512, 1, 1});
    CHECK(shape_of(h, io::Component::vae, "encoder.conv_out.weight") == Shape{8, 512, 3, 3});
    CHECK(shape_of(h, io::Component::text, "transformer.resblocks.23.attn.in_proj_weight") == Shape{3072, 1024});
    CHECK(shape_of(h, io::Component::vision, "transformer.resblocks.31.mlp.c_fc.weight") == Shape{5120, 1280});
    CHECK(shape_of(h, io::Component::vision, "proj") == Shape{1280, 1024});
    CHECK(shape_of(l, io::Component::vision, "proj") == Shape{1024, 768});
    CHECK(shape_of(l, io::Component::vision, "positional_embedding") == Shape{257, 1024});
    CHECK(io::tensor_table(h, io::Component::unet).size() == 690);  // ComfyUI's UNet key count for SD 2.x + ADM
}

TEST_CASE("the random-weights tool writes both layouts to bit-identical weights in fp32, fp16 and bf16") {
    for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
        INFO("dtype " << dtype_name(dtype));
        test::TempDir dir;
        const io::ModelConfig config = tiny(io::Variant::unclip_h);
        io::RandomCheckpointOptions options;
        options.dtype = dtype;
        options.seed = 7;
        io::write_random_checkpoint((dir / "m.safetensors").string(), config, options);
        options.layout = io::Layout::diffusers;
        io::write_random_checkpoint((dir / "m").string(), config, options);

        const io::Checkpoint single = io::load_checkpoint((dir / "m.safetensors").string(), test::reduced());
        const io::Checkpoint folder = io::load_checkpoint((dir / "m").string(), test::reduced());
        CHECK(single.config.variant == io::Variant::unclip_h);
        CHECK(folder.config.variant == io::Variant::unclip_h);
        for (io::Component comp : {io::Component::unet, io::Component::vae, io::Component::vision}) {
            INFO("component " << io::component_name(comp));
            CHECK(single.weights(comp).find(io::tensor_table(config, comp).front().name)->dtype() == dtype);
            CHECK(test::differences(single.weights(comp), folder.weights(comp)).empty());
        }
        CHECK(test::bit_identical(*single.text.find("transformer.resblocks.1.attn.in_proj_weight"),
                                  *folder.text.find("transformer.resblocks.1.attn.in_proj_weight")));
        const nn::WeightMap wide = io::convert_weights(single.unet, DType::f32);
        const Tensor& gain = *wide.find("out.0.weight");  // a norm gain: about 1
        CHECK(gain.data<const float>()[0] > 0.9f);
        CHECK(gain.data<const float>()[0] < 1.1f);
    }
}

TEST_CASE("plain SD 2.x prediction comes from ComfyUI's norm-bias heuristic or the scheduler config") {
    for (io::Prediction prediction : {io::Prediction::v, io::Prediction::eps}) {
        INFO("written as " << io::prediction_name(prediction));
        test::TempDir dir;
        io::ModelConfig config = tiny(io::Variant::sd2);
        config.prediction = prediction;
        io::RandomCheckpointOptions options;
        options.dtype = DType::f32;
        io::write_random_checkpoint((dir / "m.safetensors").string(), config, options);
        options.layout = io::Layout::diffusers;
        io::write_random_checkpoint((dir / "m").string(), config, options);
        CHECK(io::load_checkpoint((dir / "m.safetensors").string(), test::reduced()).config.prediction == prediction);
        CHECK(io::load_checkpoint((dir / "m").string(), test::reduced()).config.prediction == prediction);
    }
}

}  // TEST_SUITE
