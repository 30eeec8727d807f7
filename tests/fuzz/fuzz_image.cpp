// Fuzz target: image decoding (stb_image behind the library's checks) and CLIP preprocessing of
// what decodes. Limits are lowered so that a valid header cannot ask for more than 64 MiB.
#include "fuzz_support.hpp"
#include "unclip/clip_preprocess.hpp"
#include "unclip/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace unclip;
    ImageLimits limits;
    limits.max_side = 4096;
    limits.max_pixels = 4096LL * 4096;
    fuzz::expect_error_or_success([&] {
        const Image image = decode_image(data, size, limits);
        if (image.pixels.size() != static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height) *
                                       static_cast<std::size_t>(image.channels))
            std::abort();
        if (static_cast<std::int64_t>(image.width) * image.height <= 64 * 64) {
            ClipPreprocessOptions o;
            o.size = 16;
            clip_preprocess(image, o);
        }
    });
    return 0;
}
