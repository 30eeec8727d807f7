#include <unclip.h>

#include <cstring>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "tiny_model.hpp"
#include "unclip/backend/cuda.hpp"

namespace {
unclip_pipeline* open_tiny() {
    unclip_open_params open;
    REQUIRE(unclip_open_default_params(&open) == UNCLIP_STATUS_OK);
    open.model_path = unclip::test::tiny_model_path().c_str();
    open.allow_reduced = true;
    open.threads = 2;
    unclip_pipeline* pipeline = nullptr;
    REQUIRE_MESSAGE(unclip_pipeline_open(&open, &pipeline) == UNCLIP_STATUS_OK, unclip_last_error());
    return pipeline;
}

unclip_pipeline* tiny() {
    static unclip_pipeline* pipeline = open_tiny();
    return pipeline;
}

std::vector<std::uint8_t> pixels(int width, int height, int channels) {
    std::vector<std::uint8_t> p(static_cast<std::size_t>(width * height * channels));
    for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<std::uint8_t>(i * 13 % 255);
    return p;
}

unclip_generate_params small_params() {
    unclip_generate_params p;
    unclip_generate_default_params(&p);
    p.width = 32;
    p.height = 32;
    p.steps = 2;
    return p;
}

bool contains(const char* text, const char* needle) { return std::string(text).find(needle) != std::string::npos; }
}  // namespace

TEST_SUITE("capi") {

TEST_CASE("the runtime version equals the header's and status names are stable") {
    CHECK(unclip_version() == UNCLIP_API_VERSION);
    CHECK(std::string(unclip_version_string()) ==
          std::to_string(UNCLIP_API_VERSION_MAJOR) + "." + std::to_string(UNCLIP_API_VERSION_MINOR) + "." +
              std::to_string(UNCLIP_API_VERSION_PATCH));
    CHECK(std::string(unclip_status_name(UNCLIP_STATUS_BAD_MODEL)) == "bad_model");
    CHECK(std::string(unclip_status_name(static_cast<unclip_status>(99))) == "unknown");
}

TEST_CASE("sampler and scheduler names round-trip and unknown names list the valid ones") {
    for (int s = UNCLIP_SAMPLER_EULER; s <= UNCLIP_SAMPLER_UNI_PC_BH2; ++s) {
        unclip_sampler back;
        REQUIRE(unclip_sampler_from_name(unclip_sampler_name(static_cast<unclip_sampler>(s)), &back) == UNCLIP_STATUS_OK);
        CHECK(back == s);
    }
    for (int s = UNCLIP_SCHEDULER_NORMAL; s <= UNCLIP_SCHEDULER_DDIM_UNIFORM; ++s) {
        unclip_scheduler back;
        REQUIRE(unclip_scheduler_from_name(unclip_scheduler_name(static_cast<unclip_scheduler>(s)), &back) == UNCLIP_STATUS_OK);
        CHECK(back == s);
    }
    unclip_sampler out = UNCLIP_SAMPLER_HEUN;
    CHECK(unclip_sampler_from_name("euler_b", &out) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(contains(unclip_last_error(), "uni_pc_bh2"));
    CHECK(out == UNCLIP_SAMPLER_HEUN);  // untouched on failure
    CHECK(unclip_sampler_name(static_cast<unclip_sampler>(42)) == nullptr);
}

TEST_CASE("NULL pointers are refused with a message and never crash") {
    CHECK(unclip_pipeline_open(nullptr, nullptr) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(contains(unclip_last_error(), "NULL"));
    unclip_images* images = nullptr;
    CHECK(unclip_generate(nullptr, nullptr, &images) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(contains(unclip_last_error(), "pipeline is NULL"));
    CHECK(unclip_generate(tiny(), nullptr, &images) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(contains(unclip_pipeline_last_error(tiny()), "params is NULL"));
    CHECK(images == nullptr);
    CHECK(unclip_images_count(nullptr) == 0);
    CHECK(std::string(unclip_pipeline_last_error(nullptr)) == "pipeline is NULL");
    unclip_images_free(nullptr);
    unclip_pipeline_free(nullptr);
    unclip_pipeline_cancel(nullptr);
}

TEST_CASE("opening a missing model reports an I/O error naming the file and leaves the handle untouched") {
    unclip_open_params open;
    unclip_open_default_params(&open);
    open.model_path = "/no/such/model.safetensors";
    unclip_pipeline* pipeline = reinterpret_cast<unclip_pipeline*>(0x1);
    CHECK(unclip_pipeline_open(&open, &pipeline) == UNCLIP_STATUS_IO);
    CHECK(contains(unclip_last_error(), "/no/such/model.safetensors"));
    CHECK(pipeline == reinterpret_cast<unclip_pipeline*>(0x1));
    open.model_path = "";
    CHECK(unclip_pipeline_open(&open, &pipeline) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(contains(unclip_last_error(), "model_path"));
}

TEST_CASE("a generation through the C API returns owned images of the requested size") {
    const auto picture = pixels(24, 20, 4);
    unclip_conditioning cond;
    unclip_conditioning_default(&cond);
    cond.image = {picture.data(), 24, 20, 4, 0};
    cond.noise_augmentation = 0.2f;
    unclip_generate_params p = small_params();
    p.images = &cond;
    p.n_images = 1;
    p.batch_count = 2;
    p.prompt = "a photo";
    unclip_images* out = nullptr;
    REQUIRE_MESSAGE(unclip_generate(tiny(), &p, &out) == UNCLIP_STATUS_OK, unclip_pipeline_last_error(tiny()));
    REQUIRE(unclip_images_count(out) == 2);
    unclip_image_view view;
    REQUIRE(unclip_images_get(out, 1, &view) == UNCLIP_STATUS_OK);
    CHECK(view.width == 32);
    CHECK(view.height == 32);
    CHECK(view.channels == 3);
    CHECK(view.pixels != nullptr);
    CHECK(unclip_images_get(out, 2, &view) == UNCLIP_STATUS_INVALID_ARGUMENT);
    unclip_images_free(out);
}

TEST_CASE("the device field defaults to the CPU, an unknown device is refused and CUDA without a GPU says why") {
    unclip_open_params open;
    REQUIRE(unclip_open_default_params(&open) == UNCLIP_STATUS_OK);
    CHECK(open.device == UNCLIP_DEVICE_CPU);
    CHECK(open.cuda_device == 0);
    open.model_path = unclip::test::tiny_model_path().c_str();
    open.allow_reduced = true;
    open.threads = 2;
    unclip_pipeline* pipeline = nullptr;
    open.device = 9;
    CHECK(unclip_pipeline_open(&open, &pipeline) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(unclip_last_error()).find("params->device 9") != std::string::npos);
    open.device = UNCLIP_DEVICE_AUTO;
    REQUIRE_MESSAGE(unclip_pipeline_open(&open, &pipeline) == UNCLIP_STATUS_OK, unclip_last_error());
    unclip_pipeline_free(pipeline);
    pipeline = nullptr;
    if (unclip::cuda::device_count() == 0) {
        open.device = UNCLIP_DEVICE_CUDA;
        CHECK(unclip_pipeline_open(&open, &pipeline) == UNCLIP_STATUS_DEVICE);
        CHECK(std::string(unclip_last_error()).find("device cuda requested") != std::string::npos);
        CHECK(pipeline == nullptr);
    }
}

TEST_CASE("low_memory and bf16_gemm open a working pipeline, and low_memory keeps the pixels") {
    const auto picture = pixels(24, 20, 3);
    auto generate = [&](bool low_memory, bool bf16) {
        unclip_open_params open;
        REQUIRE(unclip_open_default_params(&open) == UNCLIP_STATUS_OK);
        CHECK(!open.low_memory);
        CHECK(!open.bf16_gemm);
        open.model_path = unclip::test::tiny_model_path().c_str();
        open.allow_reduced = true;
        open.threads = 2;
        open.low_memory = low_memory;
        open.bf16_gemm = bf16;
        unclip_pipeline* pipeline = nullptr;
        REQUIRE_MESSAGE(unclip_pipeline_open(&open, &pipeline) == UNCLIP_STATUS_OK, unclip_last_error());
        unclip_conditioning cond;
        unclip_conditioning_default(&cond);
        cond.image = {picture.data(), 24, 20, 3, 0};
        unclip_generate_params p = small_params();
        p.images = &cond;
        p.n_images = 1;
        unclip_images* out = nullptr;
        REQUIRE_MESSAGE(unclip_generate(pipeline, &p, &out) == UNCLIP_STATUS_OK, unclip_pipeline_last_error(pipeline));
        unclip_image_view view;
        REQUIRE(unclip_images_get(out, 0, &view) == UNCLIP_STATUS_OK);
        std::vector<std::uint8_t> result(view.pixels, view.pixels + 32 * 32 * 3);
        unclip_images_free(out);
        unclip_pipeline_free(pipeline);
        return result;
    };
    const auto plain = generate(false, false);
    CHECK(generate(true, false) == plain);
    CHECK(generate(false, true).size() == plain.size());
}

TEST_CASE("params from an older caller (smaller struct_size) get defaults, and unknown non-zero tails are refused") {
    unclip_generate_params p = small_params();
    unclip_images* out = nullptr;
    // An old caller whose struct ended before `mask`: the rest is defaulted.
    p.struct_size = static_cast<std::uint32_t>(offsetof(unclip_generate_params, mask));
    p.preview = true;  // beyond the old size: ignored
    REQUIRE(unclip_generate(tiny(), &p, &out) == UNCLIP_STATUS_OK);
    unclip_images_free(out);

    struct Newer {
        unclip_generate_params known;
        std::uint64_t future_field;
    } newer{};
    newer.known = small_params();
    newer.known.struct_size = sizeof(Newer);
    newer.future_field = 0;
    out = nullptr;
    REQUIRE(unclip_generate(tiny(), &newer.known, &out) == UNCLIP_STATUS_OK);
    unclip_images_free(out);
    newer.future_field = 1;
    out = nullptr;
    CHECK(unclip_generate(tiny(), &newer.known, &out) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(contains(unclip_pipeline_last_error(tiny()), "struct_size"));
    CHECK(out == nullptr);
}

TEST_CASE("bad parameters give INVALID_ARGUMENT with the field named in the pipeline's last error") {
    unclip_images* out = nullptr;
    unclip_generate_params p = small_params();
    p.steps = 0;
    CHECK(unclip_generate(tiny(), &p, &out) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(contains(unclip_pipeline_last_error(tiny()), "steps 0"));
    p = small_params();
    p.sampler = static_cast<unclip_sampler>(77);
    CHECK(unclip_generate(tiny(), &p, &out) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(contains(unclip_pipeline_last_error(tiny()), "params->sampler 77"));
    unclip_conditioning cond;
    unclip_conditioning_default(&cond);
    cond.noise_augmentation = -0.5f;
    const auto picture = pixels(8, 8, 3);
    cond.image = {picture.data(), 8, 8, 3, 0};
    p = small_params();
    p.images = &cond;
    p.n_images = 1;
    CHECK(unclip_generate(tiny(), &p, &out) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(contains(unclip_pipeline_last_error(tiny()), "params->images[0].noise_augmentation"));
    cond.noise_augmentation = 0.0f;
    cond.image.channels = 5;
    CHECK(unclip_generate(tiny(), &p, &out) == UNCLIP_STATUS_INVALID_ARGUMENT);
    CHECK(contains(unclip_pipeline_last_error(tiny()), "params->images[0]"));
    CHECK(out == nullptr);
}

TEST_CASE("a progress callback returning false cancels with CANCELLED") {
    unclip_generate_params p = small_params();
    p.steps = 4;
    int calls = 0;
    p.on_progress = [](const unclip_progress* progress, void* user) {
        int* count = static_cast<int*>(user);
        ++*count;
        return progress->step < 2;
    };
    p.on_progress_user = &calls;
    unclip_images* out = nullptr;
    CHECK(unclip_generate(tiny(), &p, &out) == UNCLIP_STATUS_CANCELLED);
    CHECK(calls == 2);
    CHECK(out == nullptr);
}

TEST_CASE("embeddings from the C API blend and interpolate, and images round-trip through PNG") {
    const auto picture = pixels(16, 16, 3);
    const unclip_image_view view{picture.data(), 16, 16, 3, 0};
    const int32_t n = unclip_pipeline_embedding_size(tiny());
    REQUIRE(n == 1024);
    std::vector<float> e(static_cast<std::size_t>(n)), mixed(static_cast<std::size_t>(n)), same(static_cast<std::size_t>(n));
    REQUIRE(unclip_pipeline_encode_image(tiny(), &view, e.data(), n) == UNCLIP_STATUS_OK);
    CHECK(unclip_pipeline_encode_image(tiny(), &view, e.data(), n - 1) == UNCLIP_STATUS_INVALID_ARGUMENT);
    const float* both[] = {e.data(), e.data()};
    const float weights[] = {0.5f, 0.5f};
    REQUIRE(unclip_embedding_mix(both, weights, 2, n, mixed.data()) == UNCLIP_STATUS_OK);
    REQUIRE(unclip_embedding_slerp(e.data(), e.data(), n, 0.3f, same.data()) == UNCLIP_STATUS_OK);
    for (int i = 0; i < n; i += 50) {
        CHECK(mixed[static_cast<std::size_t>(i)] == doctest::Approx(e[static_cast<std::size_t>(i)]));
        CHECK(same[static_cast<std::size_t>(i)] == doctest::Approx(e[static_cast<std::size_t>(i)]));
    }

    unclip::test::TempDir dir;
    const std::string path = (dir / "x.png").string();
    REQUIRE(unclip_image_save_png(&view, path.c_str()) == UNCLIP_STATUS_OK);
    unclip_images* loaded = nullptr;
    REQUIRE(unclip_image_load(path.c_str(), &loaded) == UNCLIP_STATUS_OK);
    unclip_image_view back;
    REQUIRE(unclip_images_get(loaded, 0, &back) == UNCLIP_STATUS_OK);
    CHECK(back.width == 16);
    CHECK(std::memcmp(back.pixels, picture.data(), picture.size()) == 0);
    unclip_images_free(loaded);
    CHECK(unclip_image_load((dir / "missing.png").string().c_str(), &loaded) == UNCLIP_STATUS_IO);
    CHECK(contains(unclip_last_error(), "missing.png"));
}

}  // TEST_SUITE
