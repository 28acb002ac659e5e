// Shell-style globs for names, namespaces and branches: `*` any run, `?` one character.
#pragma once

#include <string_view>

namespace fluxrelay {

bool globMatch(std::string_view pattern, std::string_view text);

}  // namespace fluxrelay
