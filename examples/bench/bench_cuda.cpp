// Times each component of the unCLIP pipeline on the GPU (CudaBackend), from a full-size checkpoint
// with random weights in the real names and shapes, uploaded as the pipeline does (fp16 matrices,
// fp32 rest): the fp16 linear-layer GEMM as our ceiling, the UNet's largest self-attention with
// each flash tile, CLIP vision (1 image), the prompt encode
// (one 77-token chunk), one UNet CFG step (batch 2) at 512 and 768 px (kernels launched one by one,
// then replayed from a CUDA graph as the pipeline does: unet512_graph), a 768 px VAE decode, and
// the whole Pipeline::generate of a 768 px image variation (20 uni_pc_bh2 steps, CFG 7) in a warm
// process, with a slightly different picture each run so that its embedding is computed again,
// and that run's phases (before the first step, per step, after the last step).
// Every timed run ends with a stream synchronisation; medians after one warm-up run, which is
// timed on its own (the first run in the process: "first run" / first_s).
//
//   unclip_bench_cuda [--checkpoint FILE] [--repeats 10] [--only gemm,attn768,vision,text,unet512,unet768,vae,e2e]
//                     [--column-limits N,M,...]   (the UNet and VAE again with each further
//                                                  CudaBackend::Context::set_column_limit, named
//                                                  e.g. unet768_cols2^27)
//
// Prints a table, then one "RESULT {json}" line per measurement.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_timing.hpp"
#include "unclip/backend/cuda.hpp"
#include "unclip/io/checkpoint.hpp"
#include "unclip/module_configs.hpp"
#include "unclip/nn/instances.hpp"
#include "unclip/pipeline.hpp"
#include "unclip/text/prompt.hpp"

using namespace unclip;

namespace {

std::vector<float> random_values(std::int64_t n, unsigned seed, float stddev = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, stddev);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = dist(rng);
    return v;
}

double used_gib() {
    std::size_t free_bytes = 0, total_bytes = 0;
    cuda::memory_info(free_bytes, total_bytes);
    return static_cast<double>(total_bytes - free_bytes) / (1u << 30);
}

struct Bench {
    const CudaBackend::Context& ctx;
    int repeats;
    std::string only;
    bool wanted(const std::string& name) const { return only.empty() || ("," + only + ",").find("," + name + ",") != std::string::npos; }
    // The warm-up run is timed too (first_s): a component's first run in the process pays for
    // what is made once (cuBLAS's and cuDNN's per-shape choices, the convolution tuning, kernels
    // loaded, the workspace grown), which a fresh CLI process pays in its first step. The tuning's
    // choices are the process's: a component whose geometries an earlier one tuned (e2e after
    // unet768 and vae, a second column limit's run) adopts them, so its first run has no tuning.
    void report(const std::string& name, double flops, const std::function<void()>& fn) const {
        const auto run = [&] {
            fn();
            ctx.synchronize();
        };
        const double first = bench::sorted_seconds(1, run, false).front();
        const auto times = bench::sorted_seconds(repeats, run, false);
        const double median = times[times.size() / 2];
        std::printf("%-10s %10.3f ms  %8.1f TFLOP/s  device memory in use %.2f GiB  (first run %.3f ms)\n", name.c_str(),
                    median * 1e3, flops > 0 ? flops / median / 1e12 : 0.0, used_gib(), first * 1e3);
        std::printf("RESULT {\"impl\": \"unclip\", \"device\": \"cuda\", \"component\": \"%s\", \"median_s\": %.6f, "
                    "\"min_s\": %.6f, \"first_s\": %.6f, \"repeats\": %zu, \"tflops\": %.2f, \"device_used_gib\": %.3f}\n",
                    name.c_str(), median, times.front(), first, times.size(), flops > 0 ? flops / median / 1e12 : 0.0,
                    used_gib());
        std::fflush(stdout);
    }
};

// Device buffer of n floats filled from `values`.
struct DeviceArray {
    float* data;
    DeviceArray(const CudaBackend::Context& ctx, const std::vector<float>& values)
        : data(static_cast<float*>(cuda::allocate(values.size() * sizeof(float)))) {
        CudaBackend::upload(ctx, values.data(), data, static_cast<std::int64_t>(values.size()));
    }
    explicit DeviceArray(std::int64_t n) : data(static_cast<float*>(cuda::allocate(static_cast<std::size_t>(n) * sizeof(float)))) {}
    ~DeviceArray() { cuda::deallocate(data); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
};

}  // namespace

int main(int argc, char** argv) {
    std::string checkpoint = (std::filesystem::temp_directory_path() / "unclip-bench-unclip-h-f16.safetensors").string();
    int repeats = 10;
    std::string only;
    std::vector<std::int64_t> column_limits;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
        if (arg == "--checkpoint") checkpoint = next();
        else if (arg == "--repeats") repeats = std::atoi(next().c_str());
        else if (arg == "--only") only = next();
        else if (arg == "--column-limits") {
            std::stringstream list(next());
            for (std::string item; std::getline(list, item, ',');) column_limits.push_back(std::atoll(item.c_str()));
        }
        else {
            std::fprintf(stderr, "unclip_bench_cuda: unknown argument %s\n", arg.c_str());
            return 2;
        }
    }
    try {
        CudaBackend::Context ctx;
        std::printf("device: %s\n", cuda::device_description().c_str());
        std::printf("convolutions: %s\n", ctx.convolution_path().c_str());
        const std::int64_t default_limit = ctx.column_limit();
        std::vector<std::int64_t> limits{default_limit};
        for (std::int64_t l : column_limits)
            if (l != default_limit) limits.push_back(l);
        auto suffix = [&](std::int64_t limit) {
            if (limit == default_limit) return std::string();
            int log2 = 0;
            while ((std::int64_t{1} << (log2 + 1)) <= limit) ++log2;
            return "_cols2^" + std::to_string(log2);
        };
        const Bench bench{ctx, repeats, only};

        if (bench.wanted("gemm")) {
            // y[8192, 8192] = x W^T with fp16 W: the GEMM every linear layer and convolution uses.
            const std::int64_t n = 8192;
            const Tensor w = Tensor::empty(DType::f32, {n, n});
            const auto values = random_values(n * n, 1, 0.02f);
            std::copy(values.begin(), values.end(), w.data<float>());
            const Tensor w16 = w.to(DType::f16).to(Device::cuda);
            const DeviceArray x(ctx, random_values(n * n, 2)), y(n * n);
            bench.report("gemm8192", 2.0 * n * n * n, [&] {
                CudaBackend::linear(ctx, x.data, n, n, n, w16.raw_data(), DType::f16, nullptr, y.data, false);
            });
        }
        if (bench.wanted("attn768")) {
            // The 768 px UNet's largest self-attention: CFG batch 2 x 9216 tokens x 5 heads of 64,
            // once per flash tile (CudaBackend::FlashTile), K/V rounding included.
            const std::int64_t batch = 2, tokens = 96 * 96, heads = 5, dim = heads * 64;
            const DeviceArray q(ctx, random_values(batch * tokens * dim, 3)), k(ctx, random_values(batch * tokens * dim, 4)),
                v(ctx, random_values(batch * tokens * dim, 5)), out(batch * tokens * dim);
            CudaBackend::AttentionArgs a;
            a.q = q.data, a.k = k.data, a.v = v.data, a.out = out.data;
            a.batch = batch, a.q_len = tokens, a.kv_len = tokens, a.heads = static_cast<int>(heads), a.head_dim = 64;
            a.q_stride = a.k_stride = a.v_stride = a.out_stride = dim;
            a.q_batch_stride = a.k_batch_stride = a.v_batch_stride = a.out_batch_stride = tokens * dim;
            const CudaBackend::FlashTile configured = ctx.flash_tile();
            for (const CudaBackend::FlashTile tile : {CudaBackend::FlashTile{8, 16, 1}, CudaBackend::FlashTile{8, 16, 2},
                                                      CudaBackend::FlashTile{4, 32, 1}, CudaBackend::FlashTile{8, 32, 1}}) {
                ctx.set_flash_tile(tile);
                bench.report("attn768_" + std::to_string(tile.warps) + "x" + std::to_string(tile.warp_rows) + "x" +
                                 std::to_string(tile.blocks_per_sm),
                             4.0 * batch * heads * tokens * tokens * 64, [&] { CudaBackend::attention(ctx, a); });
            }
            ctx.set_flash_tile(configured);
        }
        if (!std::filesystem::exists(checkpoint)) {
            std::fprintf(stderr, "unclip_bench_cuda: no checkpoint %s (write one with unclip_make_random_checkpoint)\n",
                         checkpoint.c_str());
            return only == "gemm" || only == "attn768" ? 0 : 1;
        }
        const io::Checkpoint ckpt = io::load_checkpoint(checkpoint);
        auto host_map = [](const nn::WeightMap& m) {
            nn::WeightMap h = m;
            h.widen_on_demand();
            return h;
        };

        if (bench.wanted("vision") && ckpt.config.vision.kind != io::VisionKind::none) {
            const nn::WeightMap host = host_map(ckpt.vision);
            const auto cfg = clip_vision_config(ckpt.config.vision);
            const nn::ClipVisionModel<CpuBackend, float> marker(cfg, nn::load_clip_vision<float>(host, "", cfg));
            const nn::WeightMap device = nn::upload_weights(host);
            const nn::ClipVisionModel<CudaBackend, float> model(cfg, nn::load_clip_vision<float>(device, "", cfg));
            const DeviceArray pixels(ctx, random_values(3 * cfg.image_size * cfg.image_size, 5)), embeds(cfg.embed_dim);
            Scratch scratch(Device::cuda, model.scratch_bytes(1));
            bench.report("vision", 0, [&] {
                model.forward(ctx, CView<float>{pixels.data, {1, 3, cfg.image_size, cfg.image_size}},
                              View<float>{embeds.data, {1, cfg.embed_dim}}, scratch);
            });
        }
        if (bench.wanted("text")) {
            const nn::WeightMap host = host_map(ckpt.text);
            const auto cfg = clip_text_config(ckpt.config.text, host);
            const nn::ClipTextModel<CpuBackend, float> marker(cfg, nn::load_clip_text<float>(host, "", cfg));
            const nn::WeightMap device = nn::upload_weights(host);
            const nn::ClipTextModel<CudaBackend, float> model(cfg, nn::load_clip_text<float>(device, "", cfg));
            const text::PromptTokens tokens =
                text::tokenize_prompt(text::ClipTokenizer::bundled(), "a photo of an astronaut riding a horse on the moon");
            Tensor cond = Tensor::empty(DType::f32, {1, tokens.chunks() * text::kClipContextLength, cfg.width});
            Tensor pooled = Tensor::empty(DType::f32, {1, std::max<std::int64_t>(cfg.embed_dim, 1)});
            View<float> pooled_view = view_of<float>(pooled);
            Scratch scratch(Device::cuda, nn::encode_prompt_scratch_bytes(model, tokens));
            bench.report("text", 0, [&] {
                nn::encode_prompt(ctx, model, tokens, view_of<float>(cond), cfg.embed_dim > 0 ? &pooled_view : nullptr, scratch);
            });
        }
        if (bench.wanted("unet512") || bench.wanted("unet768")) {
            const nn::WeightMap host = host_map(ckpt.unet);
            const auto cfg = unet_config(ckpt.config.unet);
            const nn::UNet<CpuBackend, float> marker(cfg, nn::load_unet<float>(host, "", cfg));
            const nn::WeightMap device = nn::upload_weights(host);
            const nn::UNet<CudaBackend, float> unet(cfg, nn::load_unet<float>(device, "", cfg));
            const std::int64_t adm = std::max<std::int64_t>(cfg.adm_in_channels, 1);
            const DeviceArray context(ctx, random_values(2 * 77 * cfg.context_dim, 2)), y(ctx, random_values(2 * adm, 3));
            const float timesteps[2] = {999.0f, 999.0f};
            for (const std::int64_t limit : limits) {
                for (const int size : {512, 768}) {
                    const std::string name = "unet" + std::to_string(size);
                    if (!bench.wanted(name) || (limit != default_limit && size != 768)) continue;
                    ctx.set_column_limit(limit);
                    const std::int64_t h = size / 8;
                    const Shape shape{2, 4, h, h};
                    const DeviceArray x(ctx, random_values(shape.numel(), 1)), out(shape.numel());
                    Scratch scratch(Device::cuda, unet.scratch_bytes(shape, 77));
                    // Analytic FLOPs of one SD 2.x CFG step (BENCHMARKS.md): 1.61 TFLOP at 512, 4.30 at 768.
                    const double flops = size == 512 ? 1.61e12 : 4.30e12;
                    const CView<float> x_view{x.data, shape}, context_view{context.data, {2, 77, cfg.context_dim}};
                    const float* y_data = cfg.adm_in_channels > 0 ? y.data : nullptr;
                    bench.report(name + suffix(limit), flops, [&] {
                        unet.forward(ctx, x_view, timesteps, context_view, y_data, View<float>{out.data, shape}, scratch);
                    });
                    if (limit != default_limit) continue;
                    // As the pipeline's sampling loop runs a step: the timestep embedding, then the
                    // rest of the network from a CUDA graph (recorded after the runs above), its
                    // cross-attention keys and values projected once beforehand.
                    const DeviceArray emb(2 * cfg.time_embed_dim()), kv(unet.context_kv_floats(2, 77));
                    unet.project_context(ctx, context_view, kv.data);
                    const View<float> emb_view{emb.data, {2, cfg.time_embed_dim()}};
                    const CudaBackend::Graph graph = CudaBackend::Graph::record(ctx, [&] {
                        unet.forward_embedded(ctx, x_view, emb_view, context_view, View<float>{out.data, shape}, scratch,
                                              kv.data, 2);
                    });
                    std::printf("%s graph: %zu operations\n", name.c_str(), graph.operations());
                    bench.report(name + "_graph", flops, [&] {
                        unet.embed(ctx, timesteps, y_data, emb_view, scratch);
                        graph.launch(ctx);
                    });
                }
            }
            ctx.set_column_limit(default_limit);
        }
        if (bench.wanted("vae")) {
            const nn::WeightMap host = host_map(ckpt.vae);
            const auto cfg = vae_config(ckpt.config.vae);
            const nn::AutoencoderKL<CpuBackend, float> marker(cfg, std::nullopt, nn::load_vae_decoder<float>(host, "", cfg));
            const nn::WeightMap device = nn::upload_weights(host);
            const nn::AutoencoderKL<CudaBackend, float> vae(cfg, std::nullopt, nn::load_vae_decoder<float>(device, "", cfg));
            const Shape latent{1, 4, 96, 96}, image{1, 3, 768, 768};
            const DeviceArray in(ctx, random_values(latent.numel(), 4)), out(image.numel());
            Scratch scratch(Device::cuda, vae.decode_scratch_bytes(latent));
            for (const std::int64_t limit : limits) {
                ctx.set_column_limit(limit);
                bench.report("vae768" + suffix(limit), 0,
                             [&] { vae.decode(ctx, CView<float>{in.data, latent}, View<float>{out.data, image}, scratch); });
            }
            ctx.set_column_limit(default_limit);
        }
        // What the components' convolutions ran on: each geometry's tuning (cuDNN against im2col).
        for (const CudaBackend::ConvolutionTiming& t : ctx.convolution_timings())
            std::printf("conv %-52s cuDNN %8.3f ms  im2col %8.3f ms  -> %s\n", t.geometry.c_str(), t.cudnn_ms, t.im2col_ms,
                        t.cudnn ? "cuDNN" : "im2col");
        if (bench.wanted("e2e")) {
            PipelineOptions options;
            options.model_path = checkpoint;
            options.device = ComputeDevice::cuda;
            Pipeline pipeline(options);
            GenerateParams params;
            params.steps = 20;
            params.cfg_scale = 7.0f;
            params.sampler = "uni_pc_bh2";
            params.prompt = "a photo of a lighthouse at dusk";
            Image picture;
            picture.width = picture.height = 512;
            picture.channels = 3;
            picture.pixels.resize(512 * 512 * 3);
            for (std::size_t i = 0; i < picture.pixels.size(); ++i) picture.pixels[i] = static_cast<std::uint8_t>((i * 31) % 251);
            params.images.push_back({picture, {}, 1.0f, 0.0f});
            // Where the end to end's time goes: until the first step's progress call (text and
            // image encoders, noise augmentation; the loop reports a step once it is queued and
            // the step before it has run), between progress calls (a sampling step), after the
            // last (the last step, the VAE decode, the pixels).
            using Clock = std::chrono::steady_clock;
            Clock::time_point start, last;
            std::vector<double> prologue, steps, epilogue;
            params.on_progress = [&](const Progress& progress) {
                const Clock::time_point now = Clock::now();
                if (progress.step == 1) prologue.push_back(std::chrono::duration<double>(now - start).count());
                else steps.push_back(std::chrono::duration<double>(now - last).count());
                last = now;
                return true;
            };
            std::uint8_t run = 0;
            bench.report("e2e768", 0, [&] {
                params.images[0].image->pixels[0] = ++run;  // a new picture: no cached embedding
                params.seed = run;
                start = Clock::now();
                pipeline.generate(params);
                epilogue.push_back(std::chrono::duration<double>(Clock::now() - last).count());
            });
            auto median_ms = [](std::vector<double> v) {
                std::sort(v.begin(), v.end());
                return v.empty() ? 0.0 : v[v.size() / 2] * 1e3;
            };
            std::printf("e2e768 phases (medians over all runs, warm-up included): until step 1 %.2f ms, each later "
                        "step %.2f ms, after the last step %.2f ms\n",
                        median_ms(prologue), median_ms(steps), median_ms(epilogue));
            std::printf("RESULT {\"impl\": \"unclip\", \"device\": \"cuda\", \"component\": \"e2e768_phases\", "
                        "\"until_first_step_s\": %.6f, \"step_s\": %.6f, \"after_last_step_s\": %.6f}\n",
                        median_ms(prologue) / 1e3, median_ms(steps) / 1e3, median_ms(epilogue) / 1e3);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "unclip_bench_cuda: %s\n", e.what());
        return 1;
    }
    return 0;
}
