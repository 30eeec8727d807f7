// The prior, text-diff edits and blends through the C API and the CLI: the same numbers as the
// C++ API, statuses and messages for bad input, and the CLI's contact sheet.
#include <unclip.h>

#include <cmath>
#include <cstddef>
#include <cstdlib>

#include "test_support.hpp"
#include "unclip/image.hpp"
#include "unclip/io/checkpoint.hpp"
#include "unclip/io/prior.hpp"
#include "unclip/io/random_checkpoint.hpp"
#include "unclip/pipeline.hpp"

using namespace unclip;

namespace {
const std::string kSample = std::string(UNCLIP_TEST_DATA_DIR) + "/../../examples/data/sample.png";

const std::string& tiny_l_folder() {
    static test::TempDir dir;
    static const std::string path = [] {
        const std::string p = (dir / "tiny-unclip-l").string();
        io::RandomCheckpointOptions options;
        options.dtype = DType::f32;
        options.seed = 3;
        options.layout = io::Layout::diffusers;
        io::write_random_checkpoint(p, io::tiny_unclip_l_config(), options);
        io::write_random_prior(p, io::tiny_prior_config(768), 3);
        return p;
    }();
    return path;
}
}  // namespace

TEST_SUITE("prior") {

TEST_CASE("the C API gives the C++ API's prior embeddings, edits and blends, and refuses bad input") {
    PipelineOptions o;
    o.model_path = tiny_l_folder();
    o.allow_reduced = true;
    Pipeline cpp(o);
    PriorParams prior;
    prior.steps = 3;
    prior.seed = 4;
    const std::vector<float> expected = cpp.prior_embedding("a blue bird", prior);

    unclip_open_params op;
    REQUIRE(unclip_open_default_params(&op) == UNCLIP_STATUS_OK);
    CHECK(op.prior_path == nullptr);
    const std::string folder = tiny_l_folder();
    op.model_path = folder.c_str();
    op.prior_path = folder.c_str();
    op.allow_reduced = true;
    unclip_pipeline* p = nullptr;
    REQUIRE(unclip_pipeline_open(&op, &p) == UNCLIP_STATUS_OK);
    const int n = unclip_pipeline_embedding_size(p);
    REQUIRE(n == 768);

    unclip_prior_params pp;
    REQUIRE(unclip_prior_default_params(&pp) == UNCLIP_STATUS_OK);
    CHECK(pp.steps == 25);
    CHECK(pp.guidance_scale == 4.0f);
    pp.steps = 3;
    pp.seed = 4;
    std::vector<float> got(static_cast<std::size_t>(n));
    REQUIRE(unclip_pipeline_prior_embedding(p, "a blue bird", &pp, got.data(), n) == UNCLIP_STATUS_OK);
    CHECK(got == expected);
    CHECK(unclip_pipeline_prior_embedding(p, "a blue bird", &pp, got.data(), n - 1) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(unclip_pipeline_last_error(p)).find("capacity 767") != std::string::npos);
    pp.steps = 0;
    CHECK(unclip_pipeline_prior_embedding(p, "x", &pp, got.data(), n) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(unclip_pipeline_last_error(p)).find("prior steps 0") != std::string::npos);

    // An old caller's smaller unclip_open_params (without prior_path) still opens: the prior then
    // comes from the model folder itself.
    unclip_open_params old = op;
    old.struct_size = static_cast<uint32_t>(offsetof(unclip_open_params, prior_path));
    unclip_pipeline* q = nullptr;
    REQUIRE(unclip_pipeline_open(&old, &q) == UNCLIP_STATUS_OK);
    CHECK(unclip_pipeline_prior_embedding(q, "a blue bird", nullptr, got.data(), n) == UNCLIP_STATUS_OK);
    unclip_pipeline_free(q);

    const std::vector<float> z = cpp.encode_image(load_image(kSample));
    const std::vector<float> edited = cpp.text_diff_edit(z, "a photo", "a painting", 0.8f, 0.3f);
    std::vector<float> out(z.size());
    REQUIRE(unclip_pipeline_text_diff_edit(p, z.data(), n, "a photo", "a painting", 0.8f, 0.3f, out.data()) == UNCLIP_STATUS_OK);
    CHECK(out == edited);
    CHECK(unclip_pipeline_text_diff_edit(p, z.data(), n, "a", "b", NAN, 0.3f, out.data()) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(unclip_pipeline_last_error(p)).find("alpha") != std::string::npos);
    CHECK(unclip_pipeline_text_diff_edit(p, z.data(), n - 1, "a", "b", 1.0f, 0.3f, out.data()) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(unclip_pipeline_last_error(p)).find("n 767") != std::string::npos);
    CHECK(unclip_pipeline_text_diff_edit(p, z.data(), n, nullptr, "b", 1.0f, 0.3f, out.data()) == UNCLIP_STATUS_INVALID_ARGUMENT);
    unclip_pipeline_free(p);

    const float a[3] = {1, 0, 0}, b[3] = {0, 2, 0};
    const float* both[2] = {a, b};
    const float weights[2] = {1.0f, 3.0f}, bad_weights[2] = {1.0f, NAN};
    float blended[3];
    REQUIRE(unclip_embedding_blend(both, weights, 2, 3, blended) == UNCLIP_STATUS_OK);
    const auto reference = blend_embeddings({{1, 0, 0}, {0, 2, 0}}, {1.0f, 3.0f});
    for (int i = 0; i < 3; ++i) CHECK(blended[i] == reference[static_cast<std::size_t>(i)]);
    CHECK(unclip_embedding_blend(both, bad_weights, 2, 3, blended) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(unclip_last_error()).find("weight 1") != std::string::npos);
}

#ifdef UNCLIP_CLI_PATH
TEST_CASE("the CLI makes text-to-image, text-diff edits and interpolation contact sheets") {
    test::TempDir dir;
    const auto run = [&](const std::string& arguments) {
        const std::string command = std::string(UNCLIP_CLI_PATH) + " " + arguments + " > " + (dir / "cli.log").string() + " 2>&1";
        return std::system(command.c_str());
    };
    const std::string model = (dir / "tiny-l").string();
    REQUIRE(run("make-tiny-model --diffusers --variant unclip-l --prior --seed 2 " + model) == 0);
    const std::string common = " --model " + model + " --allow-reduced -q --steps 1 --width 32 --height 32";
    CHECK(run("variation" + common + " --text-image -p \"a cat\" --prior-steps 2 -o " + (dir / "t.png").string()) == 0);
    CHECK(load_image((dir / "t.png").string()).width == 32);
    CHECK(run("variation" + common + " --image " + kSample + " --edit \"a photo\" \"a drawing\" --edit-theta 0.4 -o " +
              (dir / "e.png").string()) == 0);
    CHECK(std::filesystem::exists(dir / "e.png"));
    CHECK(run("variation" + common + " --interpolate " + kSample + " " + kSample + " --frames 3 -o " + (dir / "s.png").string()) == 0);
    const Image sheet = load_image((dir / "s.png").string());
    CHECK(sheet.width == 3 * 32);
    CHECK(sheet.height == 32);
    // Bad input: an edit without a picture, a NaN alpha, too few frames; each a clear error, exit 1.
    CHECK(run("variation" + common + " --edit a b -o " + (dir / "x.png").string()) != 0);
    CHECK(run("variation" + common + " --image " + kSample + " --edit a b --edit-alpha nan -o " + (dir / "x.png").string()) != 0);
    CHECK(run("variation" + common + " --interpolate " + kSample + " " + kSample + " --frames 1 -o " + (dir / "x.png").string()) != 0);
    CHECK(!std::filesystem::exists(dir / "x.png"));
}
#endif

}  // TEST_SUITE
