// The running relay: io threads, storage, dispatcher, both listeners, signals.
#pragma once

#include <string>

namespace fluxrelay {

// Loads the config, serves until SIGTERM/SIGINT, shuts down gracefully. Returns the exit code.
int runRelay(const std::string& configPath);

}  // namespace fluxrelay
