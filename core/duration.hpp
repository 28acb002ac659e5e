// Go-style durations ("300ms", "30s", "5m", "1h30m"), as Flux and Kubernetes write them.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace fluxrelay {

using Duration = std::chrono::milliseconds;

// Accepts Go's time.ParseDuration syntax (units ns us µs ms s m h, fractions, sequences);
// negative durations and sub-millisecond remainders are rejected (nullopt).
std::optional<Duration> parseDuration(std::string_view text);

// Go's Duration.String() form: "1h30m0s", "5m0s", "300ms".
std::string formatDuration(Duration duration);

}  // namespace fluxrelay
