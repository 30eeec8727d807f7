// Writes a full-size checkpoint with the exact tensor names and shapes of sd21-unclip-h,
// sd21-unclip-l or plain SD 2.1 and seeded random values, for benchmarks without real weights:
//
//   unclip_make_random_checkpoint --variant unclip-h --layout single-file --dtype f16 /tmp/h.safetensors
//   unclip_make_random_checkpoint --variant sd2 --prediction eps --layout diffusers /tmp/sd21-base
#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include <CLI/CLI.hpp>

#include "unclip/io/random_checkpoint.hpp"

int main(int argc, char** argv) {
    using namespace unclip;
    CLI::App app{"Write a random-weight Stable Diffusion 2.x / unCLIP checkpoint with the real names and shapes"};
    std::string output, variant = "unclip-h", layout = "single-file", dtype = "f16", prediction;
    std::uint64_t seed = 0;
    bool sparse = false;
    app.add_option("output", output, "a .safetensors file (single-file) or a folder (diffusers)")->required();
    app.add_option("--variant", variant, "unclip-h, unclip-l or sd2")->check(CLI::IsMember({"unclip-h", "unclip-l", "sd2"}));
    app.add_option("--layout", layout, "single-file or diffusers")->check(CLI::IsMember({"single-file", "diffusers"}));
    app.add_option("--dtype", dtype, "f16, bf16 or f32")->check(CLI::IsMember({"f16", "bf16", "f32"}));
    app.add_option("--prediction", prediction, "v or eps (default v; sd2 eps is the 512 base model)")
        ->check(CLI::IsMember({"v", "eps"}));
    app.add_option("--seed", seed, "random seed");
    app.add_flag("--sparse", sparse, "headers only, data left as a hole (names/shapes tests)");
    CLI11_PARSE(app, argc, argv);

    const std::map<std::string, io::Variant> variants{
        {"unclip-h", io::Variant::unclip_h}, {"unclip-l", io::Variant::unclip_l}, {"sd2", io::Variant::sd2}};
    io::ModelConfig config = io::reference_config(variants.at(variant));
    if (prediction == "eps") config.prediction = io::Prediction::eps;
    io::RandomCheckpointOptions options;
    options.layout = layout == "diffusers" ? io::Layout::diffusers : io::Layout::single_file;
    options.dtype = dtype == "f32" ? DType::f32 : dtype == "bf16" ? DType::bf16 : DType::f16;
    options.seed = seed;
    options.sparse = sparse;
    try {
        const auto start = std::chrono::steady_clock::now();
        io::write_random_checkpoint(output, config, options);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("wrote %s (%s, %s, %s) in %.1f s\n", output.c_str(), io::describe(config).c_str(), layout.c_str(),
                    dtype.c_str(), seconds);
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
