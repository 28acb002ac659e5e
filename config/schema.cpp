// The configuration's description (config/schema.hpp) and its JSON Schema form.
#include "config/schema.hpp"

#include <string>

#include "config/config.hpp"

namespace fluxrelay::config_schema {

namespace {

constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();

constexpr std::string_view kSourceTypes[] = {"flux", "github"};
constexpr std::string_view kTargetTypes[] = {"alertmanager",  "github",     "github-deployment",
                                             "flux-receiver", "kubernetes", "generic"};
constexpr std::string_view kSyncModes[] = {"normal", "full"};
constexpr std::string_view kSeverities[] = {"info", "error"};
constexpr std::string_view kDedupModes[] = {"flux", "normalized", "transitions", "none"};

// The shorthand of the tables below.
constexpr Key string(std::string_view name, std::string_view description) {
    return {.name = name, .kind = Kind::string, .description = description};
}
constexpr Key nonEmpty(std::string_view name, std::string_view description) {
    return {.name = name, .kind = Kind::nonEmpty, .description = description};
}
constexpr Key required(Key key) {
    key.required = true;
    return key;
}
constexpr Key boolean(std::string_view name, std::string_view description) {
    return {.name = name, .kind = Kind::boolean, .description = description};
}
constexpr Key integer(std::string_view name, std::int64_t min, std::int64_t max, std::string_view description) {
    return {.name = name, .kind = Kind::integer, .description = description, .min = min, .max = max};
}
constexpr Key duration(std::string_view name, std::string_view description) {
    return {.name = name, .kind = Kind::duration, .description = description};
}
constexpr Key choice(std::string_view name, std::span<const std::string_view> choices, std::string_view description) {
    return {.name = name, .kind = Kind::choice, .description = description, .choices = choices};
}
constexpr Key stringList(std::string_view name, std::string_view description) {
    return {.name = name, .kind = Kind::stringList, .description = description};
}
constexpr Key stringMap(std::string_view name, std::string_view description) {
    return {.name = name, .kind = Kind::stringMap, .description = description};
}
// Names of Alertmanager labels (or annotations) → templates; `reserved` are Flux's own.
constexpr Key templateMap(std::string_view name, std::span<const std::string_view> reserved,
                          std::string_view description) {
    return {.name = name,
            .kind = Kind::stringMap,
            .description = description,
            .namePattern = kLabelNamePattern,
            .reservedNames = reserved};
}
constexpr Key mapping(std::string_view name, const Section& section, std::string_view description) {
    return {.name = name, .kind = Kind::mapping, .description = description, .section = &section};
}
constexpr Key mappingList(std::string_view name, const Section& section, std::string_view description) {
    return {.name = name, .kind = Kind::mappingList, .description = description, .section = &section};
}
constexpr Key only(std::string_view type, Key key, std::string_view othersDoNot = {}) {
    key.onlyFor = type;
    key.othersDoNot = othersDoNot;
    return key;
}
constexpr Key onlyBoth(std::string_view type, std::string_view alsoType, Key key) {
    key.onlyFor = type;
    key.alsoFor = alsoType;
    return key;
}

constinit const Key kListenerTlsKeys[] = {
    required(string("certFile", "PEM certificate chain, reloaded when it changes")),
    required(string("keyFile", "PEM private key")),
    string("clientCAFile", "PEM CA bundle: clients must present a certificate it signed (mutual TLS)"),
};

constinit const Key kServerKeys[] = {
    string("listen", "ingest listener, IP:PORT (default 0.0.0.0:8080)"),
    mapping("tls", kListenerTls, "serve HTTPS"),
    integer("maxBodyBytes", 1, std::numeric_limits<std::int64_t>::max(), "largest request body accepted"),
    integer("ioThreads", 1, 1024, "threads serving the listeners and targets"),
    integer("maxConnections", 1, 1'000'000, "open connections accepted at once"),
    duration("readTimeout", "time to read a whole request"),
    duration("idleTimeout", "how long a kept-alive connection may wait for its next request"),
    duration("writeTimeout", "time to write a response"),
};

constinit const Key kAdminKeys[] = {
    string("listen", "admin listener (status page, /metrics, /api/v1), IP:PORT (default 127.0.0.1:9090)"),
    mapping("tls", kListenerTls, "serve HTTPS"),
    string("token", "bearer token for the admin API's writes"),
    string("tokenFile", "file holding the admin bearer token"),
    duration("forgetObjectsAfter",
             "a failing Flux object leaves fluxrelay_flux_object_failing this long after its last event (default 24h)"),
};

constinit const Key kRedisKeys[] = {
    required(string("url", "redis://HOST[:PORT][/DB], without credentials")),
    nonEmpty("keyPrefix", "prefix of every key (default \"fluxrelay:\")"),
    nonEmpty("username", "ACL user"),
    string("password", "ACL password"),
    string("passwordFile", "file holding the ACL password"),
    duration("claimIdle", "after how long a stopped replica's deliveries are taken over"),
    duration("timeout", "connecting, and each reply"),
};

constinit const Key kStorageKeys[] = {
    nonEmpty("path", "folder of the SQLite spool (default ./fluxrelay-data)"),
    choice("sync", kSyncModes, "normal: survives a crash of fluxrelay; full: also a power loss"),
    duration("retention", "how long dead letters are kept"),
    integer("maxQueuedDeliveries", 1, std::numeric_limits<std::int64_t>::max(),
            "deliveries held at most; past it ingest answers 503"),
    mapping("redis", kRedis, "share the spool between replicas in this Redis instead of SQLite"),
};

constinit const Key kRateLimitKeys[] = {
    required(integer("requestsPerSecond", 1, 1'000'000, "sustained requests per second")),
    integer("burst", 1, 1'000'000, "requests allowed at once (default requestsPerSecond)"),
};

constinit const Key kSourceKeys[] = {
    required(nonEmpty("name", "the name routes use")),
    required(choice("type", kSourceTypes, "flux: a Flux generic/generic-hmac Provider; github: GitHub webhooks")),
    required(string("path", "URL path it listens on, e.g. /flux/events")),
    mapping("rateLimit", kRateLimit, "requests per second accepted from each client address"),
    only("flux", string("hmacKey", "HMAC key of Flux's generic-hmac Provider")),
    only("flux", string("hmacKeyFile", "file holding the HMAC key")),
    only("flux", stringMap("requiredHeaders", "headers every request must carry with these values")),
    only("github", string("secret", "the webhook's secret")),
    only("github", string("secretFile", "file holding the webhook's secret")),
    only("github", boolean("allowSha1", "also accept X-Hub-Signature (SHA-1) when SHA-256 is absent")),
    only("github", stringList("events", "X-GitHub-Event values accepted (default: every one)")),
};

constinit const Key kRetryKeys[] = {
    integer("maxAttempts", 0, kIntMax, "attempts at most (0: no limit but maxAge)"),
    duration("maxAge", "give up this long after the event was accepted"),
    duration("initialInterval", "first backoff"),
    duration("maxInterval", "longest backoff"),
};

constinit const Key kGitHubAppKeys[] = {
    required(integer("appID", 1, std::numeric_limits<std::int64_t>::max(), "the GitHub App's id")),
    required(integer("installationID", 1, std::numeric_limits<std::int64_t>::max(), "the App's installation id")),
    string("privateKeyFile", "file holding the App's private key (PEM)"),
    string("privateKey", "the App's private key (PEM)"),
};

constinit const Key kReceiverKeys[] = {
    required(nonEmpty("name", "the Receiver's name")),
    required(nonEmpty("namespace", "the Receiver's namespace")),
};

constinit const Key kResourceKeys[] = {
    required(nonEmpty("apiVersion", "e.g. kustomize.toolkit.fluxcd.io/v1")),
    required(nonEmpty("kind", "e.g. Kustomization")),
    required(nonEmpty("name", "the object's name, or * for every one")),
    required(nonEmpty("namespace", "the object's namespace")),
};

constinit const Key kTargetKeys[] = {
    required(nonEmpty("name", "the name routes use")),
    required(choice("type", kTargetTypes, "where deliveries go")),
    string("address", "URL of the target (github: the repository's URL)"),
    duration("timeout", "time for one request"),
    string("caFile", "PEM CA bundle the target's certificate must chain to"),
    string("certFile", "client certificate (PEM)"),
    string("keyFile", "client certificate's key (PEM)"),
    boolean("insecureSkipVerify", "do not verify the target's certificate (not recommended)"),
    string("proxy", "http://HOST:PORT of an HTTP proxy"),
    string("proxyCredentialsFile", "file holding the proxy's username:password"),
    stringMap("headers", "extra headers on every request"),
    mapping("retry", kRetry, "retry policy"),
    integer("concurrency", 1, kIntMax, "requests in flight at once"),
    string("token", "bearer token"),
    string("tokenFile", "file holding the bearer token"),
    only("alertmanager", integer("maxBatch", 1, kIntMax, "alerts per request"), "send one request per event"),
    only("alertmanager", string("username", "basic auth user"), "send no username and password"),
    only("alertmanager", string("password", "basic auth password"), "send no username and password"),
    only("alertmanager", string("passwordFile", "file holding the basic auth password"),
         "send no username and password"),
    only("alertmanager", boolean("resolve", "resolve an object's alerts when it recovers")),
    only("alertmanager", duration("refireInterval", "how often firing alerts are sent again (resolve: true)")),
    only("alertmanager", stringMap("severityMap", "rename severities, e.g. {error: critical}")),
    only("alertmanager",
         templateMap("labels", kFluxAlertLabels,
                     "labels added to every alert, e.g. {cluster: home, team: \"{metadata.team}\"}; Flux's own cannot "
                     "be set")),
    only("alertmanager",
         templateMap("annotations", kFluxAlertAnnotations,
                     "annotations added to every alert, e.g. {summary: \"{kind}/{name}: {reason}\"}; not message")),
    only("github", nonEmpty("context", "the commit status's context, e.g. {kind}/{name}")),
    onlyBoth("github", "github-deployment", mapping("app", kGitHubApp, "authenticate as a GitHub App")),
    only("github-deployment",
         nonEmpty("environment", "the Deployment's environment (a template), e.g. production or home/{name}")),
    only("github-deployment", boolean("productionEnvironment", "whether end users use the environment")),
    only("github-deployment",
         string("environmentUrl", "URL of the environment (a template), e.g. https://{name}.example.org")),
    only("github-deployment", string("logUrl", "URL of the rollout's output (a template)")),
    only("flux-receiver", mapping("receiver", kReceiver, "the Flux Receiver to reconcile")),
    only("kubernetes", mappingList("resources", kResource, "the Flux objects to annotate for a reconcile")),
    only("generic", string("hmacKey", "HMAC key: signs each body as Flux's generic-hmac Provider (X-Signature)")),
    only("generic", string("hmacKeyFile", "file holding the HMAC key")),
};

constinit const Key kEventSourceKeys[] = {
    required(nonEmpty("kind", "the object's kind, e.g. Kustomization")),
    nonEmpty("name", "the object's name, * for every one"),
    nonEmpty("namespace", "the object's namespace"),
};

constinit const Key kMatchKeys[] = {
    string("reason", "RE2 pattern over the event's reason"),
    string("kind", "RE2 pattern over the object's kind"),
    string("name", "RE2 pattern over the object's name"),
    string("namespace", "RE2 pattern over the object's namespace"),
    string("reportingController", "RE2 pattern over the reporting controller"),
    stringMap("metadata", "metadata key → RE2 pattern over its value"),
};

constinit const Key kDedupKeys[] = {
    choice("mode", kDedupModes, "what makes two events the same"),
    duration("window", "how long a forwarded event suppresses its duplicates"),
    duration("renotify", "transitions: an unchanged failure again this often (0: never)"),
    integer("threshold", 0, kIntMax, "errors of an object within the window before it is forwarded"),
};

constinit const Key kRouteKeys[] = {
    required(nonEmpty("name", "the route's name")),
    required(nonEmpty("source", "the source whose events it takes")),
    required(stringList("targets", "targets it delivers to")),
    only("flux", choice("eventSeverity", kSeverities, "info: every event; error: errors only")),
    only("flux", mappingList("eventSources", kEventSource, "objects whose events it takes (Flux's Alert)")),
    only("flux", stringList("inclusionList", "RE2 patterns: the message must match one")),
    only("flux", stringList("exclusionList", "RE2 patterns: the message must match none")),
    only("flux", mapping("match", kMatch, "RE2 patterns over the event's fields")),
    only("flux", stringMap("eventMetadata", "metadata added to every event")),
    only("flux", string("summary", "metadata summary added to every event")),
    only("flux", mapping("dedup", kDedup, "duplicate suppression")),
    only("github", stringList("events", "X-GitHub-Event values it takes")),
    only("github", stringList("branches", "branches (glob) whose pushes it takes")),
    only("github", duration("debounce", "a burst of pushes becomes one reconcile after this")),
};

constinit const Key kConfigurationKeys[] = {
    mapping("server", kServer, "the ingest listener"),
    mapping("admin", kAdmin, "the admin listener"),
    mapping("storage", kStorage, "the spool"),
    mappingList("sources", kSource, "where events come in"),
    mappingList("targets", kTarget, "where deliveries go"),
    mappingList("routes", kRoute, "which events go to which targets"),
};

// ---- JSON Schema ----------------------------------------------------------------------------------

std::string defName(const Section& section) {
    std::string name;
    bool upper = true;
    for (const char c : section.name) {
        if (c == '.' || c == ' ' || c == '-') {
            upper = true;
            continue;
        }
        name += upper && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
        upper = false;
    }
    return name;
}

nlohmann::json ref(const Section& section) { return {{"$ref", "#/$defs/" + defName(section)}}; }

// Values other than strings may come from the environment: "${PORT}".
nlohmann::json orEnvironment(nlohmann::json schema) {
    return {{"anyOf", nlohmann::json::array({std::move(schema), {{"$ref", "#/$defs/Environment"}}})}};
}

nlohmann::json valueSchema(const Key& key) {
    switch (key.kind) {
        case Kind::string:
            return {{"type", "string"}};
        case Kind::nonEmpty:
            return {{"type", "string"}, {"minLength", 1}};
        case Kind::boolean:
            return orEnvironment({{"type", "boolean"}});
        case Kind::integer: {
            nlohmann::json schema{{"type", "integer"}};
            if (key.min != std::numeric_limits<std::int64_t>::min()) schema["minimum"] = key.min;
            if (key.max != std::numeric_limits<std::int64_t>::max()) schema["maximum"] = key.max;
            return orEnvironment(std::move(schema));
        }
        case Kind::duration:
            return {{"$ref", "#/$defs/Duration"}};
        case Kind::choice: {
            nlohmann::json values = nlohmann::json::array();
            for (std::string_view choice : key.choices) values.push_back(choice);
            return orEnvironment({{"enum", std::move(values)}});
        }
        case Kind::stringList:
            return {{"type", "array"}, {"items", {{"type", "string"}}}};
        case Kind::stringMap: {
            nlohmann::json schema{{"type", "object"}, {"additionalProperties", {{"type", "string"}}}};
            if (!key.namePattern.empty()) schema["propertyNames"]["pattern"] = key.namePattern;
            if (!key.reservedNames.empty()) {
                nlohmann::json reserved = nlohmann::json::array();
                for (std::string_view name : key.reservedNames) reserved.push_back(name);
                schema["propertyNames"]["not"] = {{"enum", std::move(reserved)}};
            }
            return schema;
        }
        case Kind::mapping:
            return ref(*key.section);
        case Kind::mappingList:
            return {{"type", "array"}, {"items", ref(*key.section)}};
    }
    return {};
}

nlohmann::json sectionSchema(const Section& section) {
    nlohmann::json properties = nlohmann::json::object();
    nlohmann::json required = nlohmann::json::array();
    nlohmann::json onlyFor = nlohmann::json::array();
    for (const Key& key : section.keys) {
        nlohmann::json value = valueSchema(key);
        std::string description(key.description);
        if (!key.onlyFor.empty()) {
            description += " (" + std::string(key.onlyFor) +
                           (key.alsoFor.empty() ? "" : " and " + std::string(key.alsoFor)) + " only)";
        }
        value["description"] = description;
        properties[std::string(key.name)] = std::move(value);
        if (key.required) required.push_back(key.name);
        // A key of one type makes the mapping that type.
        if (!key.onlyFor.empty() && !section.typeKey.empty()) {
            nlohmann::json type = key.alsoFor.empty() ? nlohmann::json{{"const", key.onlyFor}}
                                                      : nlohmann::json{{"enum", {key.onlyFor, key.alsoFor}}};
            onlyFor.push_back({{"if", {{"properties", {{key.name, true}}}, {"required", {key.name}}}},
                               {"then", {{"properties", {{section.typeKey, std::move(type)}}}}}});
        }
    }
    nlohmann::json schema{{"type", "object"},
                          {"description", section.description},
                          {"properties", std::move(properties)},
                          {"additionalProperties", false}};
    if (!required.empty()) schema["required"] = std::move(required);
    if (!onlyFor.empty()) schema["allOf"] = std::move(onlyFor);
    return schema;
}

}  // namespace

constinit const Section kConfiguration{
    .name = "configuration", .description = "fluxrelay's configuration", .keys = kConfigurationKeys};
constinit const Section kServer{.name = "server", .description = "the ingest listener", .keys = kServerKeys};
constinit const Section kListenerTls{
    .name = "listener tls", .description = "HTTPS on a listener", .keys = kListenerTlsKeys};
constinit const Section kAdmin{.name = "admin", .description = "the admin listener", .keys = kAdminKeys};
constinit const Section kStorage{.name = "storage", .description = "the spool", .keys = kStorageKeys};
constinit const Section kRedis{.name = "storage.redis", .description = "the Redis replicas share", .keys = kRedisKeys};
constinit const Section kSource{
    .name = "source", .description = "where events come in", .keys = kSourceKeys, .typeKey = "type"};
constinit const Section kRateLimit{
    .name = "rateLimit", .description = "a limit per client address", .keys = kRateLimitKeys};
constinit const Section kTarget{
    .name = "target", .description = "where deliveries go", .keys = kTargetKeys, .typeKey = "type"};
constinit const Section kRetry{.name = "retry", .description = "the retry policy", .keys = kRetryKeys};
constinit const Section kGitHubApp{.name = "app", .description = "a GitHub App's credentials", .keys = kGitHubAppKeys};
constinit const Section kReceiver{.name = "receiver", .description = "a Flux Receiver", .keys = kReceiverKeys};
constinit const Section kResource{
    .name = "resource", .description = "Flux objects by API version and kind", .keys = kResourceKeys};
constinit const Section kRoute{.name = "route", .description = "which events go to which targets", .keys = kRouteKeys};
constinit const Section kEventSource{
    .name = "eventSources entry", .description = "objects by kind", .keys = kEventSourceKeys};
constinit const Section kMatch{
    .name = "match", .description = "RE2 patterns over an event's fields", .keys = kMatchKeys};
constinit const Section kDedup{.name = "dedup", .description = "duplicate suppression", .keys = kDedupKeys};

std::vector<std::string_view> keysOf(const Section& section) {
    std::vector<std::string_view> keys;
    for (const Key& key : section.keys) {
        if (key.onlyFor.empty()) keys.push_back(key.name);
    }
    return keys;
}

std::vector<config_reading::TypedKey> typedKeysOf(const Section& section) {
    std::vector<config_reading::TypedKey> keys;
    for (const Key& key : section.keys) {
        if (!key.onlyFor.empty()) keys.push_back({key.name, key.onlyFor, key.othersDoNot, key.alsoFor});
    }
    return keys;
}

nlohmann::json jsonSchema() {
    nlohmann::json defs = nlohmann::json::object();
    for (const Section* section :
         {&kServer, &kListenerTls, &kAdmin, &kStorage, &kRedis, &kSource, &kRateLimit, &kTarget, &kRetry, &kGitHubApp,
          &kReceiver, &kResource, &kRoute, &kEventSource, &kMatch, &kDedup}) {
        defs[defName(*section)] = sectionSchema(*section);
    }
    defs["Duration"] = {
        {"description", "Go's duration form: 300ms, 30s, 5m, 1h30m"},
        {"type", "string"},
        {"pattern", "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$|^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$"}};
    defs["Environment"] = {{"description", "the value of an environment variable"},
                           {"type", "string"},
                           {"pattern", "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$"}};
    nlohmann::json schema = sectionSchema(kConfiguration);
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema";
    schema["title"] = "fluxrelay configuration";
    schema["$defs"] = std::move(defs);
    return schema;
}

}  // namespace fluxrelay::config_schema
