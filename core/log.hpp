// Logging set-up: JSON lines on stderr through spdlog.
#pragma once

#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

namespace fluxrelay {

// Installs the JSON-lines stderr logger as spdlog's default; false for an unknown level name.
bool setupLogging(std::string_view level);

}  // namespace fluxrelay
