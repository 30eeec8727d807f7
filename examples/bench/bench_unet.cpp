// Full-size UNet step and VAE decode on the CPU with random weights in the real tensor names and
// shapes: writes (or reuses) a random sd21-unclip-h checkpoint, loads it, and times one CFG step
// (batch 2, 77-token context, ADM vector) at the given resolution and one VAE decode (batch 1).
// Prints the median of --repeats runs after a warm-up, GFLOP/s from the analytic FLOP count
// (SD 2.x UNet CFG step: 1.61 TFLOP at 512 px, 4.30 TFLOP at 768 px) and the scratch (peak
// activation memory) each needs.
//   bench_unet [--checkpoint FILE] [--size 768] [--threads 2] [--repeats 3] [--skip-vae] [--bf16] [--f16-weights]
// --bf16: GEMMs with bf16 inputs (CpuBackend::Context::set_bf16_gemm); --f16-weights: matrices stay fp16
// as the pipeline keeps them (the default widens the whole UNet to fp32 first).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench_timing.hpp"
#include "unclip/io/checkpoint.hpp"
#include "unclip/io/random_checkpoint.hpp"
#include "unclip/module_configs.hpp"
#include "unclip/nn/instances.hpp"

using namespace unclip;

namespace {

Tensor random_tensor(const Shape& shape, unsigned seed) {
    Tensor t = Tensor::empty(DType::f32, shape);
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
    return t;
}
}  // namespace

int main(int argc, char** argv) {
    std::string checkpoint = (std::filesystem::temp_directory_path() / "unclip-bench-unclip-h-f16.safetensors").string();
    int size = 768, threads = 2, repeats = 3;
    bool skip_vae = false, bf16 = false, f16_weights = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
        if (arg == "--checkpoint") checkpoint = next();
        else if (arg == "--size") size = std::atoi(next().c_str());
        else if (arg == "--threads") threads = std::atoi(next().c_str());
        else if (arg == "--repeats") repeats = std::atoi(next().c_str());
        else if (arg == "--skip-vae") skip_vae = true;
        else if (arg == "--bf16") bf16 = true;
        else if (arg == "--f16-weights") f16_weights = true;
        else {
            std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
            return 2;
        }
    }
    try {
        if (!std::filesystem::exists(checkpoint)) {
            std::printf("writing random sd21-unclip-h (fp16) to %s\n", checkpoint.c_str());
            io::RandomCheckpointOptions options;
            options.seed = 1;
            io::write_random_checkpoint(checkpoint, io::reference_config(io::Variant::unclip_h), options);
        }
        const auto t_load = std::chrono::steady_clock::now();
        const io::Checkpoint ckpt = io::load_checkpoint(checkpoint);
        nn::WeightMap unet_weights = f16_weights ? ckpt.unet : io::convert_weights(ckpt.unet, DType::f32);
        unet_weights.widen_on_demand();
        const auto cfg = unet_config(ckpt.config.unet);
        const nn::UNet<CpuBackend, float> unet(cfg, nn::load_unet<float>(unet_weights, "", cfg));
        std::printf("loaded %s (UNet matrices %s) in %.1f s\n", variant_name(ckpt.config.variant), f16_weights ? "fp16" : "fp32",
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count());

        CpuBackend::Context ctx(threads);
        ctx.set_bf16_gemm(bf16);
        if (bf16 && !CpuBackend::has_bf16_gemm()) std::printf("this CPU has no AVX-512 BF16: GEMMs stay fp32\n");
        const std::int64_t h = size / 8, w = size / 8;
        const Tensor x = random_tensor({2, 4, h, w}, 1), context = random_tensor({2, 77, 1024}, 2);
        const Tensor y = random_tensor({2, cfg.adm_in_channels}, 3);
        const float timesteps[2] = {999.0f, 999.0f};
        Tensor out = Tensor::empty(DType::f32, x.shape());
        Scratch scratch(unet.scratch_bytes(x.shape(), 77));
        const double s = bench::median_seconds(repeats, [&] {
            unet.forward(ctx, view_of<const float>(x), timesteps, view_of<const float>(context), y.data<const float>(),
                         view_of<float>(out), scratch);
        });
        // examples/bench/bench_flops.py's analytic counts; other sizes scale 768's by pixels (a lower bound:
        // attention grows with the square).
        const double tflop = size == 768 ? 4.30 : size == 512 ? 1.61 : size == 1024 ? 9.35 : 4.30 * (size * size) / (768.0 * 768.0);
        std::printf("UNet CFG step %dx%d batch 2, %d threads: %.2f s (median of %d), %.1f GFLOP/s, scratch %.0f MiB\n",
                    size, size, ctx.threads(), s, repeats, tflop * 1e3 / s, static_cast<double>(scratch.capacity()) / (1 << 20));

        if (!skip_vae) {
            const nn::WeightMap vae_weights = io::convert_weights(ckpt.vae, DType::f32);
            const auto vcfg = vae_config(ckpt.config.vae);
            const nn::AutoencoderKL<CpuBackend, float> vae(vcfg, std::nullopt, nn::load_vae_decoder<float>(vae_weights, "", vcfg));
            const Tensor latent = random_tensor({1, 4, h, w}, 4);
            Tensor image = Tensor::empty(DType::f32, {1, 3, size, size});
            Scratch vae_scratch(vae.decode_scratch_bytes(latent.shape()));
            const double sv = bench::median_seconds(repeats, [&] {
                vae.decode(ctx, view_of<const float>(latent), view_of<float>(image), vae_scratch);
            });
            std::printf("VAE decode %dx%d batch 1, %d threads: %.2f s (median of %d), scratch %.0f MiB\n", size, size,
                        ctx.threads(), sv, repeats, static_cast<double>(vae_scratch.capacity()) / (1 << 20));
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_unet: %s\n", e.what());
        return 1;
    }
    return 0;
}
