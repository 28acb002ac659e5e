// Command-line parsing and the small subcommands (check-config, version).
#include "app/commands.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/use_future.hpp>

#include "app/deadletters.hpp"
#include "app/explain.hpp"
#include "app/import_flux.hpp"
#include "app/relay.hpp"
#include "config/loader.hpp"
#include "config/schema.hpp"
#include "core/file.hpp"
#include "core/log.hpp"
#include "core/time.hpp"
#include "providers/provider.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {
namespace {

constexpr const char* kUsage = R"(fluxrelay — a durable notification relay for Flux CD

Usage:
  fluxrelay serve        --config FILE [--log-level LEVEL]   run the relay (the default command)
  fluxrelay check-config [--syntax-only] FILE...            validate configs; errors as FILE:LINE:COL: message
  fluxrelay explain      --config FILE --source NAME [--event-type T] [--output json]
                         [--state-from-spool] [--now TIME] EVENT.json
                                                            show, route by route, whether the event matches and
                                                            why not, and the exact HTTP request each target would
                                                            receive (secrets redacted); sends nothing
  fluxrelay import-flux  MANIFEST.yaml...                   Flux Provider/Alert/Receiver manifests → fluxrelay
                                                            YAML on stdout; what cannot be mapped on stderr
  fluxrelay deadletters  list|replay [ID...|--all] --config FILE
                                                            list or replay dead letters of the running relay
  fluxrelay schema                                          print the configuration's JSON Schema
  fluxrelay version                                         print the version

Options:
  --config FILE       the YAML configuration
  --log-level LEVEL   trace, debug, info (default), warn, error
  --syntax-only       check-config: everything but what other files hold (secrets, TLS files, their
                      permissions) and ${ENV}: for CI, where the secrets are not
  --all               deadletters replay: every dead letter
  --source NAME       explain: the source the event comes in on
  --event-type T      explain: X-GitHub-Event of a github source's event (default push)
  --output json       explain: the report as JSON
  --state-from-spool  explain: read what targets remember (firing alerts, the last commit status) from
                      the config's storage, instead of assuming nothing is stored
  --now TIME          explain: as at this RFC 3339 time instead of now
  --help              this text
)";

struct Arguments {
    std::string command;
    std::vector<std::string> positional;
    std::map<std::string, std::string> options;
    bool help = false;
    bool all = false;
    bool stateFromSpool = false;
    bool syntaxOnly = false;
    std::string error;
};

Arguments parse(int argc, char** argv) {
    Arguments args;
    static const std::vector<std::string> kValued = {"--config",     "--log-level", "--source",
                                                     "--event-type", "--output",    "--now"};
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            args.help = true;
        } else if (arg == "--all") {
            args.all = true;
        } else if (arg == "--state-from-spool") {
            args.stateFromSpool = true;
        } else if (arg == "--syntax-only") {
            args.syntaxOnly = true;
        } else if (arg.starts_with("--")) {
            const auto eq = arg.find('=');
            const std::string name = arg.substr(0, eq);
            if (std::find(kValued.begin(), kValued.end(), name) == kValued.end()) {
                args.error = "unknown option " + name;
                return args;
            }
            if (eq != std::string::npos) {
                args.options[name] = arg.substr(eq + 1);
            } else if (i + 1 < argc) {
                args.options[name] = argv[++i];
            } else {
                args.error = "option " + name + " needs a value";
                return args;
            }
        } else if (args.command.empty() && args.positional.empty() && !arg.empty() && arg.front() != '-' &&
                   (arg == "serve" || arg == "check-config" || arg == "version" || arg == "deadletters" ||
                    arg == "explain" || arg == "import-flux" || arg == "schema")) {
            args.command = arg;
        } else {
            args.positional.push_back(arg);
        }
    }
    if (args.command.empty()) {
        args.command = "serve";
    }
    return args;
}

// One config, loaded as serve would load it; its problems on stdout, warnings on stderr.
bool checkConfigFile(const std::string& file) {
    try {
        // Held in a variable: a range-for over a member of a temporary would read a freed Config.
        const ConfigPtr config = loadConfigFile(file);
        for (const auto& warning : config->warnings) std::fprintf(stderr, "warning: %s\n", warning.c_str());
        for (const auto& warning : shadowedHeaderWarnings(*config)) {
            std::fprintf(stderr, "warning: %s\n", warning.c_str());
        }
        return true;
    } catch (const ConfigError& error) {
        for (const auto& diagnostic : error.diagnostics()) std::fprintf(stdout, "%s\n", diagnostic.toString().c_str());
        return false;
    }
}

// One config, as far as its text alone decides: no file it names is read, no ${ENV} expanded.
bool checkConfigSyntax(const std::string& file) {
    const FileContent content = readWholeFile(file);
    const std::vector<ConfigDiagnostic> diagnostics =
        content.ok() ? checkConfigText(content.bytes, file)
                     : std::vector<ConfigDiagnostic>{{file, 1, 1, "cannot read the configuration: " + content.error}};
    for (const auto& diagnostic : diagnostics) std::fprintf(stdout, "%s\n", diagnostic.toString().c_str());
    return diagnostics.empty();
}

// Exit 0 when every file passes, 1 when one does not, 2 on bad usage (as promtool check config).
int checkConfig(const Arguments& args) {
    std::vector<std::string> files = args.positional;
    if (files.empty() && args.options.contains("--config")) files.push_back(args.options.at("--config"));
    if (files.empty()) {
        std::fputs("check-config: a config FILE is required\n", stderr);
        return 2;
    }
    bool allPass = true;
    for (const std::string& file : files) {
        // Problems go to stdout, warnings to stderr: stdout stays the list of errors, or "ok".
        const bool passes = args.syntaxOnly ? checkConfigSyntax(file) : checkConfigFile(file);
        if (passes) {
            std::fprintf(stdout, "%s: ok%s\n", file.c_str(),
                         args.syntaxOnly ? " (syntax only: secret and TLS files, and ${ENV}, not read)" : "");
        }
        allPass = allPass && passes;
    }
    return allPass ? 0 : 1;
}

// The providers' state as the relay stored it, read through the storage the config names.
StateReader spoolState(const Config& config) {
    std::shared_ptr<Storage> storage = makeStorage(config.storage);
    return [storage](const std::string& key) { return asyncGetValue(*storage, key, boost::asio::use_future).get(); };
}

int explainCommand(const Arguments& args) {
    const auto option = [&](const char* name) {
        return args.options.contains(name) ? std::optional(args.options.at(name)) : std::nullopt;
    };
    const std::optional<std::string> output = option("--output");
    std::string problem;
    if (!option("--config")) {
        problem = "explain needs --config FILE";
    } else if (!option("--source")) {
        problem = "explain needs --source NAME";
    } else if (args.positional.size() != 1) {
        problem = "explain needs exactly one EVENT.json";
    } else if (output && *output != "json" && *output != "text") {
        problem = "--output takes json or text";
    }
    TimePoint now{};
    if (const auto at = option("--now"); at && !parseRfc3339(*at, now)) {
        problem = "--now takes an RFC 3339 time, such as 2026-01-02T03:04:05Z";
    }
    if (!problem.empty()) {
        std::fprintf(stderr, "fluxrelay: %s\n\n%s", problem.c_str(), kUsage);
        return 2;
    }
    return runExplain({.configFile = *option("--config"),
                       .source = *option("--source"),
                       .eventType = option("--event-type"),
                       .eventFile = args.positional.front(),
                       .json = output == "json",
                       .spoolState = args.stateFromSpool ? spoolState : std::function<StateReader(const Config&)>{},
                       .now = option("--now") ? std::optional(now) : std::nullopt});
}

}  // namespace

int runCommandLine(int argc, char** argv) {
    const Arguments args = parse(argc, argv);
    if (args.help) {
        std::fputs(kUsage, stdout);
        return 0;
    }
    if (!args.error.empty()) {
        std::fprintf(stderr, "fluxrelay: %s\n\n%s", args.error.c_str(), kUsage);
        return 2;
    }
    if (args.command == "version") {
        std::fprintf(stdout, "fluxrelay %s\n", FLUXRELAY_VERSION);
        return 0;
    }
    if (args.command == "schema") {
        std::fprintf(stdout, "%s\n", config_schema::jsonSchema().dump(2).c_str());
        return 0;
    }
    if (args.command == "check-config") {
        return checkConfig(args);
    }
    if (args.command == "explain") {
        return explainCommand(args);
    }
    if (args.command == "import-flux") {
        return runImportFlux(args.positional);
    }
    if (args.command == "deadletters") {
        if (!args.options.contains("--config")) {
            std::fputs("fluxrelay: deadletters needs --config FILE\n", stderr);
            return 2;
        }
        return runDeadLetters(args.options.at("--config"), args.positional, args.all);
    }
    const std::string level = args.options.contains("--log-level") ? args.options.at("--log-level") : "info";
    if (!setupLogging(level)) {
        std::fprintf(stderr, "fluxrelay: unknown log level %s\n", level.c_str());
        return 2;
    }
    if (!args.positional.empty()) {
        std::fprintf(stderr, "fluxrelay: unexpected argument %s\n\n%s", args.positional.front().c_str(), kUsage);
        return 2;
    }
    if (!args.options.contains("--config")) {
        std::fprintf(stderr, "fluxrelay: serve needs --config FILE\n\n%s", kUsage);
        return 2;
    }
    return runRelay(args.options.at("--config"));
}

}  // namespace fluxrelay
