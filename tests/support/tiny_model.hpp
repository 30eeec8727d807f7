#pragma once
// The tiny random-weight unclip-h model (io::tiny_unclip_config), written once per test process.
#include <string>

namespace unclip::test {

// Path of the model file; created on first use in a temporary folder removed at exit.
const std::string& tiny_model_path();

}  // namespace unclip::test
