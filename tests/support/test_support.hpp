#pragma once
// What every test executable shares: fixture loading, tensor comparison, temporary files.
#include <cstdint>
#include <filesystem>
#include <string>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "unclip/io/safetensors.hpp"
#include "unclip/nn/weights.hpp"
#include "unclip/tensor.hpp"

namespace unclip::test {

// Tolerances, each with the reason it is what it is.
// fp32 CPU against PyTorch fp32 on the CPU: only the summation order differs.
inline constexpr double kFp32Golden = 1e-5;
// The quality bar for any fp32 module against its reference (developers' guide).
inline constexpr double kFp32Module = 1e-4;

std::filesystem::path data_path(const std::string& relative);

// A golden fixture written by tests/golden/generate.py.
class Fixture {
public:
    explicit Fixture(const std::string& relative);
    // A tensor of the fixture; fails the test (throws) when missing.
    Tensor operator[](const std::string& name) const;
    // Every tensor under `prefix`, with the prefix removed from the names.
    nn::WeightMap weights(const std::string& prefix) const;
    // The "config" metadata entry.
    nlohmann::json config() const;
    const io::SafetensorsFile& file() const noexcept { return file_; }

private:
    io::SafetensorsFile file_;
};

struct Closeness {
    double rel_l2 = 0;            // ||actual - expected|| / ||expected||
    double max_abs = 0;           // largest |actual - expected|
    std::int64_t max_index = -1;  // flat index of max_abs
    std::int64_t nan_count = 0, inf_count = 0;  // in actual
    double expected_norm = 0;
    bool shapes_match = true;
    std::string describe() const;
};
// Both tensors are converted to float; shapes must match.
Closeness compare(const Tensor& actual, const Tensor& expected);
// Passes iff shapes match, no NaN/inf, expected has non-zero norm and rel_l2 <= tolerance.
bool close_enough(const Closeness& c, double tolerance);

// A fresh directory removed (with its contents) at scope exit.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
};

void write_bytes(const std::filesystem::path& path, const std::string& bytes);

}  // namespace unclip::test

// Compares two tensors by relative L2 error and prints rel. L2, max abs error and its index and
// the NaN/inf counts whether it passes or not.
#define CHECK_CLOSE(actual, expected, tolerance)                                             \
    do {                                                                                      \
        const auto unclip_closeness_ = ::unclip::test::compare((actual), (expected));         \
        MESSAGE(unclip_closeness_.describe() << " (tolerance " << (tolerance) << ")");        \
        CHECK_MESSAGE(::unclip::test::close_enough(unclip_closeness_, (tolerance)),           \
                      unclip_closeness_.describe());                                          \
    } while (0)

// Runs `statement`, which must throw unclip::Error with `status` and a message containing `needle`.
#define CHECK_THROWS_STATUS(statement, expected_status, needle)                                        \
    do {                                                                                      \
        bool unclip_thrown_ = false;                                                          \
        try {                                                                                 \
            statement;                                                                        \
        } catch (const ::unclip::Error& unclip_error_) {                                      \
            unclip_thrown_ = true;                                                            \
            INFO("message: " << std::string(unclip_error_.what()));                                        \
            CHECK(unclip_error_.status() == (expected_status));                                        \
            CHECK(std::string(unclip_error_.what()).find(needle) != std::string::npos);       \
        }                                                                                     \
        CHECK_MESSAGE(unclip_thrown_, "expected unclip::Error from: " #statement);            \
    } while (0)
