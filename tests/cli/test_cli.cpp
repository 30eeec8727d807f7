// The CLI, the C API and the C++ API give the same pixels for the same settings.
#include <unclip.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "test_support.hpp"
#include "tiny_model.hpp"
#include "unclip/pipeline.hpp"

#ifndef UNCLIP_CLI_PATH
#error "UNCLIP_CLI_PATH must name the unclip CLI executable"
#endif

using namespace unclip;

namespace {
const std::string kSample = std::string(UNCLIP_TEST_DATA_DIR) + "/../../examples/data/sample.png";

int run_cli(const std::string& arguments, const test::TempDir& dir) {
    const std::string command = std::string(UNCLIP_CLI_PATH) + " " + arguments + " > " + (dir / "cli.log").string() + " 2>&1";
    return std::system(command.c_str());
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}
}  // namespace

TEST_SUITE("cli") {

TEST_CASE("the CLI, the C API and the C++ API produce identical pixels for the same settings") {
    test::TempDir dir;
    const std::string out = (dir / "cli.png").string();
    const int rc = run_cli("variation --model " + test::tiny_model_path() + " --allow-reduced --image " + kSample +
                               ":0.8:0.15 --prompt \"a (bird:1.2)\" --steps 3 --seed 11 --width 48 --height 40 --sampler heun -q -o " + out,
                           dir);
    INFO(read_file(dir / "cli.log"));
    REQUIRE(rc == 0);
    const Image from_cli = load_image(out);

    PipelineOptions o;
    o.model_path = test::tiny_model_path();
    o.allow_reduced = true;
    Pipeline pipeline(o);
    GenerateParams p;
    p.images.push_back({load_image(kSample), {}, 0.8f, 0.15f});
    p.prompt = "a (bird:1.2)";
    p.steps = 3;
    p.seed = 11;
    p.width = 48;
    p.height = 40;
    p.sampler = "heun";
    const Image from_cpp = pipeline.generate(p).front();
    CHECK(from_cli.width == 48);
    CHECK(from_cli.pixels == from_cpp.pixels);

    unclip_open_params open;
    unclip_open_default_params(&open);
    open.model_path = o.model_path.c_str();
    open.allow_reduced = true;
    unclip_pipeline* handle = nullptr;
    REQUIRE(unclip_pipeline_open(&open, &handle) == UNCLIP_STATUS_OK);
    const Image sample = load_image(kSample);
    unclip_conditioning cond;
    unclip_conditioning_default(&cond);
    cond.image = {sample.pixels.data(), sample.width, sample.height, sample.channels, 0};
    cond.strength = 0.8f;
    cond.noise_augmentation = 0.15f;
    unclip_generate_params params;
    unclip_generate_default_params(&params);
    params.images = &cond;
    params.n_images = 1;
    params.prompt = "a (bird:1.2)";
    params.steps = 3;
    params.seed = 11;
    params.width = 48;
    params.height = 40;
    params.sampler = UNCLIP_SAMPLER_HEUN;
    unclip_images* images = nullptr;
    REQUIRE(unclip_generate(handle, &params, &images) == UNCLIP_STATUS_OK);
    unclip_image_view view;
    REQUIRE(unclip_images_get(images, 0, &view) == UNCLIP_STATUS_OK);
    CHECK(std::vector<std::uint8_t>(view.pixels, view.pixels + from_cpp.pixels.size()) == from_cpp.pixels);
    unclip_images_free(images);
    unclip_pipeline_free(handle);

    // The settings travel with the image in a tEXt chunk.
    CHECK(read_file(out).find("seed: 11") != std::string::npos);
}

TEST_CASE("the CLI reports bad input with a message and a failing exit status, never a crash") {
    test::TempDir dir;
    const std::string model = " --model " + test::tiny_model_path() + " --allow-reduced -q -o " + (dir / "x.png").string();
    CHECK(run_cli("variation" + model + " --image " + (dir / "missing.png").string(), dir) != 0);
    CHECK(read_file(dir / "cli.log").find("missing.png") != std::string::npos);
    CHECK(run_cli("variation" + model + " --width 7 --height 64", dir) != 0);
    CHECK(read_file(dir / "cli.log").find("multiple of 8") != std::string::npos);
    CHECK(run_cli("variation" + model + " --sampler euler_b", dir) != 0);
    CHECK(read_file(dir / "cli.log").find("uni_pc_bh2") != std::string::npos);
    test::write_bytes(dir / "truncated.png", read_file(kSample).substr(0, 100));
    CHECK(run_cli("variation" + model + " --image " + (dir / "truncated.png").string(), dir) != 0);
    CHECK(read_file(dir / "cli.log").find("bad_image") != std::string::npos);
    CHECK(run_cli("variation" + model + " --device tpu", dir) != 0);
    CHECK(read_file(dir / "cli.log").find("--device") != std::string::npos);
}

}  // TEST_SUITE
