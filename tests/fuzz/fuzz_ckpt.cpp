// Fuzz target: a whole PyTorch zip checkpoint (.ckpt): the zip directory, local headers, data.pkl
// through the restricted unpickler, and the storage views.
#include "fuzz_support.hpp"
#include "unclip/io/ckpt.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace unclip;
    static fuzz::ScratchFile scratch("fuzz.ckpt");
    const std::string& path = scratch.write(data, size);
    fuzz::expect_error_or_success([&] {
        const auto file = io::CkptFile::open(path);
        for (const auto& entry : file.entries()) {
            fuzz::expect_error_or_success([&] {
                const Tensor t = file.get(entry.name);
                fuzz::touch(t.contiguous().raw_data(), t.nbytes());
            });
        }
    });
    return 0;
}
