// unclip command-line tool. Subcommands:
//   unclip variation [--model M] [--unet U --vae V --text-encoder T] --image IN[:strength[:noise_aug]] ... -o OUT.png [options]   image variations
//   unclip make-tiny-model OUT.safetensors    a tiny random-weight unclip-h model (the built-in demo model)
//   unclip make-tiny-model --diffusers --variant unclip-l --prior OUT/   a tiny unclip-l folder with a prior
//   unclip info                               library version, CPU paths and CUDA devices
//   unclip inspect FILE [--stats]             validate a safetensors checkpoint and list its tensors
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#if defined(_WIN32)
#include <io.h>
#define isatty _isatty
#define fileno _fileno
#else
#include <unistd.h>
#endif

#include <CLI/CLI.hpp>

#include "unclip/io/prior.hpp"
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

int run_make_tiny_model(const std::string& output, std::uint64_t seed, bool diffusers = false,
                        const std::string& variant = "unclip-h", bool prior = false) {
    if (variant != "unclip-h" && variant != "unclip-l")
        throw unclip::Error(unclip::Status::invalid_argument, "--variant must be unclip-h or unclip-l, not '" + variant + "'");
    if (prior && !diffusers)
        throw unclip::Error(unclip::Status::invalid_argument, "--prior writes prior/ subfolders: it needs --diffusers");
    const bool l = variant == "unclip-l";
    unclip::io::RandomCheckpointOptions options;
    options.dtype = unclip::DType::f32;
    options.seed = seed;
    if (diffusers) options.layout = unclip::io::Layout::diffusers;
    unclip::io::write_random_checkpoint(output, l ? unclip::io::tiny_unclip_l_config() : unclip::io::tiny_unclip_config(), options);
    if (prior) unclip::io::write_random_prior(output, unclip::io::tiny_prior_config(l ? 768 : 1024), seed);
    std::printf("wrote %s (tiny random-weight %s demo model%s)\n", output.c_str(), variant.c_str(), prior ? " with a prior" : "");
    return 0;
}

struct VariationArgs {
    std::string model, clip_vision, unet, vae, text_encoder, out = "variation.png", init, mask, device = "cpu";
    std::vector<std::string> images;
    // Beyond variations: text -> image embedding, text-diff edits, interpolation strips.
    std::string prior;
    bool text_image = false;
    unclip::PriorParams prior_params;
    float embedding_norm = 0.0f, edit_alpha = 1.0f, edit_theta = 0.5f;
    std::vector<std::string> edit, interpolate;
    int frames = 8;
    unclip::GenerateParams params;
    int threads = 0, cuda_device = 0;
    bool low_memory = false;
    bool bf16 = false;
    bool allow_reduced = false, quiet = false;
};

// "a.png", "a.png:0.8" or "a.png:0.8:0.1": trailing numbers are strength and noise_augmentation
// (parsed from the right, so paths with ':' still work).
unclip::UnclipConditioning parse_image_arg(const std::string& arg) {
    std::string path = arg;
    std::vector<float> numbers;
    for (int i = 0; i < 2; ++i) {
        const auto colon = path.rfind(':');
        if (colon == std::string::npos) break;
        const std::string tail = path.substr(colon + 1);
        char* end = nullptr;
        const float value = std::strtof(tail.c_str(), &end);
        if (tail.empty() || *end != '\0') break;
        numbers.insert(numbers.begin(), value);
        path = path.substr(0, colon);
    }
    unclip::UnclipConditioning c;
    c.image = unclip::load_image(path);
    if (!numbers.empty()) c.strength = numbers[0];
    if (numbers.size() > 1) c.noise_augmentation = numbers[1];
    return c;
}

// The built-in demo model, written on first use into the user's cache folder.
std::string default_model_path() {
    const char* cache = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    const std::filesystem::path dir = cache && *cache ? std::filesystem::path(cache) / "unclip"
                                      : home && *home ? std::filesystem::path(home) / ".cache" / "unclip"
                                                      : std::filesystem::temp_directory_path() / "unclip";
    std::filesystem::create_directories(dir);
    const auto path = dir / "tiny-unclip-h.safetensors";
    if (!std::filesystem::exists(path)) run_make_tiny_model(path.string(), 1);
    return path.string();
}

// --text-image, --edit: turn the prompt or the first --image into an image embedding.
void apply_embedding_options(unclip::Pipeline& pipeline, VariationArgs& a) {
    if (a.text_image) {
        unclip::UnclipConditioning c;
        if (pipeline.has_prior()) {
            c.embedding = pipeline.prior_embedding(a.params.prompt, a.prior_params);
            std::printf("image embedding from the prior (%d steps, guidance %g)\n", a.prior_params.steps,
                        static_cast<double>(a.prior_params.guidance_scale));
        } else {
            c.embedding = pipeline.text_image_embedding(a.params.prompt, a.embedding_norm);
            std::printf("no prior: APPROXIMATE image embedding from the projected text embedding\n");
        }
        a.params.images.insert(a.params.images.begin(), c);
    }
    if (!a.edit.empty()) {
        if (a.edit.size() != 2) throw unclip::Error(unclip::Status::invalid_argument, "--edit takes two texts: FROM TO");
        if (a.params.images.empty() || !a.params.images.front().image)
            throw unclip::Error(unclip::Status::invalid_argument, "--edit needs a picture: --image PATH");
        auto& c = a.params.images.front();
        c.embedding = pipeline.text_diff_edit(pipeline.encode_image(*c.image), a.edit[0], a.edit[1], a.edit_alpha, a.edit_theta);
        c.image.reset();
        std::printf("text-diff edit '%s' -> '%s' (alpha %g, theta %g)\n", a.edit[0].c_str(), a.edit[1].c_str(),
                    static_cast<double>(a.edit_alpha), static_cast<double>(a.edit_theta));
    }
}

// --interpolate A B --frames N: N images along slerp(A, B, k / (N - 1)), same seed, as one contact
// sheet of up to 8 columns.
unclip::Image interpolation_strip_sheet(const std::vector<unclip::Image>& frames) {
    const int columns = std::min<int>(8, static_cast<int>(frames.size()));
    const int rows = (static_cast<int>(frames.size()) + columns - 1) / columns;
    const int w = frames.front().width, h = frames.front().height;
    unclip::Image sheet;
    sheet.width = columns * w;
    sheet.height = rows * h;
    sheet.channels = 3;
    sheet.pixels.assign(static_cast<std::size_t>(sheet.width) * sheet.height * 3, 0);
    for (std::size_t k = 0; k < frames.size(); ++k) {
        const int x0 = static_cast<int>(k) % columns * w, y0 = static_cast<int>(k) / columns * h;
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x)
                for (int ch = 0; ch < 3; ++ch)
                    sheet.pixels[(static_cast<std::size_t>(y0 + y) * sheet.width + x0 + x) * 3 + ch] = frames[k].at(x, y, ch);
    }
    return sheet;
}

std::vector<unclip::Image> interpolation_strip(unclip::Pipeline& pipeline, VariationArgs& a) {
    if (a.interpolate.size() != 2)
        throw unclip::Error(unclip::Status::invalid_argument, "--interpolate takes two pictures: A B");
    if (a.frames < 2 || a.frames > 64)
        throw unclip::Error(unclip::Status::invalid_argument, "--frames " + std::to_string(a.frames) + " outside [2, 64]");
    const auto ea = pipeline.encode_image(unclip::load_image(a.interpolate[0]));
    const auto eb = pipeline.encode_image(unclip::load_image(a.interpolate[1]));
    std::vector<unclip::Image> frames;
    const auto user_images = a.params.images;
    for (int k = 0; k < a.frames; ++k) {
        unclip::UnclipConditioning c;
        c.embedding = unclip::slerp_embeddings(ea, eb, static_cast<float>(k) / static_cast<float>(a.frames - 1));
        a.params.images = user_images;
        a.params.images.insert(a.params.images.begin(), c);
        a.params.batch_count = 1;
        frames.push_back(pipeline.generate(a.params).front());
        std::printf("frame %d/%d\n", k + 1, a.frames);
    }
    return {interpolation_strip_sheet(frames)};
}

std::string describe(const VariationArgs& a, const std::string& model) {
    const auto& p = a.params;
    std::string text = "model: " + std::filesystem::path(model).filename().string();
    for (const auto& image : a.images) text += "; image: " + image;
    text += "; prompt: " + p.prompt + "; negative: " + p.negative_prompt + "; steps: " + std::to_string(p.steps) +
            "; cfg: " + std::to_string(p.cfg_scale) + "; sampler: " + p.sampler + "; scheduler: " + p.scheduler +
            "; seed: " + std::to_string(p.seed) + "; size: " + std::to_string(p.width) + "x" + std::to_string(p.height);
    if (!a.init.empty()) text += "; init: " + a.init + "; denoise: " + std::to_string(p.denoise);
    if (!a.mask.empty()) text += "; mask: " + a.mask;
    return text + "; unclip " + unclip::kVersionString;
}

int run_variation(VariationArgs& a) {
    if (a.device != "cpu" && a.device != "cuda" && a.device != "auto")
        throw unclip::Error(unclip::Status::invalid_argument, "--device must be cpu, cuda or auto, not '" + a.device + "'");
    unclip::PipelineOptions options;
    options.device = a.device == "cuda"   ? unclip::ComputeDevice::cuda
                     : a.device == "auto" ? unclip::ComputeDevice::automatic
                                          : unclip::ComputeDevice::cpu;
    options.cuda_device = a.cuda_device;
    // With --unet and no --model the components make the model; the demo model is the default only
    // when neither is given.
    const bool demo = a.model.empty() && a.unet.empty();
    options.model_path = demo ? default_model_path() : a.model;
    options.clip_vision_path = a.clip_vision;
    options.unet_path = a.unet;
    options.vae_path = a.vae;
    options.text_encoder_path = a.text_encoder;
    options.prior_path = a.prior;
    options.threads = a.threads;
    options.low_memory = a.low_memory;
    options.bf16_gemm = a.bf16;
    options.allow_reduced = a.allow_reduced || demo;
    auto t0 = std::chrono::steady_clock::now();
    unclip::Pipeline pipeline(options);
    const auto& cfg = pipeline.model_config();
    std::printf("model %s (%s prediction%s) loaded in %.1f s; running on %s\n", unclip::io::variant_name(cfg.variant),
                unclip::io::prediction_name(cfg.prediction), cfg.reduced ? ", reduced test architecture" : "",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                pipeline.device_description().c_str());
    for (const auto& image : a.images) a.params.images.push_back(parse_image_arg(image));
    apply_embedding_options(pipeline, a);
    if (!a.init.empty()) a.params.init_image = unclip::load_image(a.init);
    if (!a.mask.empty()) a.params.mask = unclip::load_image(a.mask);

    const bool terminal = isatty(fileno(stdout));
    const auto start = std::chrono::steady_clock::now();
    if (!a.quiet) {
        a.params.on_progress = [&](const unclip::Progress& p) {
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            const double eta = elapsed / p.step * (p.steps - p.step);
            if (terminal) {
                const int filled = 30 * p.step / p.steps;
                std::printf("\r[%s%s] %d/%d  %.1f s, ETA %.1f s ", std::string(static_cast<std::size_t>(filled), '#').c_str(),
                            std::string(static_cast<std::size_t>(30 - filled), '.').c_str(), p.step, p.steps, elapsed, eta);
                if (p.step == p.steps) std::printf("\n");
            } else {
                std::printf("step %d/%d sigma %.4f elapsed %.1f s ETA %.1f s\n", p.step, p.steps,
                            static_cast<double>(p.sigma), elapsed, eta);
            }
            std::fflush(stdout);
            return true;
        };
    }
    const auto images = a.interpolate.empty() ? pipeline.generate(a.params) : interpolation_strip(pipeline, a);
    std::printf("generated %zu image(s) %dx%d in %.1f s\n", images.size(), images.front().width, images.front().height,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    const unclip::PngText text{{"parameters", describe(a, options.model_path.empty() ? options.unet_path : options.model_path)}};
    for (std::size_t i = 0; i < images.size(); ++i) {
        std::string path = a.out;
        if (images.size() > 1) {
            const auto dot = path.rfind('.');
            path = path.substr(0, dot) + "_" + std::to_string(i) + (dot == std::string::npos ? "" : path.substr(dot));
        }
        unclip::save_png(images[i], path, text);
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
    variation->add_option("--model,-m", v.model, "checkpoint: .safetensors, .ckpt or a diffusers folder (default: the tiny demo model)");
    variation->add_option("--image,-i", v.images, "conditioning picture PATH[:strength[:noise_augmentation]], repeatable (ComfyUI sums them)");
    variation->add_option("--output,-o,--out", v.out, "output PNG (an index is appended for several images)");
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
    variation->add_option("--init", v.init, "img2img: start from this picture (its size, cropped to multiples of 8)");
    variation->add_option("--denoise", v.params.denoise, "img2img strength in (0, 1] (default 1)");
    variation->add_option("--mask", v.mask, "with --init: repaint where white (or transparent)");
    variation->add_option("--vae-tile", v.params.vae_tile, "decode the VAE in tiles of this many pixels (0 = automatic)");
    variation->add_option("--clip-vision", v.clip_vision, "separate CLIP vision model file");
    variation->add_option("--unet", v.unet, "separate UNet file or diffusers unet/ folder (replaces the model's; without --model, the model is made of --unet, --vae and --text-encoder)");
    variation->add_option("--vae", v.vae, "separate VAE file (e.g. vae-ft-mse-840000-ema-pruned.safetensors) or diffusers vae/ folder");
    variation->add_option("--text-encoder", v.text_encoder, "separate OpenCLIP text encoder file or diffusers text_encoder/ folder");
    variation->add_option("--threads", v.threads, "CPU threads (default: all)");
    variation->add_flag("--low-memory", v.low_memory, "give the CLIP towers' weights back to the system after encoding");
    variation->add_flag("--bf16", v.bf16, "bf16 GEMMs on CPUs with AVX-512 BF16: faster, less exact (rel. error ~1e-2)");
    variation->add_option("--device", v.device, "cpu, cuda (the GPU; an error without one) or auto (the GPU when usable, else the CPU); default cpu");
    variation->add_option("--cuda-device", v.cuda_device, "with --device cuda or auto: the GPU's index (default 0)");
    variation->add_flag("--allow-reduced", v.allow_reduced, "accept reduced test architectures");
    variation->add_flag("--quiet,-q", v.quiet, "no per-step progress");
    variation->add_option("--prior", v.prior, "prior folder (prior/, prior_text_encoder/, prior_tokenizer/, prior_scheduler/); default: the model folder's");
    variation->add_flag("--text-image", v.text_image, "condition on the prompt's image embedding: the prior's, or without a prior the APPROXIMATE projected text embedding");
    variation->add_option("--prior-steps", v.prior_params.steps, "prior denoising steps (default 25)");
    variation->add_option("--prior-cfg", v.prior_params.guidance_scale, "prior guidance scale (default 4)");
    variation->add_option("--prior-seed", v.prior_params.seed, "prior seed (default 0)");
    variation->add_option("--embedding-norm", v.embedding_norm, "--text-image without a prior: norm of the embedding (default: that of a grey picture's)");
    variation->add_option("--edit", v.edit, "text-diff edit of the first --image: FROM TO (DALL-E 2)")->expected(2);
    variation->add_option("--edit-alpha", v.edit_alpha, "--edit: weight of the text difference (default 1)");
    variation->add_option("--edit-theta", v.edit_theta, "--edit: slerp amount in [0, 1] towards the edited embedding (default 0.5)");
    variation->add_option("--interpolate", v.interpolate, "interpolation strip between two pictures A B, written as one contact sheet")->expected(2);
    variation->add_option("--frames", v.frames, "--interpolate: frames (default 8)");

    auto* tiny = app.add_subcommand("make-tiny-model", "Write the tiny random-weight demo model");
    std::string tiny_out;
    std::uint64_t tiny_seed = 1;
    tiny->add_option("output", tiny_out, "output .safetensors")->required();
    tiny->add_option("--seed", tiny_seed, "random seed");
    bool tiny_diffusers = false, tiny_prior = false;
    std::string tiny_variant = "unclip-h";
    tiny->add_flag("--diffusers", tiny_diffusers, "write a diffusers folder instead of a single file");
    tiny->add_option("--variant", tiny_variant, "unclip-h (default) or unclip-l");
    tiny->add_flag("--prior", tiny_prior, "with --diffusers: add a tiny random prior (prior/, prior_text_encoder/, ...)");

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
        if (app.got_subcommand("make-tiny-model")) return run_make_tiny_model(tiny_out, tiny_seed, tiny_diffusers, tiny_variant, tiny_prior);
        return run_variation(v);
    } catch (const unclip::Error& e) {
        std::fprintf(stderr, "\nunclip: error (%s): %s\n", unclip::status_name(e.status()), e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\nunclip: error: %s\n", e.what());
        return 1;
    }
}
