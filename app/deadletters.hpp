// `fluxrelay deadletters list|replay`: a client of the running relay's admin API.
#pragma once

#include <string>
#include <vector>

namespace fluxrelay {

// args: "list", or "replay" followed by ids; `all` replays every dead letter. Returns the exit code.
int runDeadLetters(const std::string& configPath, const std::vector<std::string>& args, bool all);

}  // namespace fluxrelay
