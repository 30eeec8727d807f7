// Beyond variations (issue #11): the Karlo prior against diffusers (PriorTransformer, its two
// schedulers, StableUnCLIPPipeline's prior stage end to end on a tiny unclip-l), the approximate
// text-embedding path, text-diff edits and blends (exact math), and bad input.
#include <cmath>
#include <filesystem>
#include <fstream>

#include "test_support.hpp"
#include "tiny_model.hpp"
#include "unclip/io/checkpoint.hpp"
#include "unclip/io/prior.hpp"
#include "unclip/io/random_checkpoint.hpp"
#include "unclip/nn/prior_transformer.hpp"
#include "unclip/pipeline.hpp"
#include "unclip/sampling/prior_scheduler.hpp"

using namespace unclip;
namespace fs = std::filesystem;

namespace {
// 8-bit outputs: only pixels whose float value lands within rounding of an integer boundary may
// differ by one step (as the pipeline golden).
constexpr double kDecodedImage = 1e-3;
// Exact math in float against double references: a few float roundings per element.
constexpr double kFloatMath = 1e-6;

Tensor as_tensor(const Image& image) {
    Tensor t = Tensor::empty(DType::f32, {image.height, image.width, image.channels});
    for (std::size_t i = 0; i < image.pixels.size(); ++i) t.data<float>()[i] = image.pixels[i];
    return t;
}

Tensor vec(const std::vector<float>& v) {
    Tensor t = Tensor::empty(DType::f32, {static_cast<std::int64_t>(v.size())});
    std::copy(v.begin(), v.end(), t.data<float>());
    return t;
}

double norm(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += static_cast<double>(x) * x;
    return std::sqrt(s);
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
    return s / (norm(a) * norm(b));
}

nn::PriorTransformerConfig forward_config(const nlohmann::json& c) {
    nn::PriorTransformerConfig p;
    p.heads = c.at("num_attention_heads");
    p.head_dim = c.at("attention_head_dim");
    p.layers = c.at("num_layers");
    p.embedding_dim = c.at("embedding_dim");
    p.num_embeddings = c.at("num_embeddings");
    p.norm_in = c.value("norm_in_type", "") == "layer";
    p.embedding_proj_norm = c.value("embedding_proj_norm_type", "") == "layer";
    p.embedding_proj_dim = c.value("embedding_proj_dim", 0);
    p.time_embed_dim = c.value("time_embed_dim", 0);
    return p;
}

// The tiny unclip-l folder with a prior that tests/golden/prior.py had the CLI write.
const std::string& tiny_l_with_prior() {
    static test::TempDir dir;
    static const std::string path = [] {
        const std::string p = (dir / "tiny-unclip-l").string();
        io::RandomCheckpointOptions options;
        options.dtype = DType::f32;
        options.seed = 5;
        options.layout = io::Layout::diffusers;
        io::write_random_checkpoint(p, io::tiny_unclip_l_config(), options);
        io::write_random_prior(p, io::tiny_prior_config(768), 5);
        return p;
    }();
    return path;
}

Pipeline& tiny_l_pipeline() {
    static Pipeline pipeline([] {
        PipelineOptions o;
        o.model_path = tiny_l_with_prior();
        o.allow_reduced = true;
        return o;
    }());
    return pipeline;
}

Pipeline& tiny_h_pipeline() {
    static Pipeline pipeline([] {
        PipelineOptions o;
        o.model_path = test::tiny_model_path();
        o.allow_reduced = true;
        return o;
    }());
    return pipeline;
}

Image picture(int seed) {
    Image im;
    im.width = im.height = 32;
    im.channels = 3;
    for (int i = 0; i < 32 * 32 * 3; ++i) im.pixels.push_back(static_cast<std::uint8_t>((i * (7 + seed) + seed * 31) % 251));
    return im;
}

void write_text(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}
}  // namespace

TEST_SUITE("prior") {

TEST_CASE("PriorTransformer matches diffusers with padded text masks and every supported option") {
    const test::Fixture fx("prior/prior_forward.safetensors");
    const nlohmann::json config = fx.config();
    for (const auto& [name, c] : config.items()) {
        INFO("case " << name);
        const nn::PriorTransformerConfig cfg = forward_config(c);
        const nn::WeightMap weights = fx.weights(name + ".prior.");
        const nn::PriorTransformer<CpuBackend, float> prior(cfg, nn::load_prior_transformer<float>(weights, "", cfg));
        const Tensor x = fx[name + ".x"], proj = fx[name + ".proj_embedding"], hidden = fx[name + ".hidden"];
        const Tensor lengths_f = fx[name + ".lengths"];
        std::vector<std::int64_t> lengths;
        for (std::int64_t i = 0; i < lengths_f.numel(); ++i) lengths.push_back(static_cast<std::int64_t>(lengths_f.data<const float>()[i]));
        Tensor out = Tensor::empty(DType::f32, x.shape());
        CpuBackend::Context ctx(1);
        Scratch scratch;
        scratch.reserve(prior.scratch_bytes());
        prior.forward(ctx, view_of<const float>(x), c.at("timestep").get<float>(), view_of<const float>(proj),
                      view_of<const float>(hidden), lengths.data(), view_of<float>(out), scratch);
        CHECK_CLOSE(out, fx[name + ".expected"], test::kFp32Module);
        prior.post_process(out.data<float>(), x.dim(0));
        CHECK_CLOSE(out, fx[name + ".post_processed"], test::kFp32Module);
    }
}

TEST_CASE("the prior sampling loop matches diffusers' UnCLIPScheduler and DDPMScheduler with torch noise") {
    const test::Fixture fx("prior/scheduler_loop.safetensors");
    const nlohmann::json cases = fx.config();
    for (const auto& c : cases) {
        const std::string name = c.at("name");
        INFO("case " << name);
        const auto config = sampling::PriorSchedulerConfig::from_json(c.at("scheduler_config"), name);
        const sampling::PriorScheduler scheduler(config);
        const int steps = c.at("steps");
        const std::vector<int> ts = scheduler.timesteps(steps);
        const Tensor expected_ts = fx[name + ".timesteps"];
        REQUIRE(expected_ts.numel() == static_cast<std::int64_t>(ts.size()));
        for (std::size_t i = 0; i < ts.size(); ++i) CHECK(ts[i] == static_cast<int>(expected_ts.data<const float>()[i]));
        sampling::PriorSampleParams p;
        p.steps = steps;
        p.guidance_scale = 1.0f;  // the golden has no guidance: one branch
        p.seed = c.at("seed");
        const auto latents = sampling::sample_prior(scheduler, p, 2, 40, [](const float* x, std::int64_t rows, int t, float* out) {
            for (std::int64_t i = 0; i < rows * 40; ++i) out[i] = std::tanh(x[i] * 0.75f + static_cast<float>(t / 1000.0)) * 1.5f;
        });
        Tensor got = Tensor::empty(DType::f32, {2, 40});
        std::copy(latents.begin(), latents.end(), got.data<float>());
        CHECK_CLOSE(got, fx[name + ".latents"], test::kFp32Module);
    }
}

TEST_CASE("text to image on the tiny unclip-l matches StableUnCLIPPipeline's prior and ComfyUI's graph") {
    const test::Fixture fx("prior/tiny_text_to_image.safetensors");
    const auto c = fx.config();
    REQUIRE(c.at("model_seed") == 5);  // tiny_l_with_prior() writes the same files
    Pipeline& pipeline = tiny_l_pipeline();
    REQUIRE(pipeline.has_prior());
    PriorParams prior;
    prior.steps = c.at("prior_steps");
    prior.guidance_scale = c.at("prior_guidance");
    prior.seed = c.at("prior_seed");
    const std::vector<float> embedding = pipeline.prior_embedding(c.at("prompt"), prior);
    const Tensor expected = fx["prior.embedding"];
    CHECK_CLOSE(vec(embedding), Tensor(expected).reshape({expected.numel()}), test::kFp32Module);

    GenerateParams p;
    p.images.push_back({std::nullopt, embedding, 1.0f, c.at("noise_augmentation").get<float>()});
    p.prompt = c.at("prompt");
    p.negative_prompt = c.at("negative");
    p.steps = c.at("steps");
    p.cfg_scale = c.at("cfg");
    p.seed = c.at("seed");
    p.width = c.at("width");
    p.height = c.at("height");
    CHECK_CLOSE(as_tensor(pipeline.generate(p).front()), fx["image"], kDecodedImage);
}

TEST_CASE("on unclip-l the prior's CLIP text tower serves text directions and edits") {
    Pipeline& pipeline = tiny_l_pipeline();
    const auto z = pipeline.encode_image(picture(1));
    REQUIRE(z.size() == 768u);
    const auto moved = pipeline.add_text_direction(z, "a dog", "a cat", 0.5f);
    CHECK(moved.size() == 768u);
    CHECK(moved != z);
    const auto edited = pipeline.text_diff_edit(z, "a dog", "a cat", 1.0f, 0.5f);
    CHECK(norm(edited) == doctest::Approx(norm(z)).epsilon(1e-5));
}

TEST_CASE("a text-diff edit is the slerp from the image to the rescaled text-moved embedding") {
    const std::vector<float> z = {3.0f, 0.0f, 4.0f, 0.0f};       // |z| = 5
    const std::vector<float> source = {0.0f, 1.0f, 0.0f, 0.0f};
    const std::vector<float> target = {0.0f, 1.0f, 0.0f, 2.5f};   // t_target - t_source = 2.5 e_4
    // d = z + 2 * 2.5 e_4 = (3, 0, 4, 5), |d| = 5 sqrt(2): rescaled to |z| it is d / sqrt(2),
    // 45 degrees from z, so theta = 0.5 is 22.5 degrees from z with norm 5.
    CHECK_CLOSE(vec(text_diff_embedding(z, source, target, 2.0f, 0.0f)), vec(z), kFloatMath);
    const double r = 1.0 / std::sqrt(2.0);
    CHECK_CLOSE(vec(text_diff_embedding(z, source, target, 2.0f, 1.0f)),
                vec(std::vector<float>{static_cast<float>(3 * r), 0.0f, static_cast<float>(4 * r), static_cast<float>(5 * r)}), kFloatMath);
    const auto half = text_diff_embedding(z, source, target, 2.0f, 0.5f);
    const double angle = std::acos(cosine(half, z));
    CHECK(angle == doctest::Approx(std::acos(-1.0) / 8).epsilon(1e-5));
    CHECK(norm(half) == doctest::Approx(5.0).epsilon(1e-6));
    // alpha = 0 leaves the image embedding whatever theta is.
    CHECK_CLOSE(vec(text_diff_embedding(z, source, target, 0.0f, 0.7f)), vec(z), kFloatMath);
}

TEST_CASE("blends are running slerps and match slerp_embeddings for two inputs") {
    const std::vector<float> a = {1.0f, 0.0f, 0.0f}, b = {0.0f, 2.0f, 0.0f}, c = {0.0f, 0.0f, 3.0f};
    CHECK_CLOSE(vec(blend_embeddings({a, b}, {1.0f, 3.0f})), vec(slerp_embeddings(a, b, 0.75f)), kFloatMath);
    // Zero weights are skipped; a single input comes back unchanged.
    CHECK_CLOSE(vec(blend_embeddings({a, b, c}, {0.0f, 2.0f, 0.0f})), vec(b), kFloatMath);
    // Three equal weights: slerp(slerp(a, b, 1/2), c, 1/3).
    const auto three = blend_embeddings({a, b, c}, {1.0f, 1.0f, 1.0f});
    CHECK_CLOSE(vec(three), vec(slerp_embeddings(slerp_embeddings(a, b, 0.5f), c, 1.0f / 3.0f)), kFloatMath);
    CHECK(norm(three) == doctest::Approx(2.0).epsilon(1e-6));  // magnitudes interpolate linearly: (1.5 * 2 + 3) / 3
    // Weighted sums stay mix_embeddings'.
    CHECK_CLOSE(vec(mix_embeddings({a, b, c}, {1.0f, 0.5f, -1.0f})), vec(std::vector<float>{1.0f, 1.0f, -3.0f}), kFloatMath);
}

TEST_CASE("without a prior, the text embedding is an image embedding rescaled to the requested norm") {
    // The tiny -h text tower projects to 64 values, its image embeddings are 1024: refused, named.
    CHECK_THROWS_STATUS(tiny_h_pipeline().text_image_embedding("a cat", 10.0f), Status::invalid_argument,
                        "has 1024 values, the text embedding 64");
    // On the tiny -l with a prior the prior's text tower is the CLIP-L one: its direction, our norm.
    Pipeline& pipeline = tiny_l_pipeline();
    const auto e = pipeline.text_image_embedding("a red cat", 12.5f);
    CHECK(norm(e) == doctest::Approx(12.5).epsilon(1e-5));
    const auto automatic = pipeline.text_image_embedding("a red cat");
    Image grey;
    grey.width = grey.height = 224;
    grey.channels = 3;
    grey.pixels.assign(224 * 224 * 3, 128);
    CHECK(norm(automatic) == doctest::Approx(norm(pipeline.encode_image(grey))).epsilon(1e-5));
    CHECK(cosine(automatic, e) == doctest::Approx(1.0).epsilon(1e-6));
}

TEST_CASE("bad prior input is refused with a status naming the culprit") {
    Pipeline& pipeline = tiny_l_pipeline();
    const auto z = pipeline.encode_image(picture(2));
    CHECK_THROWS_STATUS(pipeline.text_diff_edit(z, "a", "b", NAN, 0.5f), Status::invalid_argument, "alpha");
    CHECK_THROWS_STATUS(pipeline.text_diff_edit(z, "a", "b", 1.0f, 1.5f), Status::invalid_argument, "theta");
    CHECK_THROWS_STATUS(text_diff_embedding({1, 2}, {1, 2, 3}, {1, 2}, 1.0f, 0.5f), Status::invalid_argument, "values");
    CHECK_THROWS_STATUS(text_diff_embedding({0, 0}, {1, 0}, {0, 1}, 1.0f, 0.5f), Status::invalid_argument, "zero");
    CHECK_THROWS_STATUS(blend_embeddings({{1, 0}, {0, 1}}, {1.0f, -1.0f}), Status::invalid_argument, "weight 1");
    CHECK_THROWS_STATUS(blend_embeddings({{1, 0}, {0, 1, 0}}, {1.0f, 1.0f}), Status::invalid_argument, "sizes");
    CHECK_THROWS_STATUS(blend_embeddings({{1, 0}}, {0.0f}), Status::invalid_argument, "all weights are zero");
    PriorParams bad;
    bad.guidance_scale = NAN;
    CHECK_THROWS_STATUS(pipeline.prior_embedding("a cat", bad), Status::invalid_argument, "guidance_scale");
    bad = {};
    bad.steps = 0;
    CHECK_THROWS_STATUS(pipeline.prior_embedding("a cat", bad), Status::invalid_argument, "prior steps 0");
    CHECK_THROWS_STATUS(tiny_h_pipeline().prior_embedding("a cat"), Status::invalid_argument, "no prior");

    // Scheduler configs: unknown class, unsupported schedule or options, malformed JSON.
    using sampling::PriorSchedulerConfig;
    CHECK_THROWS_STATUS(PriorSchedulerConfig::from_json(R"({"_class_name": "EulerDiscreteScheduler"})", "cfg.json"),
                        Status::bad_model, "unknown scheduler \"_class_name\" 'EulerDiscreteScheduler'");
    CHECK_THROWS_STATUS(PriorSchedulerConfig::from_json(R"({"_class_name": "DDPMScheduler"})", "cfg.json"),
                        Status::bad_model, "beta_schedule 'linear'");
    CHECK_THROWS_STATUS(PriorSchedulerConfig::from_json(R"({"_class_name": "UnCLIPScheduler", "variance_type": "learned_range"})", "cfg.json"),
                        Status::bad_model, "variance_type 'learned_range'");
    CHECK_THROWS_STATUS(PriorSchedulerConfig::from_json(R"({"_class_name": "DDPMScheduler", "beta_schedule": "squaredcos_cap_v2", "thresholding": true})", "cfg.json"),
                        Status::bad_model, "thresholding");
    CHECK_THROWS_STATUS(PriorSchedulerConfig::from_json("{not json", "cfg.json"), Status::bad_model, "cfg.json: not a JSON object");
    CHECK_THROWS_STATUS(sampling::PriorScheduler(PriorSchedulerConfig{}).timesteps(1), Status::invalid_argument, "prior steps 1");

    // Broken prior folders: a bad scheduler config, mismatched widths, a missing tensor.
    test::TempDir dir;
    const auto copy = [&](const std::string& name) {
        const fs::path to = dir / name;
        fs::create_directories(to);
        for (const char* sub : {"prior", "prior_text_encoder", "prior_tokenizer", "prior_scheduler"})
            fs::copy(fs::path(tiny_l_with_prior()) / sub, to / sub, fs::copy_options::recursive);
        return to;
    };
    const fs::path sched = copy("sched");
    write_text(sched / "prior_scheduler" / "scheduler_config.json", R"({"_class_name": "KarrasVeScheduler"})");
    CHECK_THROWS_STATUS(io::load_prior(sched.string()), Status::bad_model, "KarrasVeScheduler");
    const fs::path widths = copy("widths");
    {
        std::ifstream in(widths / "prior" / "config.json");
        nlohmann::json j = nlohmann::json::parse(in);
        j["embedding_dim"] = 512;
        write_text(widths / "prior" / "config.json", j.dump());
    }
    CHECK_THROWS_STATUS(io::load_prior(widths.string()), Status::bad_model, "does not fit the prior (embedding_dim 512");
    const fs::path missing = copy("missing");
    fs::remove(missing / "prior_text_encoder" / "model.safetensors");
    CHECK_THROWS_STATUS(io::load_prior(missing.string()), Status::bad_model, "no weight file");
    CHECK_THROWS_STATUS(io::load_prior((dir / "nowhere").string()), Status::io, "not a folder");
    // A 768-wide prior next to a 1024-wide unclip-h is refused when asked for an embedding.
    PipelineOptions o;
    o.model_path = test::tiny_model_path();
    o.allow_reduced = true;
    o.prior_path = tiny_l_with_prior();
    Pipeline mismatched(o);
    CHECK_THROWS_STATUS(mismatched.prior_embedding("a cat"), Status::invalid_argument, "768-wide image embeddings, the model (unclip-h) takes 1024");
}

}  // TEST_SUITE
