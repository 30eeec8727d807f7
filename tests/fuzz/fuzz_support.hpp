#pragma once
// What the fuzz targets share. Each target defines LLVMFuzzerTestOneInput; built with clang and
// -fsanitize=fuzzer it is a libFuzzer binary (tests/fuzz/run.sh), built with replay_main.cpp it
// replays the committed corpus in the normal test suite (ctest -L fuzz).
//
// A target accepts exactly one outcome for bad input: unclip::Error. Any other exception escapes
// and aborts the run, which libFuzzer (and the replay driver) report as a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include <unistd.h>

#include "unclip/error.hpp"

namespace unclip::fuzz {

// Runs `body`, swallowing unclip::Error (the documented refusal) and nothing else.
template <class Body>
void expect_error_or_success(Body&& body) {
    try {
        body();
    } catch (const Error& e) {
        if (e.status() == Status::internal) throw;  // "a bug in unclip": a finding
        if (std::string_view(e.what()).empty()) throw;  // every refusal must say what was wrong
    }
}

// Sums the bytes of a buffer so that every byte is read: the sanitizers see out-of-bounds views.
inline std::uint64_t touch(const void* data, std::size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < bytes; ++i) sum += p[i];
    return sum;
}

// One scratch file per process for the readers that take a path (the .ckpt reader maps files).
class ScratchFile {
public:
    explicit ScratchFile(const std::string& name) {
        std::error_code ec;
        std::filesystem::path dir = "/dev/shm";
        if (!std::filesystem::is_directory(dir, ec)) dir = std::filesystem::temp_directory_path();
        dir /= "unclip-fuzz-" + std::to_string(static_cast<long long>(current_pid()));
        std::filesystem::create_directories(dir, ec);
        dir_ = dir;
        path_ = (dir / name).string();
    }
    ~ScratchFile() {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    ScratchFile(const ScratchFile&) = delete;
    ScratchFile& operator=(const ScratchFile&) = delete;

    const std::string& write(const std::uint8_t* data, std::size_t size) {
        std::FILE* f = std::fopen(path_.c_str(), "wb");
        if (!f) std::abort();
        if (size && std::fwrite(data, 1, size, f) != size) std::abort();
        std::fclose(f);
        return path_;
    }
    const std::filesystem::path& dir() const noexcept { return dir_; }

private:
    static long current_pid() { return static_cast<long>(::getpid()); }
    std::filesystem::path dir_;
    std::string path_;
};

}  // namespace unclip::fuzz
