// Wall-clock time and its RFC3339 text form.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace fluxrelay {

using Clock = std::chrono::system_clock;
using TimePoint = Clock::time_point;

// RFC3339 in UTC with seconds precision, e.g. "2022-09-30T06:40:29Z" (Go's time.RFC3339).
std::string formatRfc3339(TimePoint time);
// RFC3339Nano in UTC, e.g. "2022-09-30T06:40:29.123456789Z" (trailing zeros trimmed, as Go).
std::string formatRfc3339Nano(TimePoint time);
// Parses RFC3339 (optional fraction, Z or ±hh:mm offset); false when malformed.
bool parseRfc3339(std::string_view text, TimePoint& out);

}  // namespace fluxrelay
