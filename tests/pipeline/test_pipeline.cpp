#include <atomic>
#include <cmath>
#include <cstring>
#include <thread>

#include "test_support.hpp"
#include "tiny_model.hpp"
#include "unclip/backend/cuda.hpp"
#include "unclip/io/safetensors.hpp"
#include "unclip/pipeline.hpp"

using namespace unclip;

namespace {
PipelineOptions tiny_options(int threads) {
    PipelineOptions o;
    o.model_path = test::tiny_model_path();
    o.allow_reduced = true;
    o.threads = threads;
    return o;
}

Pipeline& tiny_pipeline() {
    static Pipeline pipeline(tiny_options(2));
    return pipeline;
}

Image sample_image(int width, int height, int seed) {
    Image image;
    image.width = width;
    image.height = height;
    image.channels = 3;
    image.pixels.resize(static_cast<std::size_t>(width * height * 3));
    for (std::size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<std::uint8_t>((i * 37 + seed * 101) % 251);
    return image;
}

GenerateParams small_params() {
    GenerateParams p;
    p.width = 64;
    p.height = 48;
    p.steps = 4;
    p.seed = 5;
    p.images.push_back({sample_image(40, 30, 1), {}, 1.0f, 0.1f});
    return p;
}

// The tiny model's tensors under `prefix` as a file of their own, renamed to `rename` + the rest of
// the name; `nudged` (a full name), if given, gets 0.5 added to every value.
std::string cut_component(const test::TempDir& dir, const std::string& name, const std::string& prefix,
                          const std::string& rename, const std::string& nudged = "") {
    const auto file = io::SafetensorsFile::open(test::tiny_model_path());
    const std::string path = (dir / name).string();
    io::SafetensorsWriter writer(path);
    for (const auto& e : file.entries()) {
        if (e.name.rfind(prefix, 0) != 0) continue;
        Tensor t = file.get(e.name);
        if (e.name == nudged) {
            t = t.to(DType::f32);
            for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] += 0.5f;
        }
        writer.add(rename + e.name.substr(prefix.size()), t);
    }
    writer.finish();
    return path;
}

double mean_abs_difference(const Image& a, const Image& b) {
    double sum = 0;
    for (std::size_t i = 0; i < a.pixels.size(); ++i) sum += std::abs(int(a.pixels[i]) - int(b.pixels[i]));
    return sum / static_cast<double>(a.pixels.size());
}
}  // namespace

TEST_SUITE("pipeline") {

TEST_CASE("a generation is deterministic for a seed and changes with the seed, the image and the prompt") {
    Pipeline& pipeline = tiny_pipeline();
    const GenerateParams p = small_params();
    const auto first = pipeline.generate(p), again = pipeline.generate(p);
    REQUIRE(first.size() == 1);
    CHECK(first[0].width == 64);
    CHECK(first[0].height == 48);
    CHECK(first[0].channels == 3);
    CHECK(first[0].pixels == again[0].pixels);

    GenerateParams other_seed = p;
    other_seed.seed = 6;
    CHECK(mean_abs_difference(pipeline.generate(other_seed)[0], first[0]) > 1.0);
    GenerateParams other_image = p;
    other_image.images[0].image = sample_image(40, 30, 2);
    CHECK(mean_abs_difference(pipeline.generate(other_image)[0], first[0]) > 0.0);
    GenerateParams other_prompt = p;
    other_prompt.prompt = "a (red:1.3) bird";
    CHECK(mean_abs_difference(pipeline.generate(other_prompt)[0], first[0]) > 0.0);
}

TEST_CASE("the image of a generation does not depend on the thread count") {
    Pipeline single(tiny_options(1));
    CHECK(single.generate(small_params())[0].pixels == tiny_pipeline().generate(small_params())[0].pixels);
}

TEST_CASE("without a usable GPU, device auto runs on the CPU and device cuda is refused naming the reason") {
    if (cuda::compiled_with_cuda() && cuda::device_count() > 0) {
        MESSAGE("a GPU is present: the cuda label's tests cover device selection");
        return;
    }
    PipelineOptions o = tiny_options(2);
    o.device = ComputeDevice::automatic;
    Pipeline automatic(o);
    CHECK(automatic.device() == ComputeDevice::cpu);
    CHECK(automatic.device_description().find("CPU") != std::string::npos);
    CHECK(automatic.generate(small_params())[0].pixels == tiny_pipeline().generate(small_params())[0].pixels);
    o.device = ComputeDevice::cuda;
    CHECK_THROWS_STATUS(Pipeline{o}, Status::device, "device cuda requested, but no CUDA");
    o.device = static_cast<ComputeDevice>(7);
    CHECK_THROWS_STATUS(Pipeline{o}, Status::invalid_argument, "unknown device 7");
}

TEST_CASE("every sampler and scheduler runs through the pipeline and batches give distinct images") {
    Pipeline& pipeline = tiny_pipeline();
    for (const char* sampler : {"euler", "euler_ancestral", "heun", "dpm_2", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_sde", "ddim",
                                "uni_pc", "uni_pc_bh2"}) {
        INFO("sampler " << sampler);
        GenerateParams p = small_params();
        p.sampler = sampler;
        p.steps = 3;
        CHECK(pipeline.generate(p).size() == 1);
    }
    for (const char* scheduler : {"normal", "karras", "exponential", "simple", "sgm_uniform", "ddim_uniform"}) {
        INFO("scheduler " << scheduler);
        GenerateParams p = small_params();
        p.scheduler = scheduler;
        p.steps = 3;
        CHECK(pipeline.generate(p).size() == 1);
    }
    GenerateParams batch = small_params();
    batch.batch_count = 2;
    const auto images = pipeline.generate(batch);
    REQUIRE(images.size() == 2);
    CHECK(images[0].pixels != images[1].pixels);
}

TEST_CASE("progress reports every step with a preview and cancelling stops within one step") {
    Pipeline& pipeline = tiny_pipeline();
    GenerateParams p = small_params();
    p.steps = 5;
    p.preview = true;
    int calls = 0;
    p.on_progress = [&](const Progress& progress) {
        ++calls;
        CHECK(progress.step == calls);
        CHECK(progress.steps == 5);
        REQUIRE(progress.preview != nullptr);
        CHECK(progress.preview->width == 8);
        CHECK(progress.preview->height == 6);
        return true;
    };
    pipeline.generate(p);
    CHECK(calls == 5);

    calls = 0;
    p.on_progress = [&](const Progress&) { return ++calls < 2; };
    CHECK_THROWS_STATUS(pipeline.generate(p), Status::cancelled, "");
    CHECK(calls == 2);

    // cancel() from another thread stops the run too; the next run is not affected.
    std::atomic<bool> started{false};
    p.on_progress = [&](const Progress&) {
        started = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        return true;
    };
    std::thread canceller([&] {
        while (!started) std::this_thread::yield();
        pipeline.cancel();
    });
    CHECK_THROWS_STATUS(pipeline.generate(p), Status::cancelled, "");
    canceller.join();
    p.on_progress = nullptr;
    CHECK_NOTHROW(pipeline.generate(p));
}

TEST_CASE("img2img keeps the init image's size and a mask keeps the unmasked region") {
    Pipeline& pipeline = tiny_pipeline();
    GenerateParams p = small_params();
    p.init_image = sample_image(70, 52, 3);  // cropped to 64 x 48, as ComfyUI's VAEEncode
    p.denoise = 0.5f;
    const auto partial = pipeline.generate(p);
    CHECK(partial[0].width == 64);
    CHECK(partial[0].height == 48);

    // Masked: the left half is repainted, the right half is held at the original latent, so the
    // right side of the output equals a plain encode/decode of the init image there.
    Image mask;
    mask.width = 64;
    mask.height = 48;
    mask.channels = 1;
    mask.pixels.assign(64 * 48, 0);
    for (int y = 0; y < 48; ++y)
        for (int x = 0; x < 32; ++x) mask.pixels[static_cast<std::size_t>(y * 64 + x)] = 255;
    p.mask = mask;
    p.denoise = 1.0f;
    const auto masked = pipeline.generate(p);
    GenerateParams other = p;
    other.seed = 99;
    const auto masked_other_seed = pipeline.generate(other);
    // The held half's latents are the same for both seeds; only the VAE decoder's reach (its
    // convolutions and its global mid-block attention) carries the repainted half's change over.
    double right = 0, left = 0;
    for (int y = 0; y < 48; ++y)
        for (int x = 0; x < 64; ++x)
            for (int c = 0; c < 3; ++c) {
                const double d = std::abs(int(masked[0].at(x, y, c)) - int(masked_other_seed[0].at(x, y, c)));
                (x >= 48 ? right : x < 16 ? left : right) += x >= 48 || x < 16 ? d : 0.0;
            }
    MESSAGE("mean |difference| between seeds: repainted " << left / (16 * 48 * 3) << ", held " << right / (16 * 48 * 3));
    CHECK(left > 0.0);
    CHECK(right < 0.25 * left);
}

TEST_CASE("image embeddings are cached, blendable and usable in place of images") {
    Pipeline& pipeline = tiny_pipeline();
    const Image a = sample_image(50, 40, 4), b = sample_image(30, 60, 5);
    const auto ea = pipeline.encode_image(a), eb = pipeline.encode_image(b);
    REQUIRE(static_cast<int>(ea.size()) == pipeline.embedding_dim());
    CHECK(pipeline.encode_image(a) == ea);

    GenerateParams by_image = small_params();
    by_image.images = {{a, {}, 1.0f, 0.0f}};
    GenerateParams by_embedding = small_params();
    by_embedding.images = {{std::nullopt, ea, 1.0f, 0.0f}};
    CHECK(pipeline.generate(by_image)[0].pixels == pipeline.generate(by_embedding)[0].pixels);

    const auto mixed = mix_embeddings({ea, eb}, {0.25f, 0.75f});
    for (std::size_t i = 0; i < mixed.size(); i += 97) CHECK(mixed[i] == doctest::Approx(0.25 * ea[i] + 0.75 * eb[i]).epsilon(1e-6));
    const auto start = slerp_embeddings(ea, eb, 0.0f), end = slerp_embeddings(ea, eb, 1.0f);
    for (std::size_t i = 0; i < ea.size(); i += 101) {
        CHECK(start[i] == doctest::Approx(ea[i]).epsilon(1e-5));
        CHECK(end[i] == doctest::Approx(eb[i]).epsilon(1e-5));
    }
    // Halfway: the direction bisects the two and the norm is the mean of theirs.
    const auto half = slerp_embeddings(ea, eb, 0.5f);
    auto norm = [](const std::vector<float>& v) {
        double s = 0;
        for (float x : v) s += double(x) * x;
        return std::sqrt(s);
    };
    CHECK(norm(half) == doctest::Approx((norm(ea) + norm(eb)) / 2).epsilon(1e-5));
}

TEST_CASE("a text direction needs a text projection as wide as the image embedding") {
    // The tiny model's text tower is 64 wide and its image embeddings 1024 (as unclip-l's 768 against
    // OpenCLIP-H's 1024): refused with both sizes named. The arithmetic itself is mix_embeddings'.
    Pipeline& pipeline = tiny_pipeline();
    const auto e = pipeline.encode_image(sample_image(32, 32, 6));
    CHECK(pipeline.encode_text("a cat").pooled.numel() == 64);
    CHECK_THROWS_STATUS(pipeline.add_text_direction(e, "a dog", "a cat", 0.5f), Status::invalid_argument,
                        "has 1024 values, the text embedding 64");
    CHECK_THROWS_STATUS(pipeline.add_text_direction(e, "a dog", "a cat", NAN), Status::invalid_argument, "scale");
}

TEST_CASE("bad generation parameters are refused naming the parameter") {
    Pipeline& pipeline = tiny_pipeline();
    auto expect = [&](auto mutate, const char* needle) {
        GenerateParams p = small_params();
        mutate(p);
        CHECK_THROWS_STATUS(pipeline.generate(p), Status::invalid_argument, needle);
    };
    expect([](GenerateParams& p) { p.steps = 0; }, "steps 0");
    expect([](GenerateParams& p) { p.steps = 10000; }, "steps 10000");
    expect([](GenerateParams& p) { p.cfg_scale = NAN; }, "cfg_scale");
    expect([](GenerateParams& p) { p.width = 60; }, "multiple of 8");
    expect([](GenerateParams& p) { p.denoise = 0.0f; }, "denoise");
    expect([](GenerateParams& p) { p.denoise = 0.5f; }, "needs an init_image");
    expect([](GenerateParams& p) { p.sampler = "euler_b"; }, "uni_pc_bh2");
    expect([](GenerateParams& p) { p.scheduler = "linear"; }, "karras");
    expect([](GenerateParams& p) { p.images[0].noise_augmentation = 1.5f; }, "noise_augmentation");
    expect([](GenerateParams& p) { p.images[0].strength = 11.0f; }, "strength");
    expect([](GenerateParams& p) { p.images[0].strength = NAN; }, "strength");
    expect([](GenerateParams& p) { p.images[0] = {std::nullopt, std::vector<float>(7, 0.0f), 1.0f, 0.0f}; }, "embedding has 7 values");
    expect([](GenerateParams& p) { p.batch_count = 0; }, "batch_count");
    // Images whose pixel buffers do not match their sizes are refused before a byte is read.
    expect([](GenerateParams& p) {
        p.init_image = sample_image(64, 48, 3);
        p.init_image->pixels.resize(100);
    }, "init image: image 64x48x3 with 100 bytes");
    expect([](GenerateParams& p) {
        p.init_image = sample_image(64, 48, 3);
        p.init_image->channels = 5;
    }, "1-4 channels");
    expect([](GenerateParams& p) {
        p.init_image = sample_image(64, 48, 3);
        p.mask = sample_image(64, 48, 1);  // three channels
        p.mask->pixels.pop_back();
    }, "mask: image 64x48x3 with 9215 bytes");
    GenerateParams huge = small_params();
    huge.width = 65536;
    CHECK_THROWS_STATUS(pipeline.generate(huge), Status::bad_image, "65536");
}

TEST_CASE("separate UNet, VAE and text encoder files give the pixels of the whole model file") {
    test::TempDir dir;
    const std::string unet = cut_component(dir, "unet.safetensors", "model.diffusion_model.", "model.diffusion_model.");
    const std::string vae = cut_component(dir, "vae.safetensors", "first_stage_model.", "");  // ComfyUI VAE files: bare keys
    const std::string text = cut_component(dir, "text.safetensors", "cond_stage_model.model.", "");
    const std::string vision = cut_component(dir, "vision.safetensors", "embedder.model.visual.", "visual.");
    GenerateParams p = small_params();
    p.prompt = "a (red:1.2) bird";
    const auto expected = tiny_pipeline().generate(p);

    PipelineOptions replaced = tiny_options(2);
    replaced.unet_path = unet;
    replaced.vae_path = vae;
    replaced.text_encoder_path = text;
    CHECK(Pipeline(replaced).generate(p)[0].pixels == expected[0].pixels);

    PipelineOptions separate = tiny_options(2);
    separate.model_path.clear();
    separate.unet_path = unet;
    separate.vae_path = vae;
    separate.text_encoder_path = text;
    separate.clip_vision_path = vision;
    Pipeline from_components(separate);
    CHECK(from_components.model_config().variant == io::Variant::unclip_h);
    CHECK(from_components.generate(p)[0].pixels == expected[0].pixels);

    // The given file is the one used: a VAE whose last bias differs changes the picture.
    PipelineOptions other_vae = tiny_options(2);
    other_vae.vae_path = cut_component(dir, "vae2.safetensors", "first_stage_model.", "", "first_stage_model.decoder.conv_out.bias");
    CHECK(mean_abs_difference(Pipeline(other_vae).generate(p)[0], expected[0]) > 1.0);
}

TEST_CASE("a pipeline without model_path needs the UNet, VAE and text encoder files") {
    test::TempDir dir;
    PipelineOptions o = tiny_options(1);
    o.model_path.clear();
    CHECK_THROWS_STATUS(Pipeline{o}, Status::invalid_argument, "model_path is empty");
    o.unet_path = cut_component(dir, "unet.safetensors", "model.diffusion_model.", "");
    CHECK_THROWS_STATUS(Pipeline{o}, Status::invalid_argument, "missing: vae_path and text_encoder_path");
    o.vae_path = cut_component(dir, "text.safetensors", "cond_stage_model.model.", "");
    o.text_encoder_path = o.vae_path;
    CHECK_THROWS_STATUS(Pipeline{o}, Status::bad_model, "open '" + o.vae_path + "': holds a text encoder, not a VAE");
}

TEST_CASE("opening a missing or malformed model fails with the file named") {
    PipelineOptions o;
    o.model_path = "/nonexistent/model.safetensors";
    CHECK_THROWS_STATUS(Pipeline{o}, Status::io, "/nonexistent/model.safetensors");
    o.model_path = test::tiny_model_path();
    CHECK_THROWS_STATUS(Pipeline{o}, Status::bad_model, "allow_reduced");
}

}  // TEST_SUITE
