// Times one component of the unCLIP pipeline on the CPU, loaded from a full-size checkpoint (random
// weights in the real names and shapes, converted to fp32 as the pipeline does), or the fp32 GEMM
// that serves as the machine's ceiling. One component per process, so that the peak RSS it
// reports belongs to that component alone. examples/bench/run_all.sh runs them all.
//
//   bench_components --component gemm|text|vision|unet|vae|sampler [--checkpoint FILE] [--size N]
//                    [--threads 2] [--repeats 3] [--no-warmup] [--sampler uni_pc_bh2]
//
//   gemm    CpuBackend::gemm, N x N x N (default 4096)
//   text    the prompt encode (ComfyUI's SD 2.x text path: one 77-token chunk, pooled if present)
//   vision  the CLIP vision tower on one 224x224 image
//   unet    one CFG step: batch 2, 77-token context, ADM vector, latent N/8 (default 768 px)
//   vae     one whole-image decode of a 1x4xN/8xN/8 latent (default 768 px), untiled
//   sampler the host arithmetic of 20 steps of --sampler (normal schedule) on a 1x4xN/8xN/8
//           latent (default 768 px), the model a single multiply (no checkpoint)
//
// The last line of output is "RESULT " followed by one JSON object: the sorted run times, their
// median, the peak RSS (VmHWM) and the RSS after loading, the scratch size and, for the UNet, a
// checksum of the output (the same for every thread count when the kernels are deterministic).
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_timing.hpp"
#include "unclip/io/checkpoint.hpp"
#include "unclip/io/random_checkpoint.hpp"
#include "unclip/module_configs.hpp"
#include "unclip/nn/instances.hpp"
#include "unclip/sampling/samplers.hpp"
#include "unclip/text/prompt.hpp"

using namespace unclip;

namespace {

Tensor random_tensor(const Shape& shape, unsigned seed, float stddev = 1.0f) {
    Tensor t = Tensor::empty(DType::f32, shape);
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, stddev);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
    return t;
}

// A field of /proc/self/status in MiB ("VmHWM", "VmRSS"); -1 where there is no procfs.
double proc_status_mib(const char* field) {
    std::ifstream in("/proc/self/status");
    std::string line;
    const std::size_t n = std::strlen(field);
    while (std::getline(in, line))
        if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':')
            return std::strtod(line.c_str() + n + 1, nullptr) / 1024.0;
    return -1.0;
}

// FNV-1a over the bytes: equal outputs, bit for bit, give equal checksums.
std::uint64_t fnv1a(const void* data, std::size_t bytes) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

struct Result {
    std::vector<double> seconds;
    double scratch_mib = 0, load_s = 0, rss_after_load_mib = -1;
    std::string checksum;
    std::string note;
};

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

std::string to_json(const std::string& component, int size, int threads, int repeats, bool warmup, const Result& r) {
    std::ostringstream o;
    o.precision(6);
    o << "{\"impl\": \"unclip\", \"component\": " << json_string(component) << ", \"size\": " << size
      << ", \"threads\": " << threads << ", \"repeats\": " << repeats << ", \"warmup\": " << (warmup ? "true" : "false")
      << ", \"seconds\": [";
    for (std::size_t i = 0; i < r.seconds.size(); ++i) o << (i ? ", " : "") << r.seconds[i];
    o << "], \"median_s\": " << r.seconds[r.seconds.size() / 2] << ", \"load_s\": " << r.load_s
      << ", \"rss_after_load_mib\": " << r.rss_after_load_mib << ", \"peak_rss_mib\": " << proc_status_mib("VmHWM")
      << ", \"scratch_mib\": " << r.scratch_mib;
    if (!r.checksum.empty()) o << ", \"checksum\": " << json_string(r.checksum);
    if (!r.note.empty()) o << ", \"note\": " << json_string(r.note);
    o << "}";
    return o.str();
}

double mib(std::size_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

}  // namespace

int main(int argc, char** argv) {
    std::string checkpoint = (std::filesystem::temp_directory_path() / "unclip-bench-unclip-h-f16.safetensors").string();
    std::string component, sampler_name = "uni_pc_bh2";
    int size = 0, threads = 2, repeats = 3;
    bool warmup = true;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
        if (arg == "--checkpoint") checkpoint = next();
        else if (arg == "--component") component = next();
        else if (arg == "--size") size = std::atoi(next().c_str());
        else if (arg == "--threads") threads = std::atoi(next().c_str());
        else if (arg == "--repeats") repeats = std::atoi(next().c_str());
        else if (arg == "--no-warmup") warmup = false;
        else if (arg == "--sampler") sampler_name = next();
        else {
            std::fprintf(stderr, "bench_components: unknown argument %s\n", arg.c_str());
            return 2;
        }
    }
    if (component != "gemm" && component != "text" && component != "vision" && component != "unet" && component != "vae" &&
        component != "sampler") {
        std::fprintf(stderr, "bench_components: --component gemm|text|vision|unet|vae|sampler is required\n");
        return 2;
    }
    if (size <= 0)
        size = component == "gemm"                                                    ? 4096
               : component == "unet" || component == "vae" || component == "sampler" ? 768
               : component == "text"                                                  ? 77
                                                                                      : 224;

    try {
        const CpuBackend::Context ctx(threads);
        threads = ctx.threads();
        Result r;
        const auto t_load = std::chrono::steady_clock::now();
        const auto loaded = [&] {
            r.load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
            r.rss_after_load_mib = proc_status_mib("VmRSS");
        };
        const auto time_it = [&](const std::function<void()>& fn) { r.seconds = bench::sorted_seconds(repeats, fn, warmup); };

        if (component == "gemm") {
            const std::int64_t n = size;
            const Tensor a = random_tensor({n, n}, 1, 0.05f), b = random_tensor({n, n}, 2, 0.05f);
            Tensor c = Tensor::empty(DType::f32, {n, n});
            loaded();
            time_it([&] {
                CpuBackend::gemm(ctx, false, false, n, n, n, 1.0f, a.data<const float>(), n, b.data<const float>(), n,
                                 0.0f, c.data<float>(), n);
            });
        } else if (component == "sampler") {
            const sampling::Sampler sampler = sampling::sampler_from_name(sampler_name);
            const std::size_t n = static_cast<std::size_t>(4 * (size / 8) * (size / 8));
            const std::vector<float> sigmas = sampling::ksampler_sigmas(
                sampling::ModelSchedule::scaled_linear(), sampling::Scheduler::normal, sampler, 20);
            const sampling::DenoiseFn model = [n](const float* x, float sigma, float* out) {
                for (std::size_t i = 0; i < n; ++i) out[i] = x[i] * (1.0f / (1.0f + sigma));
            };
            std::vector<float> x;
            loaded();
            r.note = sampler_name + ", 20 steps";
            time_it([&] {
                x.assign(n, 0.3f);
                sampling::sample(sampler, model, x, sigmas);
            });
        } else {
            if (!std::filesystem::exists(checkpoint)) {
                std::fprintf(stderr, "bench_components: no checkpoint %s (write one with unclip_make_random_checkpoint)\n",
                             checkpoint.c_str());
                return 1;
            }
            const io::Checkpoint ckpt = io::load_checkpoint(checkpoint);
            if (component == "text") {
                const nn::WeightMap weights = io::convert_weights(ckpt.text, DType::f32);
                const auto cfg = clip_text_config(ckpt.config.text, weights);
                const nn::ClipTextModel<CpuBackend, float> model(cfg, nn::load_clip_text<float>(weights, "", cfg));
                const text::ClipTokenizer tokenizer = text::ClipTokenizer::bundled();
                const text::PromptTokens tokens =
                    text::tokenize_prompt(tokenizer, "a photo of an astronaut riding a horse on the moon");
                Tensor cond = Tensor::empty(DType::f32, {1, tokens.chunks() * text::kClipContextLength, cfg.width});
                Tensor pooled = Tensor::empty(DType::f32, {1, std::max<std::int64_t>(cfg.embed_dim, 1)});
                View<float> pooled_view = view_of<float>(pooled);
                Scratch scratch(nn::encode_prompt_scratch_bytes(model, tokens));
                r.scratch_mib = mib(scratch.capacity());
                r.note = std::to_string(cfg.layers) + " blocks stored, output block " + std::to_string(cfg.output_layer);
                loaded();
                time_it([&] {
                    nn::encode_prompt(ctx, model, tokens, view_of<float>(cond), cfg.embed_dim > 0 ? &pooled_view : nullptr,
                                      scratch);
                });
            } else if (component == "vision") {
                if (ckpt.config.vision.kind == io::VisionKind::none)
                    throw Error(Status::invalid_argument, "the checkpoint has no CLIP vision tower");
                const nn::WeightMap weights = io::convert_weights(ckpt.vision, DType::f32);
                const auto cfg = clip_vision_config(ckpt.config.vision);
                const nn::ClipVisionModel<CpuBackend, float> model(cfg, nn::load_clip_vision<float>(weights, "", cfg));
                const Tensor pixels = random_tensor({1, 3, cfg.image_size, cfg.image_size}, 5);
                Tensor embeds = Tensor::empty(DType::f32, {1, cfg.embed_dim});
                Scratch scratch(model.scratch_bytes(1));
                r.scratch_mib = mib(scratch.capacity());
                size = static_cast<int>(cfg.image_size);
                loaded();
                time_it([&] { model.forward(ctx, view_of<const float>(pixels), view_of<float>(embeds), scratch); });
            } else if (component == "unet") {
                const nn::WeightMap weights = io::convert_weights(ckpt.unet, DType::f32);
                const auto cfg = unet_config(ckpt.config.unet);
                const nn::UNet<CpuBackend, float> unet(cfg, nn::load_unet<float>(weights, "", cfg));
                const std::int64_t h = size / 8, w = size / 8;
                const Tensor x = random_tensor({2, 4, h, w}, 1), context = random_tensor({2, 77, cfg.context_dim}, 2);
                const Tensor y = random_tensor({2, std::max<std::int64_t>(cfg.adm_in_channels, 1)}, 3);
                const float timesteps[2] = {999.0f, 999.0f};
                Tensor out = Tensor::empty(DType::f32, x.shape());
                Scratch scratch(unet.scratch_bytes(x.shape(), 77));
                r.scratch_mib = mib(scratch.capacity());
                loaded();
                time_it([&] {
                    unet.forward(ctx, view_of<const float>(x), timesteps, view_of<const float>(context),
                                 y.data<const float>(), view_of<float>(out), scratch);
                });
                double sum = 0;
                for (std::int64_t i = 0; i < out.numel(); ++i) sum += out.data<const float>()[i];
                char buf[64];
                std::snprintf(buf, sizeof buf, "%016" PRIx64, fnv1a(out.data<const float>(), out.numel() * sizeof(float)));
                r.checksum = buf;
                r.note = "output sum " + std::to_string(sum);
            } else {
                const nn::WeightMap weights = io::convert_weights(ckpt.vae, DType::f32);
                const auto cfg = vae_config(ckpt.config.vae);
                const nn::AutoencoderKL<CpuBackend, float> vae(cfg, std::nullopt, nn::load_vae_decoder<float>(weights, "", cfg));
                const std::int64_t h = size / 8, w = size / 8;
                const Tensor latent = random_tensor({1, 4, h, w}, 4);
                Tensor image = Tensor::empty(DType::f32, {1, 3, h * 8, w * 8});
                Scratch scratch(vae.decode_scratch_bytes(latent.shape()));
                r.scratch_mib = mib(scratch.capacity());
                loaded();
                time_it([&] { vae.decode(ctx, view_of<const float>(latent), view_of<float>(image), scratch); });
            }
        }
        const double median = r.seconds[r.seconds.size() / 2];
        std::printf("unclip %-7s %5d px, %d threads: %.4g s (median of %zu%s), load %.1f s, peak RSS %.0f MiB\n",
                    component.c_str(), size, threads, median, r.seconds.size(), warmup ? " after a warm-up" : ", no warm-up",
                    r.load_s, proc_status_mib("VmHWM"));
        std::printf("RESULT %s\n", to_json(component, size, threads, repeats, warmup, r).c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_components: %s\n", e.what());
        return 1;
    }
    return 0;
}
