// `fluxrelay import-flux`: Flux Provider, Alert and Receiver manifests → a fluxrelay
// config with the same routing; what cannot be mapped is reported, never silently dropped.
#pragma once

#include <string>
#include <vector>

namespace fluxrelay {

// One input file: its name (for messages, and its folder for a kustomization's namespace) and text.
struct Manifest {
    std::string name;
    std::string text;
};

struct ImportResult {
    std::string yaml;                   // the complete config, each warning also as a comment
    std::vector<std::string> warnings;  // what was not mapped, or mapped with a difference
    // "FILE:LINE:COL: message": input that is not YAML, or output the loader would refuse
    std::vector<std::string> errors;
    bool mapped = false;  // at least one route came out
};

// Pure: reads no file and no environment. Secrets are never copied: the config names a file per
// Secret key (./secrets/<secret>/<key>) and the header comment lists them.
ImportResult importFlux(const std::vector<Manifest>& manifests);

// The command: reads the files, prints the YAML on stdout and the warnings on stderr. Exit 0, or 1
// when a file cannot be read or parsed or nothing could be mapped; 2 without files.
int runImportFlux(const std::vector<std::string>& files);

}  // namespace fluxrelay
