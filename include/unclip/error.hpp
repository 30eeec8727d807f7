#pragma once
// The one exception type of the C++ API. The C API turns it into an unclip_status with the
// same numbering, so every value here has a C counterpart that is never renumbered.
#include <stdexcept>
#include <string>

#include "unclip/detail/export.hpp"

namespace unclip {

enum class Status : int {
    ok = 0,
    invalid_argument = 1,  // NULL pointer, value out of range, unknown name
    io = 2,                // a file could not be opened, read or written
    bad_model = 3,         // a checkpoint is malformed or does not fit the model
    bad_image = 4,         // an image could not be decoded or is too large
    out_of_memory = 5,
    device = 6,            // CUDA/cuBLAS failure, or no usable GPU
    cancelled = 7,
    internal = 8,          // a bug in unclip: please report it
};

// "ok", "invalid_argument", ...; "unknown" for values outside the enum.
UNCLIP_CXX_API const char* status_name(Status status) noexcept;

class UNCLIP_CXX_API Error : public std::runtime_error {
public:
    Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    Status status() const noexcept { return status_; }

private:
    Status status_;
};

}  // namespace unclip
