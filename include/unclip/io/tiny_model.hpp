#pragma once
// The demo and test model: the sd21-unclip-h architecture shrunk until it is built and run in
// seconds (UNet width 64, a two-block text tower, a two-block 80-wide vision tower, VAE width 32).
// Written with random weights by io::write_random_checkpoint, it proves the whole pipeline runs;
// its images are not meaningful. Loading it needs LoadOptions::allow_reduced.
#include "unclip/detail/export.hpp"
#include "unclip/io/model_config.hpp"

namespace unclip::io {

UNCLIP_CXX_API ModelConfig tiny_unclip_config();

}  // namespace unclip::io
