#pragma once
// clip_preprocess with its row loops spread over a caller's threads (the pipeline's CPU pool). Every
// output value is computed as in the serial version, so the result is the same bits.
#include <cstdint>
#include <functional>

#include "unclip/clip_preprocess.hpp"

namespace unclip::detail {

// Runs rows(begin, end) over ranges covering [0, n), possibly concurrently.
using ParallelRows = std::function<void(std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& rows)>;

void clip_preprocess(const Image& image, const ClipPreprocessOptions& options, float* out, const ParallelRows& parallel);

}  // namespace unclip::detail
