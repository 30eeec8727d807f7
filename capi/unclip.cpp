// The C boundary: each entry point is noexcept, and this file alone turns exceptions into statuses.
#include <unclip.h>

#include <string>

#include "unclip/backend/cuda.hpp"
#include "unclip/error.hpp"
#include "unclip/version.hpp"

static_assert(UNCLIP_STATUS_INTERNAL == static_cast<int>(unclip::Status::internal),
              "C and C++ status numbering must agree");

namespace {
thread_local std::string g_thread_error;
}

extern "C" {

uint32_t unclip_version(void) { return UNCLIP_API_VERSION; }

const char* unclip_version_string(void) { return unclip::kVersionString; }

const char* unclip_status_name(unclip_status status) {
    return unclip::status_name(static_cast<unclip::Status>(status));
}

const char* unclip_last_error(void) { return g_thread_error.c_str(); }

int32_t unclip_cuda_device_count(void) { return unclip::cuda::device_count(); }

}  // extern "C"
