// Writes the tiny random-weight model (io::tiny_unclip_config) for tests that run outside C++.
#include <cstdio>

#include "unclip/io/random_checkpoint.hpp"
#include "unclip/io/tiny_model.hpp"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUT.safetensors\n", argv[0]);
        return 2;
    }
    try {
        unclip::io::RandomCheckpointOptions options;
        options.dtype = unclip::DType::f32;
        options.seed = 7;
        unclip::io::write_random_checkpoint(argv[1], unclip::io::tiny_unclip_config(), options);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
