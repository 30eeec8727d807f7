// unclip command-line tool. Subcommands:
//   unclip info                      library version, CPU conversion path, CUDA devices
//   unclip inspect FILE [--stats]    validate a safetensors checkpoint and list its tensors
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include <CLI/CLI.hpp>

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
    for (const auto& [key, value] : file.metadata())
        std::printf("metadata %s = %.200s\n", key.c_str(), value.c_str());
    std::printf("%zu tensors, %.2f MiB of data: header valid\n", file.entries().size(), static_cast<double>(bytes) / (1 << 20));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"unclip: Stable Diffusion 2.1 unCLIP inference"};
    app.require_subcommand(1);
    app.add_subcommand("info", "Library version, CPU paths and CUDA devices");
    auto* inspect = app.add_subcommand("inspect", "Validate a .safetensors checkpoint and list its tensors");
    std::string path;
    bool stats = false;
    inspect->add_option("file", path, "checkpoint (.safetensors)")->required();
    inspect->add_flag("--stats", stats, "also print min/max/mean and NaN/inf counts per tensor");
    CLI11_PARSE(app, argc, argv);
    try {
        if (app.got_subcommand("info")) return run_info();
        return run_inspect(path, stats);
    } catch (const unclip::Error& e) {
        std::fprintf(stderr, "unclip: error (%s): %s\n", unclip::status_name(e.status()), e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "unclip: error: %s\n", e.what());
        return 1;
    }
}
