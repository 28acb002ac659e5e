// Reading a whole file, with the reason when it cannot be read.
#pragma once

#include <string>

namespace fluxrelay {

struct FileContent {
    std::string bytes;
    std::string error;  // set when the file could not be read: "No such file or directory", ...

    bool ok() const { return error.empty(); }
};

// Blocking: never on an io thread.
FileContent readWholeFile(const std::string& path);

}  // namespace fluxrelay
