// `fluxrelay explain`: what the relay would do with one event, route by route, down to the
// exact HTTP request of each target — secrets redacted, nothing sent.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/config.hpp"
#include "core/time.hpp"
#include "core/verdict.hpp"

namespace fluxrelay {

// Shown in place of every secret: credentials, signatures, capability URLs.
inline constexpr std::string_view kRedacted = "<redacted>";

// A request as explain shows it, secrets already redacted.
struct ShownRequest {
    std::string purpose;  // "credentials" (GitHub App token exchange) or "delivery"
    std::string method;
    std::string url;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
};

// A stored value the provider reads or writes: nullopt is nothing stored, or erased.
using ShownState = std::vector<std::pair<std::string, std::optional<std::string>>>;

struct ExplainedTarget {
    std::string name;
    std::string type;
    Decision rule;                       // Flux's rule for this target type
    ShownState state;                    // what the plan read
    bool stateRead = false;              // read from the spool; false: nothing stored was assumed
    std::vector<ShownRequest> requests;  // in sending order, when the rule lets the event through
    ShownState writes;                   // remembered once the requests are delivered
    std::string failure;                 // nothing is sent: why (and whether it would retry)
    std::vector<std::string> notes;      // batching, credentials the explanation cannot see
};

struct ExplainedRoute {
    std::string name;
    Decision decision;  // steps 1–5
    std::vector<ExplainedTarget> targets;
    std::string dedup;  // "mode flux, window 5m0s, key ..."; empty when the route did not match
    std::string debounce;
};

struct Explanation {
    std::string source;
    std::string sourceType;
    std::string event;    // one line: what the event is about
    std::string message;  // a Flux event's message
    // Non-empty when the source answers the request itself and nothing is routed (a GitHub ping,
    // an event the source does not list): the answer it gives.
    std::string sourceAnswer;
    std::vector<std::string> notes;  // what the file cannot show, such as the request's signature
    std::vector<ExplainedRoute> routes;

    std::size_t deliveries() const;  // (route, target) pairs that would get a delivery
};

// The event could not be read as the source's body: the message says which field.
struct ExplainError {
    std::string message;
};

// Reads a provider's stored state (an object's firing alerts, the last commit status) by key.
using StateReader = std::function<std::optional<std::string>(const std::string& key)>;

// Parses `body` as source `source` would (a Flux Event, or a GitHub webhook with X-GitHub-Event
// `eventType`), plans it with the live relay's planRoutes and plans each target's attempt with its
// provider, over the state `readState` returns (none given: nothing stored). Reads no file and
// sends nothing; `now` stamps the event, its requests and any credentials exchange. An unknown
// `source` is an ExplainError too.
std::variant<Explanation, ExplainError> explain(const Config& config, std::string_view source,
                                                std::string_view eventType, std::string_view body, TimePoint now,
                                                const StateReader& readState = {});

// Human-readable report.
std::string formatExplanation(const Explanation& explanation);
// The same as JSON (--output json).
nlohmann::json explanationJson(const Explanation& explanation);

// Secret redaction, exposed for tests. A header whose name suggests a secret keeps only its scheme
// ("Bearer <redacted>", "sha256=<redacted>").
bool isSecretHeaderName(std::string_view name);
std::string redactHeaderValue(std::string_view name, std::string_view value);
// A Receiver's /hook/<digest> path (derived from its token: whoever knows it can trigger
// reconciliations) and query parameters named like credentials.
std::string redactUrl(std::string_view url);

// The command: loads the config, reads the event file, prints the report to stdout. Exit codes:
// 0 the event parsed, 1 unreadable or invalid config or event, 2 usage errors.
struct ExplainOptions {
    std::string configFile;
    std::string source;
    std::optional<std::string> eventType;  // github sources; default push
    std::string eventFile;
    bool json = false;
    // Set: reads the providers' state from the config's storage (`--state-from-spool`).
    std::function<StateReader(const Config&)> spoolState;
    std::optional<TimePoint> now;  // explain as at this time instead of the clock's
};
int runExplain(const ExplainOptions& options);

}  // namespace fluxrelay
