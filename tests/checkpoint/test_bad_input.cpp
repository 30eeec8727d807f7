// Every kind of bad checkpoint is a clear error with the right status that names the culprit;
// a separate CLIP vision file can stand in for a checkpoint's missing image tower.
#include <algorithm>
#include <fstream>
#include <random>

#include "checkpoint_helpers.hpp"

using namespace unclip;
using test::RawTensor;

namespace {
namespace fs = std::filesystem;

std::vector<RawTensor> golden_tensors() { return test::raw_tensors(test::golden("tiny_unclip_l.safetensors")); }

RawTensor& named(std::vector<RawTensor>& tensors, const std::string& name) {
    const auto it = std::find_if(tensors.begin(), tensors.end(), [&](const RawTensor& t) { return t.name == name; });
    if (it == tensors.end()) throw std::runtime_error("golden lacks " + name);
    return *it;
}

std::string write(const test::TempDir& dir, const std::vector<RawTensor>& tensors, const std::string& name = "m.safetensors") {
    const auto path = dir / name;
    test::write_raw_safetensors(path, tensors);
    return path.string();
}

void copy_golden_folder(const fs::path& to) { fs::copy(test::golden("tiny_unclip_l"), to, fs::copy_options::recursive); }

const char* kDecoderConvIn = "first_stage_model.decoder.conv_in.weight";  // [16, 4, 3, 3], not used for detection
}  // namespace

TEST_SUITE("checkpoint") {

TEST_CASE("missing tensors are listed by name, the first few of them") {
    test::TempDir dir;
    auto tensors = golden_tensors();
    std::vector<std::string> removed;
    tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                                 [&](const RawTensor& t) {
                                     const bool drop = t.name.find("model.diffusion_model.output_blocks.1.0.") == 0;
                                     if (drop) removed.push_back(t.name);
                                     return drop;
                                 }),
                  tensors.end());
    REQUIRE(removed.size() > 5);
    CHECK_THROWS_STATUS(io::load_checkpoint(write(dir, tensors), test::reduced()), Status::bad_model,
                        std::to_string(removed.size()) + " tensors missing: model.diffusion_model.output_blocks.1.0.");
    CHECK_THROWS_STATUS(io::load_checkpoint(write(dir, tensors), test::reduced()), Status::bad_model,
                        "(" + std::to_string(removed.size() - 5) + " more)");
}

TEST_CASE("a wrong shape names the tensor, the expected and the found shape") {
    test::TempDir dir;
    auto tensors = golden_tensors();
    auto& t = named(tensors, kDecoderConvIn);
    t.dims = {16, 4, 3, 1};
    t.bytes.resize(16 * 4 * 3 * 2);
    CHECK_THROWS_STATUS(io::load_checkpoint(write(dir, tensors), test::reduced()), Status::bad_model,
                        "tensor 'first_stage_model.decoder.conv_in.weight': shape [16, 4, 3, 1], expected [16, 4, 3, 3]");
}

TEST_CASE("an ADM width that no unCLIP model has is an unknown variant") {
    test::TempDir dir;
    auto tensors = golden_tensors();
    auto& t = named(tensors, "model.diffusion_model.label_emb.0.0.weight");
    t.dims = {32, 1000};
    t.bytes.resize(32 * 1000 * 2);
    CHECK_THROWS_STATUS(io::load_checkpoint(write(dir, tensors), test::reduced()), Status::bad_model,
                        "unknown variant: the UNet's ADM input (label_emb) is 1000 wide");
}

TEST_CASE("a reduced model is an unknown variant unless reduced sizes are allowed") {
    CHECK_THROWS_STATUS(io::load_checkpoint(test::golden("tiny_unclip_l.safetensors")), Status::bad_model,
                        "unknown variant: the ADM input says unclip-l but UNet model_channels 8 (expected 320)");
    CHECK_THROWS_STATUS(io::load_checkpoint(test::golden("tiny_unclip_l")), Status::bad_model, "unknown variant");
    CHECK_THROWS_STATUS(io::load_checkpoint(test::golden("tiny_unclip_l.ckpt")), Status::bad_model, "unknown variant");
}

TEST_CASE("an fp8 or integer tensor where a weight is needed is refused with its dtype") {
    test::TempDir dir;
    auto tensors = golden_tensors();
    auto& t = named(tensors, kDecoderConvIn);
    t.dtype = "F8_E4M3";
    t.bytes.resize(16 * 4 * 3 * 3);
    CHECK_THROWS_STATUS(io::load_checkpoint(write(dir, tensors), test::reduced()), Status::bad_model,
                        "tensor 'first_stage_model.decoder.conv_in.weight': dtype F8_E4M3 not supported");
    t.dtype = "I64";
    t.bytes.resize(16 * 4 * 3 * 3 * 8);
    CHECK_THROWS_STATUS(io::load_checkpoint(write(dir, tensors), test::reduced()), Status::bad_model,
                        "tensor 'first_stage_model.decoder.conv_in.weight': dtype I64 not supported");
}

TEST_CASE("integer tensors nobody needs are ignored") {
    const auto file = io::SafetensorsFile::open(test::golden("tiny_unclip_l.safetensors"));
    REQUIRE(file.find("model_ema.num_updates") != nullptr);
    CHECK(file.find("model_ema.num_updates")->dtype_name == "I32");
    CHECK_NOTHROW(io::load_checkpoint(test::golden("tiny_unclip_l.safetensors"), test::reduced()));
}

TEST_CASE("a truncated safetensors file is an error naming it") {
    test::TempDir dir;
    std::ifstream in(test::golden("tiny_unclip_l.safetensors"), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    test::write_bytes(dir / "cut.safetensors", bytes.substr(0, bytes.size() / 2));
    CHECK_THROWS_STATUS(io::load_checkpoint((dir / "cut.safetensors").string(), test::reduced()), Status::bad_model,
                        "cut.safetensors");
}

TEST_CASE("a missing file is an I/O error and a folder without model_index.json is not a pipeline") {
    test::TempDir dir;
    CHECK_THROWS_STATUS(io::load_checkpoint((dir / "absent.safetensors").string()), Status::io, "absent.safetensors");
    fs::create_directories(dir / "unet");
    CHECK_THROWS_STATUS(io::load_checkpoint(dir.path().string()), Status::bad_model, "without model_index.json");
}

TEST_CASE("a diffusers folder without its VAE names the missing component") {
    test::TempDir dir;
    copy_golden_folder(dir / "p");
    fs::remove_all(dir / "p" / "vae");
    CHECK_THROWS_STATUS(io::load_checkpoint((dir / "p").string(), test::reduced()), Status::bad_model,
                        "component 'vae' is missing");
}

TEST_CASE("a diffusers tensor of the wrong shape is named with its diffusers name and file") {
    test::TempDir dir;
    copy_golden_folder(dir / "p");
    const auto unet = dir / "p" / "unet" / "diffusion_pytorch_model.safetensors";
    auto tensors = test::raw_tensors(unet.string());
    auto& t = named(tensors, "conv_out.weight");
    t.dims = {4, 8, 3, 1};
    t.bytes.resize(4 * 8 * 3 * 2);
    test::write_raw_safetensors(unet, tensors);
    CHECK_THROWS_STATUS(io::load_checkpoint((dir / "p").string(), test::reduced()), Status::bad_model,
                        "tensor 'conv_out.weight': shape [4, 8, 3, 1], expected [4, 8, 3, 3]");
    CHECK_THROWS_STATUS(io::load_checkpoint((dir / "p").string(), test::reduced()), Status::bad_model,
                        "diffusion_pytorch_model.safetensors");
}

TEST_CASE("a checkpoint without an image tower takes one from a separate CLIP vision file in either layout") {
    test::TempDir dir;
    auto tensors = golden_tensors();
    std::vector<RawTensor> without, open_clip;
    for (const auto& t : tensors) {
        if (t.name.rfind("embedder.model.visual.", 0) == 0) {
            RawTensor v = t;
            v.name = "visual." + t.name.substr(22);  // open_clip's own state-dict names
            open_clip.push_back(std::move(v));
        } else {
            without.push_back(t);
        }
    }
    const std::string bare = write(dir, without, "bare.safetensors");
    const io::Checkpoint plain = io::load_checkpoint(bare, test::reduced());
    CHECK(plain.config.vision.kind == io::VisionKind::none);
    CHECK(plain.vision.size() == 0);

    const io::Checkpoint reference = io::load_checkpoint(test::golden("tiny_unclip_l.safetensors"), test::reduced());
    io::LoadOptions options = test::reduced();
    options.clip_vision_path = write(dir, open_clip, "open_clip_vision.safetensors");
    const io::Checkpoint with_open_clip = io::load_checkpoint(bare, options);
    CHECK(with_open_clip.config.vision.kind == io::VisionKind::openai_l);
    CHECK(test::differences(with_open_clip.vision, reference.vision).empty());

    // transformers layout, as ComfyUI's clip_vision files and diffusers' image_encoder have it
    options.clip_vision_path = test::golden("tiny_unclip_l/image_encoder/model.safetensors");
    const io::Checkpoint with_hf = io::load_checkpoint(bare, options);
    CHECK(test::differences(with_hf.vision, reference.vision).empty());

    io::VisionArch arch;
    const nn::WeightMap alone = io::load_clip_vision(test::golden("tiny_unclip_l/image_encoder"), arch, true);
    CHECK(arch.embed_dim == 768);
    CHECK(arch.layers == 2);
    CHECK(test::differences(alone, reference.vision).empty());
    CHECK_THROWS_STATUS(io::load_clip_vision(options.clip_vision_path, arch), Status::bad_model, "unknown image tower");
}

TEST_CASE("a CLIP vision file whose embedding does not fit the UNet's ADM input is refused") {
    test::TempDir dir;
    auto vision = test::raw_tensors(test::golden("tiny_unclip_l/image_encoder/model.safetensors"));
    auto& proj = named(vision, "visual_projection.weight");
    proj.dims = {100, 32};
    proj.bytes.resize(100 * 32 * 2);
    io::LoadOptions options = test::reduced();
    options.clip_vision_path = write(dir, vision, "vision.safetensors");
    CHECK_THROWS_STATUS(io::load_checkpoint(test::golden("tiny_unclip_l.safetensors"), options), Status::bad_model,
                        "embeds to 100 features but the UNet's ADM input (1536) expects 768");
}

TEST_CASE("a file that has no UNet at all is refused naming the key it looked for") {
    test::TempDir dir;
    auto tensors = golden_tensors();
    tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                                 [](const RawTensor& t) { return t.name.rfind("model.diffusion_model.", 0) == 0; }),
                  tensors.end());
    CHECK_THROWS_STATUS(io::load_checkpoint(write(dir, tensors), test::reduced()), Status::bad_model,
                        "no UNet found: 'model.diffusion_model.input_blocks.0.0.weight' is missing");
}

}  // TEST_SUITE

TEST_SUITE("checkpoint") {

TEST_CASE("a tensor that detection reads sizes from is named when missing or of the wrong rank") {
    test::TempDir dir;
    auto tensors = golden_tensors();
    tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                                 [](const RawTensor& t) { return t.name == "cond_stage_model.model.positional_embedding"; }),
                  tensors.end());
    CHECK_THROWS_STATUS(io::load_checkpoint(write(dir, tensors), test::reduced()), Status::bad_model,
                        "'cond_stage_model.model.positional_embedding' is missing");
    auto flat = golden_tensors();
    auto& conv = named(flat, "embedder.model.visual.conv1.weight");
    conv.dims = {static_cast<std::int64_t>(conv.bytes.size() / 2)};
    CHECK_THROWS_STATUS(io::load_checkpoint(write(dir, flat), test::reduced()), Status::bad_model,
                        "tensor 'embedder.model.visual.conv1.weight': shape [");
}

}  // TEST_SUITE

TEST_SUITE("checkpoint") {

TEST_CASE("corrupted and truncated golden files either load or fail with unclip::Error, never otherwise") {
    test::TempDir dir;
    for (const char* name : {"tiny_unclip_l.ckpt", "tiny_unclip_l.safetensors"}) {
        std::ifstream in(test::golden(name), std::ios::binary);
        const std::string original((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::mt19937_64 rng(12345);
        int refused = 0;
        for (int round = 0; round < 150; ++round) {
            std::string bytes = original;
            if (round % 2) bytes.resize(rng() % bytes.size());
            else for (int k = 0; k < 8; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng());
            const auto path = dir / name;
            test::write_bytes(path, bytes);
            try {
                const io::Checkpoint c = io::load_checkpoint(path.string(), test::reduced());
                for (io::Component comp : {io::Component::unet, io::Component::vae, io::Component::text, io::Component::vision})
                    io::convert_weights(c.weights(comp), DType::f32);
            } catch (const Error& e) {
                ++refused;
                CHECK_MESSAGE(std::string(e.what()).find(name) != std::string::npos, e.what());
            } catch (const std::exception& e) {
                FAIL_CHECK("round " << round << ": " << e.what());
            }
        }
        CHECK(refused >= 75);  // every truncation at least is refused
    }
}

}  // TEST_SUITE
