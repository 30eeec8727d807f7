// Fuzz target: the safetensors header parser and the views it hands out.
#include "fuzz_support.hpp"
#include "unclip/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace unclip;
    fuzz::expect_error_or_success([&] {
        const auto file = io::SafetensorsFile::from_memory(data, size, "fuzz.safetensors");
        for (const auto& entry : file.entries()) {
            if (file.find(entry.name) != &entry) std::abort();  // the index must agree with the list
            fuzz::expect_error_or_success([&] {
                const Tensor t = file.get(entry.name);
                fuzz::touch(t.raw_data(), t.nbytes());
            });
        }
        for (const auto& [key, value] : file.metadata()) {
            fuzz::touch(key.data(), key.size());
            fuzz::touch(value.data(), value.size());
        }
    });
    return 0;
}
