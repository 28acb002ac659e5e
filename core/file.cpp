#include "core/file.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

namespace fluxrelay {

FileContent readWholeFile(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) return {.bytes = {}, .error = std::strerror(errno)};
    std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    if (file.bad()) return {.bytes = {}, .error = "read error"};
    return {.bytes = std::move(bytes), .error = {}};
}

}  // namespace fluxrelay
