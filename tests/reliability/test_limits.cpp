// Resource limits: output and prompt caps (configurable, refused before allocating), and the C
// boundary's handling of params whose struct_size tears a field.
#include <unclip.h>

#include <cstddef>
#include <string>

#include "test_support.hpp"
#include "tiny_model.hpp"
#include "unclip/pipeline.hpp"

using namespace unclip;

namespace {
PipelineOptions tiny_options() {
    PipelineOptions o;
    o.model_path = test::tiny_model_path();
    o.allow_reduced = true;
    o.threads = 1;
    return o;
}

GenerateParams small(int side) {
    GenerateParams p;
    p.width = p.height = side;
    p.steps = 1;
    return p;
}

Image grey(int side) {
    Image image;
    image.width = image.height = side;
    image.channels = 3;
    image.pixels.assign(static_cast<std::size_t>(side * side * 3), 128);
    return image;
}
}  // namespace

TEST_SUITE("reliability") {

TEST_CASE("outputs are capped at 4096x4096 by default and at what PipelineOptions::output_limits says") {
    Pipeline defaults(tiny_options());
    CHECK(PipelineOptions{}.output_limits.max_side == 4096);
    CHECK_THROWS_STATUS(defaults.generate(small(4104)), Status::bad_image,
                        "size 4104x4104 is larger than the output limit of 4096");
    GenerateParams wide = small(8);
    wide.width = 4096 + 512;
    CHECK_THROWS_STATUS(defaults.generate(wide), Status::bad_image, "4608x8");

    PipelineOptions o = tiny_options();
    o.output_limits.max_side = 32;
    o.output_limits.max_pixels = 32 * 24;
    Pipeline capped(o);
    CHECK_THROWS_STATUS(capped.generate(small(40)), Status::bad_image, "output_limits");
    CHECK_THROWS_STATUS(capped.generate(small(32)), Status::bad_image, "32x32");  // over max_pixels
    GenerateParams fits = small(24);
    fits.width = 32;
    CHECK(capped.generate(fits).front().width == 32);
    // An init image sets the output size: it is held to the same cap.
    GenerateParams img2img = small(8);
    img2img.init_image = grey(48);
    img2img.denoise = 0.5f;
    CHECK_THROWS_STATUS(capped.generate(img2img), Status::bad_image, "init_image 48x48");
}

TEST_CASE("prompts longer than PipelineOptions::max_prompt_bytes are refused naming which prompt") {
    CHECK(PipelineOptions{}.max_prompt_bytes == 64 * 1024);
    PipelineOptions o = tiny_options();
    o.max_prompt_bytes = 100;
    Pipeline pipeline(o);
    GenerateParams p = small(8);
    p.prompt = std::string(101, 'a');
    CHECK_THROWS_STATUS(pipeline.generate(p), Status::invalid_argument, "prompt is 101 bytes, over the limit of 100");
    p.prompt = std::string(100, 'a');
    p.negative_prompt = std::string(150, 'b');
    CHECK_THROWS_STATUS(pipeline.generate(p), Status::invalid_argument, "negative_prompt is 150 bytes");
    CHECK_THROWS_STATUS(pipeline.encode_text(std::string(101, 'c')), Status::invalid_argument, "max_prompt_bytes");
    CHECK(pipeline.encode_text(std::string(100, 'c')).context.defined());
}

TEST_CASE("the C API refuses an over-long prompt and a struct_size that ends inside a field") {
    unclip_open_params open;
    REQUIRE(unclip_open_default_params(&open) == UNCLIP_STATUS_OK);
    open.model_path = test::tiny_model_path().c_str();
    open.allow_reduced = true;
    open.threads = 1;
    // Half of model_path's pointer: reading it would follow a torn pointer.
    open.struct_size = static_cast<std::uint32_t>(offsetof(unclip_open_params, model_path) + 4);
    unclip_pipeline* pipeline = nullptr;
    CHECK(unclip_pipeline_open(&open, &pipeline) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(unclip_last_error()).find("ends inside field 'model_path'") != std::string::npos);
    CHECK(pipeline == nullptr);
    open.struct_size = sizeof open;
    REQUIRE(unclip_pipeline_open(&open, &pipeline) == UNCLIP_STATUS_OK);

    unclip_generate_params p;
    unclip_generate_default_params(&p);
    p.width = p.height = 8;
    p.steps = 1;
    const std::string prompt(64 * 1024 + 1, 'a');
    p.prompt = prompt.c_str();
    unclip_images* out = nullptr;
    CHECK(unclip_generate(pipeline, &p, &out) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(unclip_pipeline_last_error(pipeline)).find("prompt is 65537 bytes") != std::string::npos);
    p.prompt = "a photo";
    p.struct_size = static_cast<std::uint32_t>(offsetof(unclip_generate_params, seed) + 2);
    CHECK(unclip_generate(pipeline, &p, &out) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(unclip_pipeline_last_error(pipeline)).find("ends inside field 'seed'") != std::string::npos);
    CHECK(out == nullptr);
    unclip_pipeline_free(pipeline);
}

}  // TEST_SUITE
