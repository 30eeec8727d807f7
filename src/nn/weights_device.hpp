#pragma once
// How upload_weights lays out a weight map on the device (internal; tested on the host).
#include <string>
#include <vector>

#include "unclip/nn/weights.hpp"

namespace unclip::nn::detail {

// The requested tensors of `host` in groups that upload_weights places back to back, each group
// aligned: a self-attention's to_q, to_k and to_v matrices (square, one shape and device type)
// form one, in that order, so that MultiHeadAttention runs them as one GEMM; every other tensor is
// a group of its own. Name order otherwise.
std::vector<std::vector<std::string>> upload_groups(const WeightMap& host, bool bf16);

}  // namespace unclip::nn::detail
