#pragma once
// Writes checkpoints with the exact tensor names and shapes of a model (tensor_table plus the
// other keys real LDM files carry) and seeded random values, for benchmarks and tests without
// downloading real weights. Values are streamed tensor by tensor; the model is never in memory.
#include <cstdint>
#include <string>

#include "unclip/detail/export.hpp"
#include "unclip/io/checkpoint.hpp"
#include "unclip/io/model_config.hpp"

namespace unclip::io {

struct RandomCheckpointOptions {
    Layout layout = Layout::single_file;  // single_file (.safetensors) or diffusers (a folder)
    DType dtype = DType::f16;             // of every tensor, schedule buffers included (as in real files)
    std::uint64_t seed = 0;
    // Headers only: the data section is left as a hole (a sparse file), so a full-size model takes
    // no disk space and no time; for tests of names and shapes. Values then read as zero.
    bool sparse = false;
};

// Writes `config`'s model to `path` (a file for single_file, a new or empty folder for diffusers).
// The value of every weight element depends only on the seed, the tensor's LDM name and the
// element's LDM index, so both layouts of one seed load to bit-identical weights. Scales are
// sane (1/sqrt(fan_in) for weights, about 1 for norm gains); for SD 2.x, the norm bias that
// ComfyUI's v/eps heuristic reads is scaled to give config.prediction.
// Throws Error(Status::invalid_argument) for a layout other than single_file/diffusers or an
// inconsistent config, Error(Status::io) naming the path when writing fails.
UNCLIP_CXX_API void write_random_checkpoint(const std::string& path, const ModelConfig& config,
                                            const RandomCheckpointOptions& options);

}  // namespace unclip::io
