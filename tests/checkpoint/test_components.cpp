// Separate UNet, VAE and text encoder files (ComfyUI's UNETLoader / VAELoader / CLIPLoader) in
// every accepted form load to the same weights as the component inside the whole checkpoint, and
// replace it or make a model on their own; bad component files are clear errors naming the file.
#include <algorithm>

#include "checkpoint_helpers.hpp"

using namespace unclip;
using test::RawTensor;

namespace {
namespace fs = std::filesystem;

const io::Checkpoint& whole() {
    static const io::Checkpoint c = io::load_checkpoint(test::golden("tiny_unclip_l.safetensors"), test::reduced());
    return c;
}

// The tensors of the golden single file under `prefix`, keeping the prefix or stripping it.
std::vector<RawTensor> cut(const std::string& prefix, bool strip) {
    std::vector<RawTensor> out;
    for (auto& t : test::raw_tensors(test::golden("tiny_unclip_l.safetensors")))
        if (t.name.rfind(prefix, 0) == 0) {
            if (strip) t.name.erase(0, prefix.size());
            out.push_back(std::move(t));
        }
    if (out.empty()) throw std::runtime_error("golden lacks " + prefix);
    return out;
}

std::string write(const test::TempDir& dir, const std::vector<RawTensor>& tensors, const std::string& name) {
    const auto path = dir / name;
    test::write_raw_safetensors(path, tensors);
    return path.string();
}

RawTensor& named(std::vector<RawTensor>& tensors, const std::string& name) {
    const auto it = std::find_if(tensors.begin(), tensors.end(), [&](const RawTensor& t) { return t.name == name; });
    if (it == tensors.end()) throw std::runtime_error("no tensor " + name);
    return *it;
}

// The text tower's tensors a diffusers text_encoder/ keeps: all but the LDM file's last block and projection.
nn::WeightMap used_text(const nn::WeightMap& text) {
    nn::WeightMap used;
    for (const auto& [name, t] : text.tensors())
        if (name.rfind("transformer.resblocks.2.", 0) != 0 && name != "text_projection" && name != "logit_scale")
            used.insert(name, t);
    return used;
}

const io::Component kComponents[] = {io::Component::unet, io::Component::vae, io::Component::text};
}  // namespace

TEST_SUITE("checkpoint") {

TEST_CASE("component files with LDM keys, with or without their prefix, load bit-identical to the checkpoint's component") {
    test::TempDir dir;
    for (io::Component comp : kComponents) {
        for (bool strip : {false, true}) {
            INFO(io::component_name(comp) << (strip ? " without prefix" : " with prefix"));
            const std::string path = write(dir, cut(io::ldm_prefix(comp), strip), std::string(io::component_name(comp)) + ".safetensors");
            const nn::WeightMap w = io::load_component(path, comp, whole().config);
            CHECK(w.size() > 0);
            CHECK(w.size() == whole().weights(comp).size());
            CHECK(test::differences(w, whole().weights(comp)).empty());
        }
    }
}

TEST_CASE("a whole checkpoint, .safetensors or .ckpt, serves as a component file") {
    for (const char* file : {"tiny_unclip_l.safetensors", "tiny_unclip_l.ckpt"})
        for (io::Component comp : kComponents) {
            INFO(file << " as " << io::component_name(comp));
            CHECK(test::differences(io::load_component(test::golden(file), comp, whole().config), whole().weights(comp)).empty());
        }
}

TEST_CASE("diffusers component folders and their weight files load through the diffusers mapping") {
    const fs::path root = test::golden("tiny_unclip_l");
    const std::pair<io::Component, fs::path> files[] = {
        {io::Component::unet, root / "unet" / "diffusion_pytorch_model.safetensors"},
        {io::Component::vae, root / "vae" / "diffusion_pytorch_model.safetensors"},
        {io::Component::text, root / "text_encoder" / "model.safetensors"}};
    for (const auto& [comp, file] : files) {
        const nn::WeightMap expected = comp == io::Component::text ? used_text(whole().text) : whole().weights(comp);
        for (const fs::path& path : {file.parent_path(), file, root}) {
            INFO(io::component_name(comp) << " from " << path.string());
            const nn::WeightMap w = io::load_component(path.string(), comp, whole().config);
            const auto diff = test::differences(w, expected);
            CHECK_MESSAGE(diff.empty(), (diff.empty() ? std::string() : diff.front()));
            CHECK(w.size() > 0);
        }
    }
}

TEST_CASE("a given component file replaces the checkpoint's component") {
    test::TempDir dir;
    auto vae = cut("first_stage_model.", true);
    auto& bias = named(vae, "decoder.conv_out.bias");
    std::fill(bias.bytes.begin(), bias.bytes.end(), '\0');
    io::LoadOptions options = test::reduced();
    options.vae_path = write(dir, vae, "vae.safetensors");
    options.text_encoder_path = (fs::path(test::golden("tiny_unclip_l")) / "text_encoder").string();
    const io::Checkpoint c = io::load_checkpoint(test::golden("tiny_unclip_l.safetensors"), options);
    const auto vae_diff = test::differences(c.vae, whole().vae);
    CHECK(vae_diff == std::vector<std::string>{"decoder.conv_out.bias"});
    CHECK(test::differences(c.text, used_text(whole().text)).empty());
    CHECK(test::differences(c.unet, whole().unet).empty());
    CHECK(test::differences(c.vision, whole().vision).empty());
    CHECK(io::describe(c.config) == io::describe(whole().config));
}

TEST_CASE("a model made of component files alone takes its variant from the UNet") {
    test::TempDir dir;
    io::LoadOptions options = test::reduced();
    options.unet_path = write(dir, cut("model.diffusion_model.", true), "unet.safetensors");
    options.vae_path = write(dir, cut("first_stage_model.", true), "vae.safetensors");
    options.text_encoder_path = write(dir, cut("cond_stage_model.model.", false), "text.safetensors");
    const io::Checkpoint c = io::load_checkpoint("", options);
    CHECK(c.path == options.unet_path);
    CHECK(c.config.variant == io::Variant::unclip_l);
    CHECK(c.config.prediction == io::Prediction::v);
    CHECK(c.config.vision.kind == io::VisionKind::none);
    for (io::Component comp : kComponents) CHECK(test::differences(c.weights(comp), whole().weights(comp)).empty());

    // The same from diffusers folders, with the image tower from a separate file.
    const fs::path root = test::golden("tiny_unclip_l");
    io::LoadOptions folders = test::reduced();
    folders.unet_path = (root / "unet").string();
    folders.vae_path = (root / "vae").string();
    folders.text_encoder_path = (root / "text_encoder").string();
    folders.clip_vision_path = (root / "image_encoder").string();
    const io::Checkpoint d = io::load_checkpoint("", folders);
    CHECK(d.layout == io::Layout::diffusers);
    CHECK(io::describe(d.config) == io::describe(whole().config));
    CHECK(test::differences(d.unet, whole().unet).empty());
    CHECK(test::differences(d.vision, whole().vision).empty());
}

}  // TEST_SUITE

TEST_SUITE("checkpoint") {

TEST_CASE("a VAE file given as the text encoder is named as a VAE") {
    test::TempDir dir;
    const std::string vae = write(dir, cut("first_stage_model.", true), "vae.safetensors");
    CHECK_THROWS_STATUS(io::load_component(vae, io::Component::text, whole().config), Status::bad_model,
                        "open '" + vae + "': holds a VAE, not a text encoder");
    io::LoadOptions options = test::reduced();
    options.text_encoder_path = vae;
    CHECK_THROWS_STATUS(io::load_checkpoint(test::golden("tiny_unclip_l.safetensors"), options), Status::bad_model,
                        "open '" + vae + "': holds a VAE, not a text encoder");
    const std::string unet = (fs::path(test::golden("tiny_unclip_l")) / "unet").string();
    CHECK_THROWS_STATUS(io::load_component(unet, io::Component::vae, whole().config), Status::bad_model,
                        "holds a UNet, not a VAE");
    const std::string text = (fs::path(test::golden("tiny_unclip_l")) / "text_encoder").string();
    CHECK_THROWS_STATUS(io::load_component(text, io::Component::vae, whole().config), Status::bad_model,
                        "model.safetensors': holds a text encoder, not a VAE");
    CHECK_THROWS_STATUS(io::load_component(test::TempDir().path().string(), io::Component::vae, whole().config),
                        Status::bad_model, "no weights: neither diffusion_pytorch_model.safetensors");
}

TEST_CASE("a component file with a wrong shape names the file, the tensor and both shapes") {
    test::TempDir dir;
    auto vae = cut("first_stage_model.", true);
    auto& t = named(vae, "decoder.conv_in.weight");  // [16, 4, 3, 3]
    t.dims = {16, 4, 3, 1};
    t.bytes.resize(16 * 4 * 3 * 2);
    const std::string path = write(dir, vae, "vae.safetensors");
    CHECK_THROWS_STATUS(io::load_component(path, io::Component::vae, whole().config), Status::bad_model,
                        "open '" + path + "': tensor 'decoder.conv_in.weight': shape [16, 4, 3, 1], expected [16, 4, 3, 3]");

    // A well-formed VAE of another architecture does not fit the checkpoint's.
    io::ModelConfig wider = whole().config;
    wider.vae.ch *= 2;
    const std::string good = write(dir, cut("first_stage_model.", true), "good.safetensors");
    CHECK_THROWS_STATUS(io::load_component(good, io::Component::vae, wider), Status::bad_model,
                        "open '" + good + "': tensor 'encoder.conv_in.weight': shape");
}

TEST_CASE("a component file with missing tensors lists the first few names") {
    test::TempDir dir;
    auto text = cut("cond_stage_model.model.", true);
    text.erase(std::remove_if(text.begin(), text.end(),
                              [](const RawTensor& t) { return t.name.rfind("transformer.resblocks.1.", 0) == 0; }),
               text.end());
    const std::string path = write(dir, text, "text.safetensors");
    CHECK_THROWS_STATUS(io::load_component(path, io::Component::text, whole().config), Status::bad_model,
                        "open '" + path + "': weights incomplete: 12 tensors missing: transformer.resblocks.1.");
}

TEST_CASE("a file in no known layout says which keys were expected") {
    test::TempDir dir;
    const std::string path = write(dir, {{"something.else", "F32", {1}, test::floats({1.0f})}}, "odd.safetensors");
    CHECK_THROWS_STATUS(io::load_component(path, io::Component::vae, whole().config), Status::bad_model,
                        "open '" + path + "': unknown layout: no vae tensors found (expected 'first_stage_model.encoder.down.0.block.0.conv1.weight'");
    CHECK_THROWS_STATUS(io::load_component((dir / "absent.safetensors").string(), io::Component::unet, whole().config),
                        Status::io, "absent.safetensors");
}

TEST_CASE("a model from components needs all three, and diffusers weights need their config.json") {
    test::TempDir dir;
    io::LoadOptions options = test::reduced();
    CHECK_THROWS_STATUS(io::load_checkpoint("", options), Status::invalid_argument, "neither a checkpoint path nor a unet_path");
    options.unet_path = write(dir, cut("model.diffusion_model.", true), "unet.safetensors");
    options.vae_path = write(dir, cut("first_stage_model.", true), "vae.safetensors");
    CHECK_THROWS_STATUS(io::load_checkpoint("", options), Status::invalid_argument, "(missing: text_encoder_path)");

    fs::copy_file(fs::path(test::golden("tiny_unclip_l")) / "text_encoder" / "model.safetensors", dir / "te.safetensors");
    options.text_encoder_path = (dir / "te.safetensors").string();
    CHECK_THROWS_STATUS(io::load_checkpoint("", options), Status::bad_model,
                        "open '" + options.text_encoder_path + "': diffusers weights without their folder's config.json");
}

TEST_CASE("component files that do not fit together are refused naming both") {
    test::TempDir dir;
    auto text = cut("cond_stage_model.model.", true);
    for (auto& t : text)  // a 16-wide tower: the golden UNet cross-attends to 32
        if (t.name == "token_embedding.weight" || t.name == "positional_embedding") {
            t.dims[1] = 16;
            t.bytes.resize(static_cast<std::size_t>(t.dims[0] * 16 * 2));
        }
    io::LoadOptions options = test::reduced();
    options.unet_path = write(dir, cut("model.diffusion_model.", true), "unet.safetensors");
    options.vae_path = write(dir, cut("first_stage_model.", true), "vae.safetensors");
    options.text_encoder_path = write(dir, text, "text.safetensors");
    CHECK_THROWS_STATUS(io::load_checkpoint("", options), Status::bad_model,
                        "open '" + options.text_encoder_path + "': the text encoder is 16 wide but the UNet in '" +
                            options.unet_path + "' cross-attends to 32");
}

}  // TEST_SUITE
