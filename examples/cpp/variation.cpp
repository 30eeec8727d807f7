// The README's C++ snippet as a program: an image variation with unclip::Pipeline.
//   unclip_cpp_variation MODEL IMAGE OUT.png [--allow-reduced]
#include <cstdio>
#include <cstring>

#include "unclip/pipeline.hpp"

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s MODEL IMAGE OUT.png [--allow-reduced]\n", argv[0]);
        return 2;
    }
    try {
        unclip::PipelineOptions options;
        options.model_path = argv[1];
        options.allow_reduced = argc > 4 && std::strcmp(argv[4], "--allow-reduced") == 0;
        unclip::Pipeline pipeline(options);
        unclip::GenerateParams params;
        params.images.push_back({unclip::load_image(argv[2])});
        params.seed = 42;
        params.width = 64;
        params.height = 64;
        params.steps = 4;
        unclip::save_png(pipeline.generate(params).front(), argv[3]);
        std::printf("wrote %s\n", argv[3]);
        return 0;
    } catch (const unclip::Error& e) {
        std::fprintf(stderr, "error (%s): %s\n", unclip::status_name(e.status()), e.what());
        return 1;
    }
}
