// `fluxrelay explain`: the live relay's own parse, planRoutes and provider requests, shown instead of sent.
#include "app/explain.hpp"

#include <algorithm>
#include <cassert>
#include <cctype>
#include <cstdio>
#include <limits>
#include <memory>
#include <set>

#include <boost/url/parse.hpp>
#include <nlohmann/json.hpp>

#include "config/loader.hpp"
#include "core/file.hpp"
#include "core/text.hpp"
#include "filters/dedup.hpp"
#include "filters/plan.hpp"
#include "gateway/flux_source.hpp"
#include "gateway/github_source.hpp"
#include "providers/provider.hpp"
#include "storage/delivery.hpp"

namespace fluxrelay {

namespace {

// What stands in for the values only a real delivery has.
constexpr std::string_view kEventId = "explain";
constexpr std::string_view kDeliveryId = "00000000-0000-0000-0000-000000000000";
constexpr std::string_view kPlaceholderToken = "explain-placeholder-token";
// A configured secret shorter than this is not searched for in bodies: it would blank out words.
constexpr std::size_t kMinSecretLength = 6;

bool containsAny(std::string_view text, std::initializer_list<std::string_view> words) {
    return std::any_of(words.begin(), words.end(),
                       [&](std::string_view word) { return text.find(word) != std::string_view::npos; });
}

std::string inQuotes(std::string_view text) { return "\"" + std::string(text) + "\""; }

// Every secret value the config holds, longest first so that a secret containing another is
// replaced whole.
std::vector<std::string> configSecrets(const Config& config) {
    std::set<std::string> found;
    const auto add = [&](const std::string& value) {
        if (value.size() >= kMinSecretLength) found.insert(value);
    };
    add(config.admin.token);
    for (const auto& source : config.sources) {
        add(source.hmacKey);
        add(source.secret);
        for (const auto& header : source.requiredHeaders) add(header.second);
    }
    for (const auto& target : config.targets) {
        add(target.token);
        add(target.password);
        add(target.hmacKey);
        if (target.app) add(target.app->privateKey);
    }
    std::vector<std::string> secrets(found.begin(), found.end());
    std::sort(secrets.begin(), secrets.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
    return secrets;
}

std::string withoutSecrets(std::string text, const std::vector<std::string>& secrets) {
    for (const auto& secret : secrets) {
        for (std::size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
            text.replace(at, secret.size(), kRedacted);
            at += kRedacted.size();
        }
    }
    return text;
}

// The request as the HTTP client puts it on the wire: Host and User-Agent first, the provider's
// headers replacing same-named ones, Content-Length last.
ShownRequest show(std::string purpose, const HttpRequest& request, const std::vector<std::string>& secrets) {
    ShownRequest shown{.purpose = std::move(purpose),
                       .method = request.method,
                       .url = withoutSecrets(redactUrl(request.url.toString()), secrets),
                       .headers = {},
                       .body = withoutSecrets(request.body, secrets)};
    std::vector<std::pair<std::string, std::string>> headers = {{"Host", request.url.hostHeader()},
                                                                {"User-Agent", "fluxrelay/" FLUXRELAY_VERSION}};
    for (const auto& [name, value] : request.headers) {
        const auto same = std::find_if(headers.begin(), headers.end(), [&name = name](const auto& header) {
            return equalsIgnoreCase(header.first, name);
        });
        if (same != headers.end()) headers.erase(same);
        headers.emplace_back(name, value);
    }
    if (!request.body.empty() || request.method != "GET") {
        headers.emplace_back("Content-Length", std::to_string(request.body.size()));
    }
    for (auto& [name, value] : headers) {
        shown.headers.emplace_back(name, withoutSecrets(redactHeaderValue(name, value), secrets));
    }
    return shown;
}

std::string decidedText(const Outcome& outcome) {
    switch (outcome.kind) {
        case OutcomeKind::permanent:
            return "no request can be built; the delivery fails permanently (dead letter): " + outcome.detail;
        case OutcomeKind::retry:
            return "no request now; the delivery would be retried: " + outcome.detail;
        case OutcomeKind::delivered:
            return "nothing is sent, and the delivery is done: " + outcome.detail;
    }
    return outcome.detail;
}

// The answer explain gives a credentials fetch, so the plan can be shown: a granted exchange or a
// token file's content, both a placeholder that is shown redacted.
CredentialsAnswer placeholderCredentials(const CredentialsFetch& fetch, TimePoint now) {
    if (!fetch.exchange) return {.response = {}, .content = std::string(kPlaceholderToken), .error = {}};
    return {.response = HttpResponse{.status = 201,
                                     .headers = {},
                                     .body = nlohmann::json{{"token", kPlaceholderToken},
                                                            {"expires_at", formatRfc3339(now + std::chrono::hours(1))}}
                                                 .dump()},
            .content = {},
            .error = {}};
}

// The target's attempt for a one-delivery batch, planned by its provider exactly as the dispatcher
// plans it; explain prints the plan where the dispatcher sends it.
void explainAttempt(const TargetConfig& target, const Delivery& delivery, TimePoint now, const StateReader& readState,
                    const std::vector<std::string>& secrets, ExplainedTarget& out) {
    const std::unique_ptr<Provider> provider = makeProvider(target);
    const std::vector<Delivery> batch{delivery};

    if (provider->maxBatch() > 1) {
        out.notes.push_back("up to " + std::to_string(provider->maxBatch()) +
                            " deliveries waiting at the same time share one request; shown alone here");
    }
    Credentials* credentials = provider->credentials();
    if (std::optional<CredentialsFetch> fetch = credentials ? credentials->fetch(now) : std::nullopt) {
        if (fetch->exchange) {
            out.requests.push_back(show("credentials", *fetch->exchange, secrets));
            out.notes.push_back("the credentials request is sent only when no fresh token is cached");
        } else {
            out.notes.push_back("the bearer token is read from " + fetch->file + " when sending");
        }
        if (Outcome outcome = credentials->accept(placeholderCredentials(*fetch, now), now);
            outcome.kind != OutcomeKind::delivered) {
            out.failure = decidedText(outcome);
            return;
        }
    }
    ProviderState state;
    for (const std::string& key : provider->stateKeys(batch)) {
        state[key] = readState ? readState(key) : std::nullopt;
        out.state.push_back({key, state[key] ? withoutSecrets(*state[key], secrets) : std::optional<std::string>()});
    }
    out.stateRead = readState != nullptr;
    // The dispatcher's steps, with each answer the next step needs made up from the plan's example.
    for (int step = 1; step <= kMaxAttemptSteps; ++step) {
        const AttemptPlan plan = provider->plan(batch, state, now);
        if (plan.decided) out.failure = decidedText(*plan.decided);
        const std::string purpose = step == 1 ? "delivery" : "delivery, step " + std::to_string(step);
        for (const HttpRequest& request : plan.requests) out.requests.push_back(show(purpose, request, secrets));
        for (const auto& [key, value] : plan.writes) {
            out.writes.push_back({key, value ? withoutSecrets(*value, secrets) : std::optional<std::string>()});
        }
        if (plan.decided && plan.decided->kind != OutcomeKind::delivered) return;
        if (plan.then && !plan.requests.empty() && !plan.then->responseAs.empty()) {
            out.notes.push_back("step " + std::to_string(step + 1) + " is planned on a made-up answer to step " +
                                std::to_string(step) + ": " + plan.then->example);
        }
        if (!advanceAttempt(plan, plan.then ? plan.then->example : std::string(), state)) return;
    }
}

std::string gateText(const RouteConfig& route, const DedupGate& gate, const Event& event) {
    switch (gate.kind) {
        case DedupGate::Kind::threshold:
            return "threshold " + std::to_string(gate.threshold) + ": an error is forwarded once the object failed " +
                   std::to_string(gate.threshold) + " times within " + formatDuration(gate.window) +
                   ", any other event starts the count again (key " + gate.key + ")";
        case DedupGate::Kind::transitions: {
            std::string text =
                "mode transitions: forwarded when the object's severity/reason differs from the last "
                "forwarded one, here " +
                inQuotes(gate.observation) + " (key " + gate.key + ")";
            if (gate.renotify > Duration::zero()) {
                text += ", an unchanged failure again every " + formatDuration(gate.renotify);
            }
            return text;
        }
        case DedupGate::Kind::window: {
            std::string text = "mode " + std::string(toString(route.dedup.mode)) + ", window " +
                               formatDuration(gate.window) + ", key " + gate.key;
            if (route.dedup.mode == DedupMode::normalized) {
                text += " (over the message as " + inQuotes(normalizeMessage(event.flux()->message)) + ")";
            }
            return text + ": suppressed when the same key was forwarded within the window";
        }
    }
    return {};
}

std::string dedupText(const RouteConfig& route, const RoutePlan& plan, const Event& event) {
    if (event.github() != nullptr) {
        return "none for GitHub deliveries (a redelivered X-GitHub-Delivery id is not triggered twice within 24h)";
    }
    if (plan.dedup.empty()) {
        return route.dedup.mode == DedupMode::none && route.dedup.threshold == 0
                   ? "off (mode none)"
                   : "none (a resolution is never suppressed)";
    }
    std::string text;
    for (const DedupGate& gate : plan.dedup) {
        text += (text.empty() ? "" : "; then ") + gateText(route, gate, event);
    }
    return text + " (the live dedup state is not consulted here)";
}

std::string describeFlux(const FluxEvent& flux) {
    const ObjectRef& object = flux.involvedObject;
    std::string text = "Flux event: " + object.kind + " " + object.namespace_ + "/" + object.name;
    if (!object.apiVersion.empty()) text += " (" + object.apiVersion + ")";
    text += ", severity " + flux.severity + ", reason " + flux.reason;
    if (!flux.reportingController.empty()) text += ", from " + flux.reportingController;
    return text;
}

std::string describeGitHub(const GitHubEvent& github) {
    std::string text = "GitHub " + github.event + " event";
    if (!github.ref.empty()) text += ", ref " + github.ref;
    if (github.deleted) text += " (deleted)";
    text += ", X-GitHub-Delivery shown as " + std::string(kDeliveryId);
    return text;
}

// The payload as the source would accept it, or the source's own answer, or why it is no event.
using Parsed = std::variant<std::variant<FluxEvent, GitHubEvent>, std::string /*answer*/, ExplainError>;

Parsed parseAsSource(const SourceConfig& source, std::string_view eventType, std::string_view body) {
    if (source.type == SourceType::flux) {
        auto parsed = parseFluxEvent(body);
        if (auto* error = std::get_if<std::string>(&parsed)) return ExplainError{"not a Flux event: " + *error};
        return std::variant<FluxEvent, GitHubEvent>(std::move(std::get<FluxEvent>(parsed)));
    }
    // The GitHub source's own checks, minus the signature the file does not carry.
    SourceConfig unsigned_ = source;
    unsigned_.secret.clear();
    const std::string_view contentType =
        body.starts_with("payload=") ? "application/x-www-form-urlencoded" : "application/json";
    const InboundRequest request{
        .body = body,
        .header = [&](std::string_view name) -> std::optional<std::string_view> {
            if (equalsIgnoreCase(name, "X-GitHub-Event")) return eventType;
            if (equalsIgnoreCase(name, "X-GitHub-Delivery")) return kDeliveryId;
            if (equalsIgnoreCase(name, "Content-Type")) return contentType;
            return std::nullopt;
        },
    };
    auto accepted = acceptGitHubRequest(unsigned_, request);
    if (std::holds_alternative<GitHubPing>(accepted)) {
        return std::string(R"(HTTP 200 {"status":"pong"}: GitHub's ping is answered by the source and never routed)");
    }
    if (const auto* rejection = std::get_if<Rejection>(&accepted)) {
        if (rejection->reason == "event_type") {
            return "HTTP " + std::to_string(rejection->status) + ": " + rejection->error;
        }
        return ExplainError{"not a GitHub " + std::string(eventType) + " webhook: " + rejection->error};
    }
    return std::variant<FluxEvent, GitHubEvent>(std::move(std::get<GitHubEvent>(accepted)));
}

nlohmann::json requestJson(const ShownRequest& request) {
    nlohmann::json headers = nlohmann::json::array();
    for (const auto& [name, value] : request.headers) headers.push_back({{"name", name}, {"value", value}});
    return {{"purpose", request.purpose},
            {"method", request.method},
            {"url", request.url},
            {"headers", headers},
            {"body", request.body}};
}

nlohmann::json stateJson(const ShownState& state) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [key, value] : state) {
        out.push_back({{"key", key}, {"value", value ? nlohmann::json(*value) : nlohmann::json(nullptr)}});
    }
    return out;
}

void appendIndented(std::string& out, std::string_view text, std::string_view indent) {
    while (!text.empty()) {
        const std::size_t end = text.find('\n');
        out.append(indent).append(text.substr(0, end)).append("\n");
        if (end == std::string_view::npos) break;
        text.remove_prefix(end + 1);
    }
}

}  // namespace

std::size_t Explanation::deliveries() const {
    std::size_t count = 0;
    for (const auto& route : routes) {
        if (!route.decision.passed()) continue;
        for (const auto& target : route.targets) count += target.rule.passed() ? 1 : 0;
    }
    return count;
}

bool isSecretHeaderName(std::string_view name) {
    return containsAny(asciiLowered(name), {"auth", "token", "secret", "signature", "password", "passwd", "key",
                                            "cookie", "credential", "session"});
}

std::string redactHeaderValue(std::string_view name, std::string_view value) {
    if (!isSecretHeaderName(name)) return std::string(value);
    // Keep what says how the secret is used: "Bearer ", "Basic ", "sha256=".
    const std::size_t space = value.find(' ');
    if (space != std::string_view::npos && space > 0 && space + 1 < value.size()) {
        return std::string(value.substr(0, space + 1)) + std::string(kRedacted);
    }
    const std::size_t equals = value.find('=');
    if (equals != std::string_view::npos && equals > 0 && equals + 1 < value.size() &&
        std::all_of(value.begin(), value.begin() + static_cast<std::ptrdiff_t>(equals),
                    [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; })) {
        return std::string(value.substr(0, equals + 1)) + std::string(kRedacted);
    }
    return std::string(kRedacted);
}

std::string redactUrl(std::string_view text) {
    const auto url = boost::urls::parse_uri_reference(text);
    if (!url) return std::string(text);
    // The parts of `text` that are secrets, as Boost.URL finds them: views into `text` itself.
    std::vector<std::string_view> secrets;
    if (url->has_userinfo()) secrets.push_back(url->encoded_userinfo());
    // The Receiver's path is a digest of its token: knowing it is enough to trigger reconciliations.
    const auto segments = url->encoded_segments();
    for (auto it = segments.begin(); it != segments.end(); ++it) {
        if (*it == "hook" && std::next(it) != segments.end() && !(*std::next(it)).empty()) {
            secrets.push_back(*std::next(it));
        }
    }
    for (const auto& param : url->encoded_params()) {
        if (param.has_value &&
            containsAny(asciiLowered(param.key), {"token", "key", "secret", "sig", "password", "auth", "credential"})) {
            secrets.push_back(param.value);
        }
    }
    // Replaced from the last to the first, so each offset still holds when its turn comes.
    std::sort(secrets.begin(), secrets.end(),
              [](std::string_view a, std::string_view b) { return a.data() > b.data(); });
    std::string out(text);
    for (const std::string_view secret : secrets) {
        out.replace(static_cast<std::size_t>(secret.data() - text.data()), secret.size(), kRedacted);
    }
    return out;
}

std::variant<Explanation, ExplainError> explain(const Config& config, std::string_view sourceName,
                                                std::string_view eventType, std::string_view body, TimePoint now,
                                                const StateReader& readState) {
    const SourceConfig* source = config.sourceByName(sourceName);
    if (source == nullptr) return ExplainError{"the config has no source " + inQuotes(sourceName)};
    Explanation out{.source = source->name, .sourceType = std::string(toString(source->type))};

    if (source->type == SourceType::flux && (!source->hmacKey.empty() || !source->requiredHeaders.empty())) {
        out.notes.push_back(
            "the source's X-Signature and required headers are not checked: explain reads the body only");
    } else if (source->type == SourceType::github && !source->secret.empty()) {
        out.notes.push_back("the source's X-Hub-Signature-256 check is skipped: explain reads the body only");
    }
    Parsed parsed = parseAsSource(*source, eventType, body);
    if (auto* error = std::get_if<ExplainError>(&parsed)) return std::move(*error);
    if (auto* answer = std::get_if<std::string>(&parsed)) {
        out.event = "GitHub " + std::string(eventType) + " event";
        out.sourceAnswer = std::move(*answer);
        return out;
    }
    auto event = std::make_shared<Event>(Event{.id = std::string(kEventId),
                                               .source = source->name,
                                               .receivedAt = now,
                                               .payload = std::move(std::get<0>(parsed))});
    if (const FluxEvent* flux = event->flux()) {
        out.event = describeFlux(*flux);
        out.message = flux->message;
    } else {
        out.event = describeGitHub(*event->github());
    }

    const std::vector<std::string> secrets = configSecrets(config);
    for (const RoutePlan& plan : planRoutes(config, event)) {
        ExplainedRoute route{.name = plan.route, .decision = plan.decision};
        if (plan.decision.passed()) {
            const auto configured = std::find_if(config.routes.begin(), config.routes.end(),
                                                 [&](const RouteConfig& r) { return r.name == plan.route; });
            assert(configured != config.routes.end());
            route.dedup = dedupText(*configured, plan, *event);
            if (plan.delay > Duration::zero()) {
                route.debounce = formatDuration(plan.delay) +
                                 ": delivered that long after acceptance; a burst within it becomes one delivery of "
                                 "the latest event";
            }
            for (const TargetPlan& targetPlan : plan.targets) {
                const TargetConfig* target = config.targetByName(targetPlan.target);
                assert(target != nullptr);  // the loader checks every route target
                ExplainedTarget shown{.name = targetPlan.target,
                                      .type = std::string(toString(target->type)),
                                      .rule = targetPlan.decision};
                if (targetPlan.decision.passed()) {
                    // As storage hands it to the dispatcher: the route's event, a first attempt,
                    // accepted after every delivery the spool holds (providers order by id).
                    const Delivery delivery{.id = std::numeric_limits<std::uint64_t>::max(),
                                            .route = plan.route,
                                            .target = targetPlan.target,
                                            .event = plan.event,
                                            .attempts = 0,
                                            .createdAt = now,
                                            .nextAttemptAt = now + plan.delay,
                                            .lastError = {}};
                    explainAttempt(*target, delivery, now, readState, secrets, shown);
                }
                route.targets.push_back(std::move(shown));
            }
        }
        out.routes.push_back(std::move(route));
    }
    return out;
}

std::string formatExplanation(const Explanation& explanation) {
    std::string out = "source " + inQuotes(explanation.source) + " (" + explanation.sourceType + ")\n";
    out += explanation.event + "\n";
    if (!explanation.message.empty()) out += "  message: " + explanation.message + "\n";
    if (!explanation.sourceAnswer.empty()) {
        out += "\nnot routed: the source answers " + explanation.sourceAnswer + "\n";
        return out;
    }
    out += "Nothing is sent. Secrets are shown as " + std::string(kRedacted) + ".\n";
    for (const auto& note : explanation.notes) out += "note: " + note + "\n";
    if (explanation.routes.empty()) {
        out += "\nno route takes events of source " + inQuotes(explanation.source) + "\n";
    }
    std::vector<std::string> delivered;
    for (const auto& route : explanation.routes) {
        out += "\nroute " + inQuotes(route.name) + ": ";
        if (!route.decision.passed()) {
            out +=
                "not matched (" + std::string(toString(route.decision.verdict)) + "): " + route.decision.reason + "\n";
            continue;
        }
        out += "matched\n";
        out += "  dedup: " + route.dedup + "\n";
        if (!route.debounce.empty()) out += "  debounce: " + route.debounce + "\n";
        for (const auto& target : route.targets) {
            out += "  target " + inQuotes(target.name) + " (" + target.type + "): ";
            if (!target.rule.passed()) {
                out += "skipped by Flux's target rule (" + std::string(toString(target.rule.verdict)) +
                       "): " + target.rule.reason + "\n";
                continue;
            }
            out += "accepted by Flux's target rule\n";
            delivered.push_back(route.name + " → " + target.name);
            for (const auto& [key, value] : target.state) {
                out += "    state " + std::string(target.stateRead ? "read from the spool" : "assumed") + ": " + key +
                       (value ? " = " + *value : std::string(" (nothing stored)")) + "\n";
            }
            for (const auto& request : target.requests) {
                out +=
                    "    " + std::string(request.purpose == "credentials" ? "credentials request" : "request") + ":\n";
                out += "      " + request.method + " " + request.url + "\n";
                for (const auto& [name, value] : request.headers) out += "      " + name + ": " + value + "\n";
                if (!request.body.empty()) {
                    out += "\n";
                    appendIndented(out, request.body, "      ");
                }
            }
            for (const auto& [key, value] : target.writes) {
                out += "    after delivery: " + key + (value ? " = " + *value : std::string(" erased")) + "\n";
            }
            if (!target.failure.empty()) out += "    " + target.failure + "\n";
            for (const auto& note : target.notes) out += "    note: " + note + "\n";
        }
    }
    out += "\nresult: ";
    if (delivered.empty()) {
        out += "no delivery\n";
    } else {
        out += std::to_string(delivered.size()) + (delivered.size() == 1 ? " delivery" : " deliveries") + " (";
        for (std::size_t i = 0; i < delivered.size(); ++i) out += (i ? ", " : "") + delivered[i];
        out += ")\n";
    }
    return out;
}

nlohmann::json explanationJson(const Explanation& explanation) {
    nlohmann::json routes = nlohmann::json::array();
    for (const auto& route : explanation.routes) {
        nlohmann::json targets = nlohmann::json::array();
        for (const auto& target : route.targets) {
            nlohmann::json requests = nlohmann::json::array();
            for (const auto& request : target.requests) requests.push_back(requestJson(request));
            targets.push_back({{"target", target.name},
                               {"type", target.type},
                               {"accepted", target.rule.passed()},
                               {"verdict", toString(target.rule.verdict)},
                               {"reason", target.rule.reason},
                               {"state", stateJson(target.state)},
                               {"stateFrom", target.state.empty() ? ""
                                             : target.stateRead   ? "spool"
                                                                  : "assumed"},
                               {"requests", requests},
                               {"writes", stateJson(target.writes)},
                               {"failure", target.failure},
                               {"notes", target.notes}});
        }
        routes.push_back({{"route", route.name},
                          {"matched", route.decision.passed()},
                          {"verdict", toString(route.decision.verdict)},
                          {"reason", route.decision.reason},
                          {"dedup", route.dedup},
                          {"debounce", route.debounce},
                          {"targets", targets}});
    }
    return {{"source", explanation.source},
            {"sourceType", explanation.sourceType},
            {"event", explanation.event},
            {"message", explanation.message},
            {"sourceAnswer", explanation.sourceAnswer},
            {"notes", explanation.notes},
            {"routes", routes},
            {"deliveries", explanation.deliveries()}};
}

int runExplain(const ExplainOptions& options) {
    ConfigPtr config;
    try {
        config = loadConfigFile(options.configFile);
    } catch (const ConfigError& error) {
        for (const auto& diagnostic : error.diagnostics()) {
            std::fprintf(stderr, "%s\n", diagnostic.toString().c_str());
        }
        return 1;
    }
    const SourceConfig* source = config->sourceByName(options.source);
    if (source == nullptr) {
        std::string names;
        for (const auto& s : config->sources) names += (names.empty() ? "" : ", ") + s.name;
        std::fprintf(stderr, "explain: %s has no source %s (sources: %s)\n", options.configFile.c_str(),
                     inQuotes(options.source).c_str(), names.empty() ? "none" : names.c_str());
        return 2;
    }
    if (options.eventType && source->type != SourceType::github) {
        std::fprintf(stderr, "explain: --event-type applies to github sources; %s is a %s source\n",
                     inQuotes(options.source).c_str(), std::string(toString(source->type)).c_str());
        return 2;
    }
    const FileContent body = readWholeFile(options.eventFile);
    if (!body.ok()) {
        std::fprintf(stderr, "explain: cannot read %s: %s\n", options.eventFile.c_str(), body.error.c_str());
        return 1;
    }
    StateReader readState;
    if (options.spoolState) {
        try {
            readState = options.spoolState(*config);
        } catch (const std::exception& error) {
            std::fprintf(stderr, "explain: cannot read the spool: %s\n", error.what());
            return 1;
        }
    }
    auto result = explain(*config, options.source, options.eventType.value_or("push"), body.bytes,
                          options.now.value_or(Clock::now()), readState);
    if (const auto* error = std::get_if<ExplainError>(&result)) {
        std::fprintf(stderr, "explain: %s: %s\n", options.eventFile.c_str(), error->message.c_str());
        return 1;
    }
    const auto& explanation = std::get<Explanation>(result);
    const std::string text =
        options.json ? explanationJson(explanation).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"
                     : formatExplanation(explanation);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
}

}  // namespace fluxrelay
