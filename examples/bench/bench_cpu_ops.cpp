// Times the CPU primitives the UNet spends its time in, at SD 2.1 768-px shapes (latent 96x96,
// CFG batch 2): a square fp32 GEMM (the machine's ceiling as this library reaches it) and the 3x3
// convolutions of each UNet level. Prints median wall time of `--repeats` runs after a warm-up and
// the achieved GFLOP/s (2*MACs / time).
//   bench_cpu_ops [--threads N] [--repeats R]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "bench_timing.hpp"
#include "unclip/backend/cpu.hpp"

using unclip::CpuBackend;

namespace {

std::vector<float> random_floats(std::size_t n) {
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 0.05f);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}
}  // namespace

int main(int argc, char** argv) {
    int threads = 2, repeats = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--repeats")) repeats = std::atoi(argv[i + 1]);
    }
    CpuBackend::Context ctx(threads);
    std::printf("threads %d, median of %d\n%-34s %10s %10s\n", ctx.threads(), repeats, "operation", "ms", "GFLOP/s");

    {
        const std::int64_t n = 2048;
        auto a = random_floats(n * n), b = random_floats(n * n), c = random_floats(n * n);
        const double s = unclip::bench::median_seconds(repeats, [&] {
            CpuBackend::gemm(ctx, false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
        });
        std::printf("%-34s %10.2f %10.1f\n", "gemm 2048x2048x2048", s * 1e3, 2.0 * n * n * n / s / 1e9);
    }

    struct ConvCase {
        const char* name;
        std::int64_t channels, size;
    };
    for (const ConvCase& cc : {ConvCase{"conv3x3 320ch 96x96 B2", 320, 96}, ConvCase{"conv3x3 640ch 48x48 B2", 640, 48},
                               ConvCase{"conv3x3 1280ch 24x24 B2", 1280, 24}}) {
        CpuBackend::Conv2dArgs args;
        args.batch = 2;
        args.in_channels = args.out_channels = cc.channels;
        args.height = args.width = cc.size;
        args.kernel_h = args.kernel_w = 3;
        args.pad_top = args.pad_left = args.pad_bottom = args.pad_right = 1;
        auto x = random_floats(static_cast<std::size_t>(2 * cc.channels * cc.size * cc.size));
        auto w = random_floats(static_cast<std::size_t>(cc.channels * cc.channels * 9));
        auto bias = random_floats(static_cast<std::size_t>(cc.channels));
        std::vector<float> y(x.size());
        args.x = x.data();
        args.weight = w.data();
        args.bias = bias.data();
        args.y = y.data();
        unclip::Scratch scratch(CpuBackend::conv2d_scratch_bytes(args));
        const double s = unclip::bench::median_seconds(repeats, [&] { CpuBackend::conv2d(ctx, args, scratch); });
        const double flops = 2.0 * 2 * cc.channels * cc.channels * 9 * cc.size * cc.size;
        std::printf("%-34s %10.2f %10.1f\n", cc.name, s * 1e3, flops / s / 1e9);
    }
    return 0;
}
