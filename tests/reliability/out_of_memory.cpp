// Out of memory becomes a status, not an abort: with the address space capped (RLIMIT_AS) a little
// above what the loaded tiny model needs, a generation far too large for it must return
// UNCLIP_STATUS_OUT_OF_MEMORY through the C API and throw Error(Status::out_of_memory) through
// the C++ API, and the pipeline must work again afterwards. A program of its own because the
// limit holds for the whole process; it exits 77 (skipped) under sanitizers, which reserve
// terabytes of shadow address space.
//   unclip_test_out_of_memory <model.safetensors>
#include <unclip.h>
#include <sys/resource.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "unclip/pipeline.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNCLIP_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define UNCLIP_UNDER_SANITIZER 1
#endif
#endif

namespace {
int failures = 0;
void check(bool ok, const std::string& what) {
    std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what.c_str());
    if (!ok) ++failures;
}

// Virtual memory in use now (bytes), from /proc/self/statm.
long long address_space_in_use() {
    std::ifstream statm("/proc/self/statm");
    long long pages = 0;
    statm >> pages;
    return pages * 4096;
}
}  // namespace

int main(int argc, char** argv) {
#if defined(UNCLIP_UNDER_SANITIZER)
    (void)argc, (void)argv;
    std::printf("out_of_memory: sanitizers reserve the address space RLIMIT_AS would cap; skipped\n");
    return 77;
#else
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <tiny model>\n", argv[0]);
        return 2;
    }
    unclip_open_params open;
    unclip_open_default_params(&open);
    open.model_path = argv[1];
    open.allow_reduced = true;
    open.threads = 2;
    unclip_pipeline* pipeline = nullptr;
    if (unclip_pipeline_open(&open, &pipeline) != UNCLIP_STATUS_OK) {
        std::fprintf(stderr, "open: %s\n", unclip_last_error());
        return 1;
    }
    unclip::PipelineOptions options;
    options.model_path = argv[1];
    options.allow_reduced = true;
    options.threads = 2;
    unclip::Pipeline cxx(options);

    unclip_generate_params small;
    unclip_generate_default_params(&small);
    small.width = small.height = 16;
    small.steps = 1;
    unclip_images* out = nullptr;
    check(unclip_generate(pipeline, &small, &out) == UNCLIP_STATUS_OK, "a small generation before the cap");
    unclip_images_free(out);
    out = nullptr;

    // 256 MiB of headroom: a 4096x4096 generation needs tens of GiB of activations.
    const long long cap = address_space_in_use() + (256LL << 20);
    const rlimit limit{static_cast<rlim_t>(cap), static_cast<rlim_t>(cap)};
    if (setrlimit(RLIMIT_AS, &limit) != 0) {
        std::perror("setrlimit");
        return 1;
    }
    unclip_generate_params huge = small;
    huge.width = huge.height = 4096;
    const unclip_status status = unclip_generate(pipeline, &huge, &out);
    check(status == UNCLIP_STATUS_OUT_OF_MEMORY,
          std::string("C API: 4096x4096 under the cap -> ") + unclip_status_name(status) + " (" +
              unclip_pipeline_last_error(pipeline) + ")");
    check(out == nullptr, "C API: no images on failure");

    unclip::GenerateParams params;
    params.width = params.height = 4096;
    params.steps = 1;
    try {
        cxx.generate(params);
        check(false, "C++ API: 4096x4096 under the cap succeeded");
    } catch (const unclip::Error& e) {
        check(e.status() == unclip::Status::out_of_memory,
              std::string("C++ API: Error(") + unclip::status_name(e.status()) + "): " + e.what());
    } catch (const std::exception& e) {
        check(false, std::string("C++ API: not an unclip::Error: ") + e.what());
    }

    check(unclip_generate(pipeline, &small, &out) == UNCLIP_STATUS_OK, "a small generation after the failure");
    unclip_images_free(out);
    unclip_pipeline_free(pipeline);
    return failures ? 1 : 0;
#endif
}
