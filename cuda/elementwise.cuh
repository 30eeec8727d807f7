#pragma once
// Element-wise launches that other .cu files queue as part of a larger primitive.
#include <cstdint>

#include <cuda_runtime.h>

namespace unclip::cuda {

// y [planes, spatial] = x + values[plane % period] (x may be y): period = channels gives a
// convolution's bias (one vector for every image), period = planes one value per image and channel.
void launch_add_plane_bias(cudaStream_t stream, const float* x, float* y, const float* values, std::int64_t planes,
                           std::int64_t period, std::int64_t spatial);

}  // namespace unclip::cuda
