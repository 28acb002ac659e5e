#include "core/file.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

namespace fluxrelay {

FileContent readWholeFile(const std::string& path) {
    // A directory opens as a stream and reads as empty: say what it is instead.
    if (std::error_code ignored; std::filesystem::is_directory(path, ignored))
        return {.bytes = {}, .error = "is a directory"};
    std::ifstream file(path, std::ios::binary);
    if (!file) return {.bytes = {}, .error = std::strerror(errno)};
    std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    if (file.bad()) return {.bytes = {}, .error = "read error"};
    return {.bytes = std::move(bytes), .error = {}};
}

}  // namespace fluxrelay
