#pragma once
// Argument checks shared by the sampling sources: each throws Error(Status::invalid_argument)
// with a message naming the argument and the accepted range.
#include <cmath>
#include <cstddef>
#include <sstream>
#include <string>

#include "unclip/error.hpp"
#include "unclip/sampling/schedules.hpp"

namespace unclip::sampling::detail {

inline std::string format_number(double value) {
    std::ostringstream out;
    out << value;
    return out.str();
}

inline void require_finite(const char* name, double value) {
    if (!std::isfinite(value))
        throw Error(Status::invalid_argument, std::string(name) + " must be finite (got " + format_number(value) + ")");
}

// lo <= value <= hi, and finite.
inline void require_range(const char* name, double value, double lo, double hi) {
    require_finite(name, value);
    if (value < lo || value > hi)
        throw Error(Status::invalid_argument, std::string(name) + " must be in [" + format_number(lo) + ", " +
                                                  format_number(hi) + "] (got " + format_number(value) + ")");
}

// min <= value, and finite.
inline void require_at_least(const char* name, double value, double min) {
    require_finite(name, value);
    if (value < min)
        throw Error(Status::invalid_argument,
                    std::string(name) + " must be >= " + format_number(min) + " (got " + format_number(value) + ")");
}

inline void require_steps(int steps) {
    if (steps < 1 || steps > kMaxSteps)
        throw Error(Status::invalid_argument, "steps must be in [1, " + std::to_string(kMaxSteps) + "] (got " +
                                                  std::to_string(steps) + ")");
}

// Every value finite; names the first offender by index.
inline void require_all_finite(const char* name, const float* values, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (!std::isfinite(values[i]))
            throw Error(Status::invalid_argument, std::string(name) + "[" + std::to_string(i) + "] is not finite (" +
                                                      format_number(values[i]) + ")");
}

}  // namespace unclip::sampling::detail
