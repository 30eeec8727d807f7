// Concurrency: pipelines on separate threads give the images of a sequential run, cancel() from
// another thread stops a generation without a data race, and progress callbacks may call the
// read-only API. Built into the ThreadSanitizer run of CI (.ci/sanitizers.sh).
#include <unclip.h>

#include <atomic>
#include <thread>
#include <vector>

#include "test_support.hpp"
#include "tiny_model.hpp"
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

GenerateParams params(std::uint64_t seed) {
    GenerateParams p;
    p.width = 16;
    p.height = 24;
    p.steps = 2;
    p.seed = seed;
    p.prompt = "a photo of a cat";
    UnclipConditioning c;
    c.embedding.assign(1024, 0.01f * static_cast<float>(seed % 7));
    c.noise_augmentation = 0.1f;
    p.images.push_back(c);
    return p;
}

// Spins (yielding) until `flag` is set; the step callbacks set it.
void wait_for(const std::atomic<bool>& flag) {
    while (!flag.load()) std::this_thread::yield();
}
}  // namespace

TEST_SUITE("concurrency") {

TEST_CASE("N pipelines on N threads give the images of a sequential run") {
    constexpr int kThreads = 3;
    test::tiny_model_path();  // written once, before the threads start
    std::vector<std::vector<Image>> expected;
    {
        Pipeline sequential(tiny_options(1));
        for (int i = 0; i < kThreads; ++i) expected.push_back(sequential.generate(params(100 + static_cast<std::uint64_t>(i))));
    }
    std::vector<std::vector<Image>> got(kThreads);
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int i = 0; i < kThreads; ++i)
        threads.emplace_back([&, i] {
            try {
                Pipeline pipeline(tiny_options(2));  // each with its own worker pool
                got[static_cast<std::size_t>(i)] = pipeline.generate(params(100 + static_cast<std::uint64_t>(i)));
            } catch (...) {
                ++failures;
            }
        });
    for (auto& t : threads) t.join();
    REQUIRE(failures.load() == 0);
    for (int i = 0; i < kThreads; ++i) {
        REQUIRE(got[static_cast<std::size_t>(i)].size() == 1);
        CHECK(got[static_cast<std::size_t>(i)][0].pixels == expected[static_cast<std::size_t>(i)][0].pixels);
    }
}

TEST_CASE("one pipeline shared by several threads serialises their calls and gives the sequential images") {
    Pipeline pipeline(tiny_options(2));
    const std::vector<Image> expected = pipeline.generate(params(5));
    std::vector<std::vector<Image>> got(3);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < got.size(); ++i)
        threads.emplace_back([&, i] {
            got[i] = pipeline.generate(params(5));
            pipeline.embedding_dim();
            pipeline.encode_text("a dog");
        });
    for (auto& t : threads) t.join();
    for (const auto& images : got) CHECK(images.at(0).pixels == expected.at(0).pixels);
}

TEST_CASE("cancel() from another thread stops a running generation with Status::cancelled") {
    Pipeline pipeline(tiny_options(2));
    std::atomic<bool> started{false};
    GenerateParams p = params(1);
    p.steps = 200;
    p.on_progress = [&](const Progress&) {
        started.store(true);
        return true;
    };
    std::thread canceller([&] {
        wait_for(started);
        pipeline.cancel();
    });
    CHECK_THROWS_STATUS(pipeline.generate(p), Status::cancelled, "cancelled");
    canceller.join();
    // The next generation starts afresh.
    CHECK(pipeline.generate(params(1)).size() == 1);
}

TEST_CASE("unclip_pipeline_cancel from another thread cancels unclip_generate, and its callbacks may read the pipeline") {
    unclip_open_params open;
    unclip_open_default_params(&open);
    open.model_path = test::tiny_model_path().c_str();
    open.allow_reduced = true;
    open.threads = 2;
    unclip_pipeline* pipeline = nullptr;
    REQUIRE(unclip_pipeline_open(&open, &pipeline) == UNCLIP_STATUS_OK);

    struct Probe {
        unclip_pipeline* pipeline;
        std::atomic<bool> started{false};
        std::atomic<int> bad_reads{0};
    } probe;
    probe.pipeline = pipeline;
    unclip_generate_params p;
    unclip_generate_default_params(&p);
    p.width = p.height = 16;
    p.steps = 200;
    p.preview = true;
    p.on_progress_user = &probe;
    p.on_progress = [](const unclip_progress* progress, void* user) {
        auto* s = static_cast<Probe*>(user);
        // Read-only calls from inside the callback: sizes and the (empty) last error.
        if (unclip_pipeline_embedding_size(s->pipeline) != 1024) ++s->bad_reads;
        if (unclip_pipeline_last_error(s->pipeline) == nullptr) ++s->bad_reads;
        if (progress->preview.pixels == nullptr || progress->preview.width != 2) ++s->bad_reads;
        s->started.store(true);
        return true;
    };
    std::thread canceller([&] {
        wait_for(probe.started);
        unclip_pipeline_cancel(pipeline);
    });
    unclip_images* out = nullptr;
    CHECK(unclip_generate(pipeline, &p, &out) == UNCLIP_STATUS_CANCELLED);
    canceller.join();
    CHECK(out == nullptr);
    CHECK(probe.bad_reads.load() == 0);
    unclip_pipeline_free(pipeline);
}

TEST_CASE("Pipeline progress callbacks may call the const members and embedding_dim") {
    Pipeline pipeline(tiny_options(2));
    GenerateParams p = params(3);
    int calls = 0;
    p.on_progress = [&](const Progress& progress) {
        ++calls;
        CHECK(pipeline.embedding_dim() == 1024);
        CHECK(pipeline.model_config().unet.adm_in_channels == 2048);
        CHECK(progress.step <= progress.steps);
        return true;
    };
    CHECK(pipeline.generate(p).size() == 1);
    CHECK(calls == 2);
}

}  // TEST_SUITE
