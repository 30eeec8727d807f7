#pragma once
// Umbrella header: the whole C++ API.
#include "unclip/backend/cpu.hpp"
#include "unclip/backend/cuda.hpp"
#include "unclip/dtype.hpp"
#include "unclip/error.hpp"
#include "unclip/io/safetensors.hpp"
#include "unclip/nn/instances.hpp"
#include "unclip/scratch.hpp"
#include "unclip/tensor.hpp"
#include "unclip/version.hpp"
