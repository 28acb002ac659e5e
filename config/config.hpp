// The validated, immutable configuration. Built once by loader.hpp; a reload builds
// a new one and swaps the pointer, so nothing here is ever mutated after loading.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// Patterns are compiled by the loader and shared; a declaration is enough here.
namespace re2 {
class RE2;
}  // namespace re2

#include "core/duration.hpp"
#include "core/template.hpp"
#include "core/url.hpp"

namespace fluxrelay {

struct Endpoint {
    std::string host;  // "0.0.0.0", "127.0.0.1", "::"
    std::uint16_t port = 0;

    bool operator==(const Endpoint&) const = default;
};

// A listener's TLS (server.tls, admin.tls). The files are watched: a changed certificate is
// served to new connections without a restart.
struct ServerTls {
    std::string certFile;
    std::string keyFile;
    std::string clientCAFile;  // empty: no client certificates asked for

    bool operator==(const ServerTls&) const = default;
};

struct ServerConfig {
    Endpoint listen{"0.0.0.0", 8080};
    std::optional<ServerTls> tls;
    std::size_t maxBodyBytes = 3 * 1024 * 1024;  // as Flux's event server
    int ioThreads = 2;
    // Hostile or broken clients: open connections per listener (past it: 503 and close), and
    // deadlines, as Go's http.Server names them.
    std::size_t maxConnections = 1024;
    Duration readTimeout = std::chrono::seconds(30);  // a whole request, from its first byte
    Duration idleTimeout = std::chrono::seconds(75);  // a kept-alive connection waiting for a request
    Duration writeTimeout = std::chrono::seconds(30);
};

struct AdminConfig {
    Endpoint listen{"127.0.0.1", 9090};
    std::optional<ServerTls> tls;  // same shape as server.tls
    std::string token;             // bearer token for /api/v1/* writes; empty: none required
    // A failing Flux object leaves fluxrelay_flux_object_failing this long after its last event.
    Duration forgetObjectsAfter = std::chrono::hours(24);
};

enum class SyncMode { normal, full };

// storage.redis: a Redis shared by several replicas instead of the embedded SQLite spool.
struct RedisConfig {
    std::string host = "127.0.0.1";  // from url redis://HOST:PORT/DB
    std::uint16_t port = 6379;
    int database = 0;
    std::string username;  // ACL user; empty: the default user
    std::string password;  // password or passwordFile; empty: no AUTH
    std::string keyPrefix = "fluxrelay:";
    // A delivery leased by a replica that stopped answering for this long is taken over by another.
    Duration claimIdle = std::chrono::seconds(30);
    Duration timeout = std::chrono::seconds(5);  // connecting, and each reply

    bool operator==(const RedisConfig&) const = default;
};

struct StorageConfig {
    std::string path = "./fluxrelay-data";
    SyncMode sync = SyncMode::normal;
    Duration retention = std::chrono::hours(24 * 7);
    std::size_t maxQueuedDeliveries = 1'000'000;  // bound on undelivered work; past it ingest answers 503
    std::optional<RedisConfig> redis;             // set: the spool is this Redis, `path` and `sync` unused
};

enum class SourceType { flux, github };

struct RateLimit {
    int requestsPerSecond = 0;
    int burst = 0;  // requests allowed at once after a quiet spell; defaults to requestsPerSecond

    bool operator==(const RateLimit&) const = default;
};

struct SourceConfig {
    std::string name;
    SourceType type = SourceType::flux;
    std::string path;
    std::optional<RateLimit> rateLimit;  // requests on `path` (signed or not); unset: unlimited
    // flux
    std::string hmacKey;                                               // raw key bytes; empty: X-Signature not required
    std::vector<std::pair<std::string, std::string>> requiredHeaders;  // name, exact value
    // github
    std::string secret;  // webhook secret
    bool allowSha1 = false;
    std::vector<std::string> events;  // accepted X-GitHub-Event values; empty: all
};

enum class TargetType { alertmanager, github, githubDeployment, fluxReceiver, kubernetes, generic };

struct RetryPolicy {
    int maxAttempts = 0;  // 0: unlimited (bounded by maxAge)
    Duration maxAge = std::chrono::hours(24);
    Duration initialInterval = std::chrono::seconds(1);
    Duration maxInterval = std::chrono::minutes(5);

    bool operator==(const RetryPolicy&) const = default;
};

struct ObjectSelector {
    std::string apiVersion;
    std::string kind;
    std::string name;
    std::string namespace_;

    bool operator==(const ObjectSelector&) const = default;
};

// Authentication as a GitHub App instead of a token.
struct GitHubAppConfig {
    std::int64_t appId = 0;
    std::int64_t installationId = 0;
    std::string privateKey;  // PEM, read from privateKeyFile (or given inline)

    bool operator==(const GitHubAppConfig&) const = default;
};

// The labels Flux's alertmanager notifier sets. An alertmanager target's `labels` cannot set them,
// so Alertmanager routes and silences written for Flux's alerts keep matching.
inline constexpr std::string_view kFluxAlertLabels[] = {"alertname", "severity",           "reason", "kind", "name",
                                                        "namespace", "reportingcontroller"};
// The annotation that carries the event's message, which templates may use but not replace.
inline constexpr std::string_view kFluxAlertAnnotations[] = {"message"};
// Alertmanager's label names (annotation names too): Prometheus's classic form.
inline constexpr std::string_view kLabelNamePattern = "^[a-zA-Z_][a-zA-Z0-9_]*$";
bool isLabelName(std::string_view name);

struct TargetConfig {
    std::string name;
    TargetType type = TargetType::alertmanager;
    Url address;
    std::string addressText;  // as written, for messages
    // auth
    std::string token;
    std::string username;
    std::string password;
    // transport
    Duration timeout = std::chrono::seconds(15);
    std::string caFile;
    std::string certFile;
    std::string keyFile;
    bool insecureSkipVerify = false;
    std::optional<Url> proxy;
    std::string proxyCredentials;  // "username:password" for the proxy, from proxyCredentialsFile
    std::vector<std::pair<std::string, std::string>> headers;
    RetryPolicy retry;
    int concurrency = 4;
    int maxBatch = 64;  // events per request where the target takes batches
    // alertmanager
    bool resolve = false;
    // resolve: firing alerts are re-sent this often, each valid for three intervals, so Alertmanager
    // neither resolves a real failure by itself nor depends on its resolve_timeout.
    Duration refireInterval = std::chrono::minutes(5);
    std::map<std::string, std::string> severityMap;  // event severity → the alert's severity label; empty: verbatim
    // Set on every alert after Flux's own, in the file's order; one that renders empty is left out.
    std::vector<std::pair<std::string, EventTemplate>> labels;
    std::vector<std::pair<std::string, EventTemplate>> annotations;
    // github
    std::string context = "{kind}/{name}";
    std::optional<GitHubAppConfig> app;  // set: authenticate as this App, `token` is empty (github-deployment too)
    // github-deployment: templates rendered per event; a URL that renders empty is not sent
    EventTemplate environment;
    std::optional<bool> productionEnvironment;  // unset: GitHub's default (true for "production")
    EventTemplate environmentUrl;
    EventTemplate logUrl;
    // flux-receiver
    std::string receiverName;
    std::string receiverNamespace;
    // kubernetes
    std::vector<ObjectSelector> resources;
    // Read again while running, since projected service-account tokens rotate; `token` then holds
    // what was read at load time (nothing for the in-cluster default, which may not exist yet).
    std::string tokenFile;
    // generic: raw key bytes that sign each body as Flux's generic-hmac Provider does; empty: unsigned
    std::string hmacKey;

    bool operator==(const TargetConfig&) const = default;
};

// One entry of a route's eventSources: kind exact, name and namespace exact or glob.
struct EventSourceSelector {
    std::string kind;
    std::string name = "*";
    std::string namespace_ = "*";
};

// Field a `match` entry applies to.
enum class MatchField { reason, kind, name, namespace_, reportingController, metadata };

struct FieldMatcher {
    MatchField field = MatchField::reason;
    std::string metadataKey;  // for MatchField::metadata
    std::string pattern;      // as written
    std::shared_ptr<const re2::RE2> regex;
};

struct Pattern {
    std::string text;  // as written
    std::shared_ptr<const re2::RE2> regex;
};

enum class DedupMode { none, flux, normalized, transitions };

struct DedupConfig {
    DedupMode mode = DedupMode::flux;
    Duration window = std::chrono::minutes(5);
    Duration renotify{0};  // transitions: re-send an unchanged failure this often; 0: never
    int threshold = 0;     // forward only after N failures inside window; 0: off
};

enum class Severity { info, error };

struct RouteConfig {
    std::string name;
    std::string source;
    // flux
    Severity eventSeverity = Severity::info;
    std::vector<EventSourceSelector> eventSources;  // empty: every object
    std::vector<Pattern> inclusionList;
    std::vector<Pattern> exclusionList;
    std::vector<FieldMatcher> match;
    std::map<std::string, std::string> eventMetadata;  // added to every event (Flux Alert spec.eventMetadata)
    DedupConfig dedup;
    // github
    std::vector<std::string> events;
    std::vector<std::string> branches;
    Duration debounce{0};
    std::vector<std::string> targets;  // names, all defined in Config::targets
};

struct Config {
    std::string file;  // path it was loaded from
    ServerConfig server;
    AdminConfig admin;
    StorageConfig storage;
    std::vector<SourceConfig> sources;
    std::vector<TargetConfig> targets;
    std::vector<RouteConfig> routes;
    // "FILE:LINE:COL: message" for what loads but deserves attention (a secret file others may read)
    std::vector<std::string> warnings;

    const SourceConfig* sourceByPath(std::string_view path) const;
    const SourceConfig* sourceByName(std::string_view name) const;
    const TargetConfig* targetByName(std::string_view name) const;
};

using ConfigPtr = std::shared_ptr<const Config>;

std::string_view toString(SourceType type);
std::string_view toString(TargetType type);
std::string_view toString(DedupMode mode);
std::string_view toString(MatchField field);

// Alertmanager alerts, commit statuses and generic webhooks are made from Flux events; a Receiver
// trigger and a Kubernetes reconcile request answer a GitHub delivery. The loader refuses a route
// that pairs them otherwise, and routing drops such an event at the target.
bool takesEventsOf(TargetType target, SourceType source);

}  // namespace fluxrelay
