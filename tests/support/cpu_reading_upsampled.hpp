#pragma once
// The CPU backend as the modules see the CUDA backend's convolution: one that reads an upsampled
// input through the upsampling (Conv2d::forward_upsampled). CpuBackend::conv2d builds that input
// in scratch, bit for bit what upsample_nearest writes, so the GPU's module path runs on the CPU
// and must give the CPU path's exact output.
#include "unclip/backend/cpu.hpp"

namespace unclip::test {

struct CpuReadingUpsampled : CpuBackend {
    static constexpr bool kConvReadsUpsampledInput = true;
};

}  // namespace unclip::test
