/* Enum arguments outside their enumerators, passed the way a C caller passes them: in C an enum
 * holds any int, while in C++ merely loading such a value is undefined, so the fuzz target (C++)
 * routes these calls through C. */
#include <unclip.h>

const char* unclip_fuzz_sampler_name(int value) { return unclip_sampler_name((unclip_sampler)value); }
const char* unclip_fuzz_scheduler_name(int value) { return unclip_scheduler_name((unclip_scheduler)value); }
const char* unclip_fuzz_status_name(int value) { return unclip_status_name((unclip_status)value); }
