#include "unclip/error.hpp"

namespace unclip {

const char* status_name(Status status) noexcept {
    switch (status) {
        case Status::ok: return "ok";
        case Status::invalid_argument: return "invalid_argument";
        case Status::io: return "io";
        case Status::bad_model: return "bad_model";
        case Status::bad_image: return "bad_image";
        case Status::out_of_memory: return "out_of_memory";
        case Status::device: return "device";
        case Status::cancelled: return "cancelled";
        case Status::internal: return "internal";
    }
    return "unknown";
}

}  // namespace unclip
