// Fuzz target: diffusers config.json files (UNet, VAE, text encoder) and the tensor tables their
// architectures imply, as a diffusers folder loaded with allow_reduced would build them.
#include "fuzz_support.hpp"
#include "io/tensor_source.hpp"
#include "unclip/io/tiny_model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace unclip;
    static fuzz::ScratchFile scratch("config.json");
    const std::string& path = scratch.write(data, size);
    io::ModelConfig config = io::tiny_unclip_config();
    fuzz::expect_error_or_success([&] {
        config.unet = io::detail::unet_arch(path);
        io::detail::table_for(path, config, io::Component::unet);
    });
    config = io::tiny_unclip_config();
    fuzz::expect_error_or_success([&] {
        config.vae = io::detail::vae_arch(path);
        io::detail::table_for(path, config, io::Component::vae);
    });
    config = io::tiny_unclip_config();
    fuzz::expect_error_or_success([&] {
        config.text = io::detail::text_arch(path);
        io::detail::table_for(path, config, io::Component::text);
    });
    return 0;
}
