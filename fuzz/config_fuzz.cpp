// Fuzzes the YAML config loader (config/loader) from a string: any text is a Config or a
// ConfigError listing FILE:LINE:COL diagnostics, never another exception or a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include <re2/re2.h>

#include "config/loader.hpp"
#include "fuzz/check.hpp"

namespace {

using namespace fluxrelay;

// Named as if it lived in config/, so that seeds like example.yaml find their dev secrets.
const std::string kFile = std::string(FLUXRELAY_CONFIG_DIR) + "/fuzz.yaml";

void checkConfig(const Config& config) {
    for (const SourceConfig& source : config.sources) {
        FUZZ_CHECK(!source.name.empty());
        FUZZ_CHECK(config.sourceByName(source.name) == &source);
        FUZZ_CHECK(config.sourceByPath(source.path) == &source);
        // The ingest router looks paths up as the request target's path: absolute, no query.
        FUZZ_CHECK(source.path.starts_with('/') && source.path.find_first_of("?# ") == std::string::npos);
        FUZZ_CHECK(source.path != "/healthz" && source.path != "/readyz");
    }
    for (const TargetConfig& target : config.targets) FUZZ_CHECK(config.targetByName(target.name) == &target);
    // Nothing dangles: every name a route uses is defined.
    for (const RouteConfig& route : config.routes) {
        FUZZ_CHECK(config.sourceByName(route.source) != nullptr);
        for (const std::string& target : route.targets) FUZZ_CHECK(config.targetByName(target) != nullptr);
        for (const Pattern& pattern : route.inclusionList) FUZZ_CHECK(pattern.regex && pattern.regex->ok());
        for (const Pattern& pattern : route.exclusionList) FUZZ_CHECK(pattern.regex && pattern.regex->ok());
        for (const FieldMatcher& matcher : route.match) FUZZ_CHECK(matcher.regex && matcher.regex->ok());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        const ConfigPtr config = loadConfigText(text, kFile);
        FUZZ_CHECK(config != nullptr);
        checkConfig(*config);
    } catch (const ConfigError& error) {
        FUZZ_CHECK(!error.diagnostics().empty());
        for (const ConfigDiagnostic& diagnostic : error.diagnostics()) {
            FUZZ_CHECK(diagnostic.file == kFile);
            FUZZ_CHECK(diagnostic.line >= 0 && diagnostic.column >= 0);
            FUZZ_CHECK(!diagnostic.message.empty());
            FUZZ_CHECK(diagnostic.toString().starts_with(kFile + ":"));
        }
    }
    // Any other exception escapes and is reported by libFuzzer as a crash.
    return 0;
}
