// Loads a checkpoint in any layout and reports what was detected, the load time and the
// resident memory afterwards (the figures BENCHMARKS.md quotes):
//
//   unclip_inspect_checkpoint /tmp/h.safetensors [--clip-vision file] [--convert unet:f32]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include <CLI/CLI.hpp>

#include "unclip/io/checkpoint.hpp"

namespace {
// VmRSS / VmHWM from /proc/self/status in MiB; -1 where unavailable.
double proc_status_mib(const char* field) {
    std::ifstream in("/proc/self/status");
    std::string key;
    while (in >> key) {
        if (key == field) {
            double kib = 0;
            in >> kib;
            return kib / 1024.0;
        }
        in.ignore(1 << 16, '\n');
    }
    return -1;
}
}  // namespace

int main(int argc, char** argv) {
    using namespace unclip;
    CLI::App app{"Load a checkpoint and report its variant, load time and memory"};
    std::string path, vision, convert;
    bool reduced = false;
    app.add_option("path", path, "a .safetensors/.ckpt file or a diffusers folder")->required();
    app.add_option("--clip-vision", vision, "a separate CLIP vision file");
    app.add_option("--convert", convert, "convert one component afterwards: unet|vae|text|vision:f32|f16|bf16");
    app.add_flag("--allow-reduced", reduced, "accept reduced (test) architectures");
    CLI11_PARSE(app, argc, argv);
    try {
        io::LoadOptions options;
        options.clip_vision_path = vision;
        options.allow_reduced = reduced;
        const auto start = std::chrono::steady_clock::now();
        const io::Checkpoint ckpt = io::load_checkpoint(path, options);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("%s\nlayout %s; tensors: unet %zu, vae %zu, text %zu, vision %zu\n", io::describe(ckpt.config).c_str(),
                    io::layout_name(ckpt.layout), ckpt.unet.size(), ckpt.vae.size(), ckpt.text.size(), ckpt.vision.size());
        std::printf("load %.3f s, RSS after load %.1f MiB (peak %.1f MiB)\n", seconds, proc_status_mib("VmRSS:"),
                    proc_status_mib("VmHWM:"));
        if (!convert.empty()) {
            const auto colon = convert.find(':');
            const std::string which = convert.substr(0, colon), to = colon == std::string::npos ? "f32" : convert.substr(colon + 1);
            const io::Component comp = which == "vae" ? io::Component::vae : which == "text" ? io::Component::text
                                       : which == "vision" ? io::Component::vision : io::Component::unet;
            const DType dtype = to == "f16" ? DType::f16 : to == "bf16" ? DType::bf16 : DType::f32;
            const auto t0 = std::chrono::steady_clock::now();
            const nn::WeightMap converted = io::convert_weights(ckpt.weights(comp), dtype);
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::printf("convert %s to %s: %zu tensors in %.3f s, RSS %.1f MiB (peak %.1f MiB)\n", which.c_str(), to.c_str(),
                        converted.size(), s, proc_status_mib("VmRSS:"), proc_status_mib("VmHWM:"));
        }
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
