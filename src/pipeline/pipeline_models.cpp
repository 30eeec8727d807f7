#include "pipeline/pipeline_models.hpp"

#include <filesystem>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace unclip::pipeline {
namespace {
// Linear and convolution weights stay in the checkpoint's dtype, memory-mapped (the GEMM widens
// them while packing); everything else a module asks for as fp32 is widened once.
nn::WeightMap half_precision_matrices(const nn::WeightMap& weights) {
    nn::WeightMap map = weights;
    map.widen_on_demand();
    return map;
}
}  // namespace

// MADV_PAGEOUT (Linux 5.4+) reclaims clean file pages and never loses data (anonymous memory is
// swapped or left alone); MADV_DONTNEED would zero anonymous memory, so it is not an option.
void release_resident_pages(const nn::WeightMap& weights) noexcept {
#if defined(MADV_PAGEOUT)
    const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
    for (const auto& [name, tensor] : weights.tensors()) {
        if (tensor.owns_storage() || !tensor.raw_data()) continue;  // only mapped file data can be re-read
        const auto begin = reinterpret_cast<std::uintptr_t>(tensor.raw_data());
        const auto end = begin + static_cast<std::uintptr_t>(tensor.numel()) * dtype_size(tensor.dtype());
        const std::uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;  // whole pages only
        if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_PAGEOUT);
    }
#else
    (void)weights;
#endif
}

std::unique_ptr<Models> load_models(const std::string& path, const io::LoadOptions& options) {
    auto m = std::make_unique<Models>();
    m->checkpoint = io::load_checkpoint(path, options);
    m->unet_weights = half_precision_matrices(m->checkpoint.unet);
    m->vae_weights = half_precision_matrices(m->checkpoint.vae);
    m->text_weights = half_precision_matrices(m->checkpoint.text);
    if (m->checkpoint.config.vision.kind != io::VisionKind::none) m->vision_weights = half_precision_matrices(m->checkpoint.vision);
    m->build(m->checkpoint.config, *m);

    const std::filesystem::path tokenizer_dir = m->checkpoint.tokenizer_dir;
    if (!tokenizer_dir.empty() && std::filesystem::exists(tokenizer_dir / "vocab.json"))
        m->tokenizer.emplace(text::ClipTokenizer::from_files(tokenizer_dir / "vocab.json", tokenizer_dir / "merges.txt"));
    else
        m->tokenizer.emplace(text::ClipTokenizer::bundled());
    return m;
}

}  // namespace unclip::pipeline
