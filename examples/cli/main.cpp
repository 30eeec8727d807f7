// unclip command-line tool. Subcommands:
//   unclip variation --model M --image IN [--image IN2 ...] --out OUT.png [options]   image variations
//   unclip make-tiny-model OUT.safetensors    a tiny random-weight unclip-h model (the built-in demo model)
//   unclip info                               library version, CPU paths and CUDA devices
//   unclip inspect FILE [--stats]             validate a safetensors checkpoint and list its tensors
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "unclip/io/random_checkpoint.hpp"
#include "unclip/io/tiny_model.hpp"
#include "unclip/pipeline.hpp"
#include "unclip/unclip.hpp"

namespace {

int run_info() {
    std::printf("unclip %s\n", unclip::kVersionString);
    std::printf("cpu kernels: %s; dtype conversions: %s\n", unclip::cpu_kernel_isa(), unclip::convert_isa());
    std::printf("cuda: %s; %s\n", unclip::cuda::compiled_with_cuda() ? "compiled in" : "not compiled in",
                unclip::cuda::device_description().c_str());
    return 0;
}

struct Stats {
    double min = std::numeric_limits<double>::infinity(), max = -std::numeric_limits<double>::infinity(), sum = 0;
    std::int64_t nan = 0, inf = 0;
};

Stats tensor_stats(const unclip::Tensor& t) {
    const unclip::Tensor f = t.to(unclip::DType::f32);
    const float* p = f.data<const float>();
    Stats s;
    for (std::int64_t i = 0; i < f.numel(); ++i) {
        if (std::isnan(p[i])) { ++s.nan; continue; }
        if (std::isinf(p[i])) { ++s.inf; continue; }
        s.min = std::min<double>(s.min, p[i]);
        s.max = std::max<double>(s.max, p[i]);
        s.sum += p[i];
    }
    return s;
}

int run_inspect(const std::string& path, bool stats) {
    const auto file = unclip::io::SafetensorsFile::open(path);
    std::uint64_t bytes = 0;
    for (const auto& e : file.entries()) {
        std::string shape = "[";
        for (std::size_t i = 0; i < e.dims.size(); ++i) shape += (i ? ", " : "") + std::to_string(e.dims[i]);
        shape += "]";
        std::printf("%-60s %-5s %s", e.name.c_str(), e.dtype_name.c_str(), shape.c_str());
        if (stats && e.dtype && e.dims.size() <= static_cast<std::size_t>(unclip::kMaxRank)) {
            const unclip::Tensor t = file.get(e.name);
            const Stats s = tensor_stats(t);
            std::printf("  min %.4g max %.4g mean %.4g", s.min, s.max, t.numel() ? s.sum / static_cast<double>(t.numel()) : 0.0);
            if (s.nan || s.inf) std::printf("  NaN %lld inf %lld", static_cast<long long>(s.nan), static_cast<long long>(s.inf));
        }
        std::printf("\n");
        bytes += e.end - e.begin;
    }
    for (const auto& [key, value] : file.metadata()) std::printf("metadata %s = %.200s\n", key.c_str(), value.c_str());
    std::printf("%zu tensors, %.2f MiB of data: header valid\n", file.entries().size(), static_cast<double>(bytes) / (1 << 20));
    return 0;
}

int run_make_tiny_model(const std::string& output, std::uint64_t seed) {
    unclip::io::RandomCheckpointOptions options;
    options.dtype = unclip::DType::f32;
    options.seed = seed;
    unclip::io::write_random_checkpoint(output, unclip::io::tiny_unclip_config(), options);
    std::printf("wrote %s (tiny random-weight unclip-h demo model)\n", output.c_str());
    return 0;
}

struct VariationArgs {
    std::string model, clip_vision, out = "variation.png";
    std::vector<std::string> images;
    std::vector<float> strengths, noise_augmentations;
    unclip::GenerateParams params;
    int threads = 0;
    bool allow_reduced = false, quiet = false;
};

int run_variation(VariationArgs& a) {
    unclip::PipelineOptions options;
    options.model_path = a.model;
    options.clip_vision_path = a.clip_vision;
    options.threads = a.threads;
    options.allow_reduced = a.allow_reduced;
    auto t0 = std::chrono::steady_clock::now();
    unclip::Pipeline pipeline(options);
    const auto& cfg = pipeline.model_config();
    std::printf("model %s (%s prediction%s) loaded in %.1f s\n", unclip::io::variant_name(cfg.variant),
                unclip::io::prediction_name(cfg.prediction), cfg.reduced ? ", reduced test architecture" : "",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    for (std::size_t i = 0; i < a.images.size(); ++i) {
        unclip::UnclipConditioning c;
        c.image = unclip::load_image(a.images[i]);
        c.strength = i < a.strengths.size() ? a.strengths[i] : (a.strengths.empty() ? 1.0f : a.strengths.back());
        c.noise_augmentation = i < a.noise_augmentations.size()
                                   ? a.noise_augmentations[i]
                                   : (a.noise_augmentations.empty() ? 0.0f : a.noise_augmentations.back());
        a.params.images.push_back(std::move(c));
    }
    if (!a.quiet) {
        a.params.on_progress = [](const unclip::Progress& p) {
            std::printf("\rstep %d/%d (sigma %.3f)", p.step, p.steps, static_cast<double>(p.sigma));
            std::fflush(stdout);
            return true;
        };
    }
    t0 = std::chrono::steady_clock::now();
    const auto images = pipeline.generate(a.params);
    std::printf("%sgenerated %zu image(s) %dx%d in %.1f s\n", a.quiet ? "" : "\n", images.size(), images.front().width,
                images.front().height, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    for (std::size_t i = 0; i < images.size(); ++i) {
        std::string path = a.out;
        if (images.size() > 1) {
            const auto dot = path.rfind('.');
            path = path.substr(0, dot) + "_" + std::to_string(i) + (dot == std::string::npos ? "" : path.substr(dot));
        }
        unclip::save_png(images[i], path);
        std::printf("wrote %s\n", path.c_str());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"unclip: Stable Diffusion 2.1 unCLIP inference"};
    app.require_subcommand(1);

    auto* variation = app.add_subcommand("variation", "Generate image variations from one or more pictures");
    VariationArgs v;
    variation->add_option("--model,-m", v.model, "checkpoint: .safetensors, .ckpt or a diffusers folder")->required();
    variation->add_option("--image,-i", v.images, "conditioning picture(s); several are blended as ComfyUI sums them");
    variation->add_option("--strength", v.strengths, "unCLIP strength per image, [-10, 10] (default 1)");
    variation->add_option("--noise-augmentation", v.noise_augmentations, "per image, [0, 1] (default 0)");
    variation->add_option("--out,-o", v.out, "output PNG (an index is appended for several images)");
    variation->add_option("--prompt,-p", v.params.prompt, "text prompt (ComfyUI weight syntax)");
    variation->add_option("--negative,-n", v.params.negative_prompt, "negative prompt");
    variation->add_option("--steps", v.params.steps, "sampling steps (default 20)");
    variation->add_option("--cfg", v.params.cfg_scale, "classifier-free guidance scale (default 8)");
    variation->add_option("--sampler", v.params.sampler, "euler, euler_ancestral, heun, dpm_2, dpmpp_2m, dpmpp_2m_sde, dpmpp_sde, ddim, uni_pc, uni_pc_bh2");
    variation->add_option("--scheduler", v.params.scheduler, "normal, karras, exponential, simple, sgm_uniform, ddim_uniform");
    variation->add_option("--seed", v.params.seed, "seed (ComfyUI-compatible noise)");
    variation->add_option("--width", v.params.width, "output width, multiple of 8 (default 768)");
    variation->add_option("--height", v.params.height, "output height, multiple of 8 (default 768)");
    variation->add_option("--batch", v.params.batch_count, "images in one batch (default 1)");
    variation->add_option("--clip-vision", v.clip_vision, "separate CLIP vision model file");
    variation->add_option("--threads", v.threads, "CPU threads (default: all)");
    variation->add_flag("--allow-reduced", v.allow_reduced, "accept reduced test architectures (the tiny demo model)");
    variation->add_flag("--quiet,-q", v.quiet, "no per-step progress");

    auto* tiny = app.add_subcommand("make-tiny-model", "Write the tiny random-weight demo model");
    std::string tiny_out;
    std::uint64_t tiny_seed = 1;
    tiny->add_option("output", tiny_out, "output .safetensors")->required();
    tiny->add_option("--seed", tiny_seed, "random seed");

    app.add_subcommand("info", "Library version, CPU paths and CUDA devices");
    auto* inspect = app.add_subcommand("inspect", "Validate a .safetensors checkpoint and list its tensors");
    std::string path;
    bool stats = false;
    inspect->add_option("file", path, "checkpoint (.safetensors)")->required();
    inspect->add_flag("--stats", stats, "also print min/max/mean and NaN/inf counts per tensor");
    CLI11_PARSE(app, argc, argv);
    try {
        if (app.got_subcommand("info")) return run_info();
        if (app.got_subcommand("inspect")) return run_inspect(path, stats);
        if (app.got_subcommand("make-tiny-model")) return run_make_tiny_model(tiny_out, tiny_seed);
        return run_variation(v);
    } catch (const unclip::Error& e) {
        std::fprintf(stderr, "\nunclip: error (%s): %s\n", unclip::status_name(e.status()), e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\nunclip: error: %s\n", e.what());
        return 1;
    }
}
