// A host application in C++17, built outside the unclip tree: a 64x64 variation of a synthetic
// gradient in two steps with the tiny demo model, through unclip::Pipeline.
//   consumer_cpp MODEL OUT.png
#include <cstdint>
#include <cstdio>
#include <vector>

#include <unclip/pipeline.hpp>
#include <unclip/version.hpp>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s MODEL OUT.png\n", argv[0]);
        return 2;
    }
    constexpr int kSide = 64;
    std::vector<std::uint8_t> pixels(kSide * kSide * 3);
    for (int y = 0; y < kSide; ++y)
        for (int x = 0; x < kSide; ++x) {
            std::uint8_t* p = &pixels[static_cast<std::size_t>((y * kSide + x) * 3)];
            p[0] = static_cast<std::uint8_t>(4 * x);
            p[1] = static_cast<std::uint8_t>(4 * y);
            p[2] = 128;
        }
    try {
        unclip::PipelineOptions options;
        options.model_path = argv[1];
        options.allow_reduced = true;  // the tiny model is smaller than the official architectures
        options.threads = 2;
        unclip::Pipeline pipeline(options);
        unclip::GenerateParams params;
        unclip::UnclipConditioning cond;
        cond.image = unclip::image_from_pixels(pixels.data(), kSide, kSide, 3);
        params.images.push_back(cond);
        params.width = params.height = kSide;
        params.steps = 2;
        params.seed = 42;
        const std::vector<unclip::Image> images = pipeline.generate(params);
        if (images.size() != 1 || images[0].width != kSide || images[0].height != kSide) {
            std::fprintf(stderr, "unexpected output\n");
            return 1;
        }
        unclip::save_png(images[0], argv[2]);
        std::printf("consumer (C++): unclip %s wrote %s (%dx%d)\n", unclip::kVersionString, argv[2],
                    images[0].width, images[0].height);
        return 0;
    } catch (const unclip::Error& e) {
        std::fprintf(stderr, "error (%s): %s\n", unclip::status_name(e.status()), e.what());
        return 1;
    }
}
