// YAML → Config, strictly: every error is reported with its file:line:col.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace fluxrelay {

struct ConfigDiagnostic {
    std::string file;
    int line = 0;    // 1-based
    int column = 0;  // 1-based
    std::string message;

    std::string toString() const;  // "FILE:LINE:COL: message"
};

class ConfigError : public std::runtime_error {
public:
    explicit ConfigError(std::vector<ConfigDiagnostic> diagnostics);
    const std::vector<ConfigDiagnostic>& diagnostics() const { return diagnostics_; }

private:
    std::vector<ConfigDiagnostic> diagnostics_;
};

// Reads, expands ${ENV}, reads *File secrets (relative to the config file's folder), validates.
// Throws ConfigError listing every problem found, not just the first.
ConfigPtr loadConfigFile(const std::string& path);
// The same from text; `file` names it in diagnostics and anchors relative paths.
ConfigPtr loadConfigText(const std::string& text, const std::string& file);

// What loadConfigText would report that the text alone decides: no file it names is read and no
// ${ENV} expanded, so a config can be checked before its secrets and environment exist (as
// import-flux does with what it writes). Empty: nothing wrong.
std::vector<ConfigDiagnostic> checkConfigText(const std::string& text, const std::string& file);

}  // namespace fluxrelay
