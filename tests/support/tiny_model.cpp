#include "tiny_model.hpp"

#include "test_support.hpp"
#include "unclip/io/random_checkpoint.hpp"
#include "unclip/io/tiny_model.hpp"

namespace unclip::test {

const std::string& tiny_model_path() {
    static TempDir dir;
    static const std::string path = [] {
        const std::string p = (dir / "tiny-unclip-h.safetensors").string();
        io::RandomCheckpointOptions options;
        options.dtype = DType::f32;
        options.seed = 7;
        io::write_random_checkpoint(p, io::tiny_unclip_config(), options);
        return p;
    }();
    return path;
}

}  // namespace unclip::test
