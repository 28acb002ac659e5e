// YAML → Config: strict parsing and validation that reports every problem as file:line:col.
#include "config/loader.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include "config/addresses.hpp"
#include "config/route_filters.hpp"
#include "config/schema.hpp"
#include "config/secret_files.hpp"
#include "config/yaml_reader.hpp"
#include "core/file.hpp"

namespace fluxrelay {

std::string ConfigDiagnostic::toString() const {
    return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

namespace {

std::string joinDiagnostics(const std::vector<ConfigDiagnostic>& diagnostics) {
    std::string text;
    for (const ConfigDiagnostic& diagnostic : diagnostics) {
        if (!text.empty()) text += '\n';
        text += diagnostic.toString();
    }
    return text;
}

}  // namespace

ConfigError::ConfigError(std::vector<ConfigDiagnostic> diagnostics)
    : std::runtime_error(joinDiagnostics(diagnostics)), diagnostics_(std::move(diagnostics)) {}

namespace {

using namespace config_reading;
namespace schema = config_schema;
using schema::keysOf;
using schema::typedKeysOf;

std::optional<Endpoint> listen(Reader& reader, const Fields& fields) {
    std::optional<std::string> text = reader.string(fields, "listen");
    if (!text) return std::nullopt;
    std::optional<Endpoint> endpoint = parseEndpoint(*text);
    if (!endpoint) {
        reader.error(valueMark(*fields.find("listen")), "invalid listen address " + inQuotes(*text) +
                                                            " (expected IP:PORT, e.g. 0.0.0.0:8080 or [::]:8080)");
    }
    return endpoint;
}

// Builds the Config section by section; sources and targets come first so that routes can
// check what they name, whatever order the file has.
class Parser {
public:
    explicit Parser(Reader& reader) : reader_(reader) {}

    Config parse(const YAML::Node& root) {
        std::optional<Fields> fields =
            reader_.mapping(root, root.Mark(), "configuration", keysOf(schema::kConfiguration));
        if (!fields) return std::move(config_);
        if (const Entry* entry = fields->find("server")) parseServer(*entry);
        if (const Entry* entry = fields->find("admin")) parseAdmin(*entry);
        if (const Entry* entry = fields->find("storage")) parseStorage(*entry);
        if (const Entry* entry = fields->find("sources")) parseList(*entry, &Parser::parseSource);
        if (const Entry* entry = fields->find("targets")) parseList(*entry, &Parser::parseTarget);
        if (const Entry* entry = fields->find("routes")) parseList(*entry, &Parser::parseRoute);
        return std::move(config_);
    }

private:
    void parseList(const Entry& entry, void (Parser::*parseItem)(const YAML::Node&)) {
        if (std::optional<std::vector<YAML::Node>> items = reader_.sequence(entry)) {
            for (const YAML::Node& item : *items) (this->*parseItem)(item);
        }
    }

    // ---- server, admin, storage

    void parseServer(const Entry& entry) {
        std::optional<Fields> fields = reader_.mapping(entry, "server", keysOf(schema::kServer));
        if (!fields) return;
        ServerConfig& server = config_.server;
        set(server.listen, listen(reader_, *fields));
        if (const Entry* tls = fields->find("tls")) server.tls = parseListenerTls(*tls, "server.tls");
        setNumber(server.maxBodyBytes, reader_.integer(*fields, "maxBodyBytes", 1));
        setNumber(server.ioThreads, reader_.integer(*fields, "ioThreads", 1, 1024));
        setNumber(server.maxConnections, reader_.integer(*fields, "maxConnections", 1, 1'000'000));
        set(server.readTimeout, reader_.duration(*fields, "readTimeout", false));
        set(server.idleTimeout, reader_.duration(*fields, "idleTimeout", false));
        set(server.writeTimeout, reader_.duration(*fields, "writeTimeout", false));
    }

    // server.tls and admin.tls: `what` names the section in messages.
    std::optional<ServerTls> parseListenerTls(const Entry& entry, std::string_view what) {
        std::optional<Fields> fields = reader_.mapping(entry, what, keysOf(schema::kListenerTls));
        if (!fields) return std::nullopt;
        ServerTls tls;
        reader_.present(*fields, "certFile", what);
        reader_.present(*fields, "keyFile", what);
        set(tls.certFile, readableFile(reader_, *fields, "certFile"));
        set(tls.keyFile, readableFile(reader_, *fields, "keyFile"));
        set(tls.clientCAFile, readableFile(reader_, *fields, "clientCAFile"));
        return tls;
    }

    void parseAdmin(const Entry& entry) {
        std::optional<Fields> fields = reader_.mapping(entry, "admin", keysOf(schema::kAdmin));
        if (!fields) return;
        set(config_.admin.listen, listen(reader_, *fields));
        if (const Entry* tls = fields->find("tls")) config_.admin.tls = parseListenerTls(*tls, "admin.tls");
        config_.admin.token = readSecret(reader_, *fields, "token", "tokenFile", SecretTrim::trailingWhitespace);
        set(config_.admin.forgetObjectsAfter, reader_.duration(*fields, "forgetObjectsAfter", false));
    }

    void parseStorage(const Entry& entry) {
        std::optional<Fields> fields = reader_.mapping(entry, "storage", keysOf(schema::kStorage));
        if (!fields) return;
        StorageConfig& storage = config_.storage;
        // The data folder is where the process runs (like the default), not next to a config
        // that is often a read-only mount.
        set(storage.path, reader_.nonEmpty(*fields, "path"));
        set(storage.sync,
            reader_.choice<SyncMode>(*fields, "sync", {{"normal", SyncMode::normal}, {"full", SyncMode::full}}));
        set(storage.retention, reader_.duration(*fields, "retention", false));
        setNumber(storage.maxQueuedDeliveries, reader_.integer(*fields, "maxQueuedDeliveries", 1));
        if (const Entry* redis = fields->find("redis")) storage.redis = parseRedis(*redis);
    }

    std::optional<RedisConfig> parseRedis(const Entry& entry) {
        std::optional<Fields> fields = reader_.mapping(entry, "storage.redis", keysOf(schema::kRedis));
        if (!fields) return std::nullopt;
        RedisConfig redis;
        if (std::optional<std::string> url = reader_.required(*fields, "url", "storage.redis")) {
            std::string why;
            if (!parseRedisUrl(*url, redis, why)) {
                reader_.error(valueMark(*fields->find("url")), "invalid Redis url " + quotedUrl(*url) + ": " + why);
            }
        }
        set(redis.keyPrefix, reader_.nonEmpty(*fields, "keyPrefix"));
        set(redis.username, reader_.nonEmpty(*fields, "username"));
        redis.password = readSecret(reader_, *fields, "password", "passwordFile", SecretTrim::trailingWhitespace);
        if (!redis.username.empty() && redis.password.empty()) {
            reader_.error(fields->find("username")->key.Mark(),
                          inQuotes("username") + " needs " + inQuotes("password") + " or " + inQuotes("passwordFile"));
        }
        set(redis.claimIdle, reader_.duration(*fields, "claimIdle", false));
        set(redis.timeout, reader_.duration(*fields, "timeout", false));
        return redis;
    }

    // ---- sources

    void parseSource(const YAML::Node& node) {
        std::optional<Fields> fields =
            reader_.mapping(node, node.Mark(), "source", keysOf(schema::kSource), typedKeysOf(schema::kSource));
        if (!fields) return;
        SourceConfig source;
        std::optional<std::string> name = reader_.required(*fields, "name", "source");
        std::optional<SourceType> type = reader_.requiredChoice<SourceType>(
            *fields, "type", "source", {{"flux", SourceType::flux}, {"github", SourceType::github}});
        if (type) {
            source.type = *type;
            reader_.checkApplicable(*fields, typedKeysOf(schema::kSource), toString(*type),
                                    [](std::string_view t) { return std::string(t) + " sources"; });
        }
        if (std::optional<std::string> path = reader_.required(*fields, "path", "source")) {
            if (checkSourcePath(*path, valueMark(*fields->find("path")))) source.path = *path;
        }
        if (const Entry* rateLimit = fields->find("rateLimit")) source.rateLimit = parseRateLimit(*rateLimit);
        // Type unknown: read the keys of both types anyway, to report their errors too.
        if (!type || *type == SourceType::flux) parseFluxSource(*fields, source);
        if (!type || *type == SourceType::github) parseGitHubSource(*fields, source);
        if (!name || !claimName(sourceNames_, "source", *name, valueMark(*fields->find("name")))) return;
        source.name = *name;
        sourceTypes_[source.name] = type;
        config_.sources.push_back(std::move(source));
    }

    bool checkSourcePath(const std::string& path, const YAML::Mark& mark) {
        if (!path.starts_with('/')) {
            reader_.error(mark, "path " + inQuotes(path) + " must start with '/'");
        } else if (path == "/healthz" || path == "/readyz") {
            reader_.error(mark, "path " + inQuotes(path) + " is reserved for health checks");
        } else if (path.find_first_of("?# \t") != std::string::npos) {
            reader_.error(mark, "path " + inQuotes(path) + " must not contain a query, fragment or blank");
        } else if (auto [it, inserted] = sourcePaths_.emplace(path, mark); !inserted) {
            reader_.error(mark, "path " + inQuotes(path) + " is already used by another source (line " +
                                    std::to_string(it->second.line + 1) + ")");
        } else {
            return true;
        }
        return false;
    }

    std::optional<RateLimit> parseRateLimit(const Entry& entry) {
        std::optional<Fields> fields = reader_.mapping(entry, "rateLimit", keysOf(schema::kRateLimit));
        if (!fields || !reader_.present(*fields, "requestsPerSecond", "rateLimit")) return std::nullopt;
        std::optional<std::int64_t> rate = reader_.integer(*fields, "requestsPerSecond", 1, 1'000'000);
        std::optional<std::int64_t> burst = reader_.integer(*fields, "burst", 1, 1'000'000);
        if (!rate || (fields->find("burst") != nullptr && !burst)) return std::nullopt;
        return RateLimit{.requestsPerSecond = static_cast<int>(*rate),
                         .burst = static_cast<int>(burst.value_or(*rate))};
    }

    void parseFluxSource(const Fields& fields, SourceConfig& source) {
        // Flux signs with the Secret's bytes as they are, so only a final line ending (an editor's
        // or `echo`'s, never part of a key made with --from-literal) is dropped; any other
        // whitespace is key material.
        source.hmacKey = readSecret(reader_, fields, "hmacKey", "hmacKeyFile", SecretTrim::oneLineEnding);
        set(source.requiredHeaders, reader_.stringMap(fields, "requiredHeaders"));
    }

    void parseGitHubSource(const Fields& fields, SourceConfig& source) {
        source.secret = readSecret(reader_, fields, "secret", "secretFile", SecretTrim::trailingWhitespace);
        set(source.allowSha1, reader_.boolean(fields, "allowSha1"));
        set(source.events, reader_.strings(fields, "events"));
    }

    // ---- targets

    void parseTarget(const YAML::Node& node) {
        std::optional<Fields> fields =
            reader_.mapping(node, node.Mark(), "target", keysOf(schema::kTarget), typedKeysOf(schema::kTarget));
        if (!fields) return;
        TargetConfig target;
        std::optional<std::string> name = reader_.required(*fields, "name", "target");
        std::optional<TargetType> type =
            reader_.requiredChoice<TargetType>(*fields, "type", "target",
                                               {{"alertmanager", TargetType::alertmanager},
                                                {"github", TargetType::github},
                                                {"github-deployment", TargetType::githubDeployment},
                                                {"flux-receiver", TargetType::fluxReceiver},
                                                {"kubernetes", TargetType::kubernetes},
                                                {"generic", TargetType::generic}});
        if (type) {
            target.type = *type;
            reader_.checkApplicable(*fields, typedKeysOf(schema::kTarget), toString(*type),
                                    [](std::string_view t) { return std::string(t) + " targets"; });
        }
        parseAddress(*fields, type, target);
        target.token = readSecret(reader_, *fields, "token", "tokenFile", SecretTrim::trailingWhitespace);
        parseTransport(*fields, target);
        if (!type || *type == TargetType::alertmanager) parseAlertmanagerTarget(*fields, target);
        if (!type || *type == TargetType::github) parseGitHubTarget(*fields, target);
        if (!type || *type == TargetType::githubDeployment) parseDeploymentTarget(*fields, target, type.has_value());
        if (!type || *type == TargetType::github || *type == TargetType::githubDeployment) {
            parseGitHubAuth(*fields, target, type);
        }
        if (!type || *type == TargetType::fluxReceiver) parseReceiverTarget(*fields, target, type.has_value());
        if (!type || *type == TargetType::kubernetes) parseKubernetesTarget(*fields, target, type.has_value());
        if (!type || *type == TargetType::generic) parseGenericTarget(*fields, target);
        if (!name || !claimName(targetNames_, "target", *name, valueMark(*fields->find("name")))) return;
        target.name = *name;
        targetTypes_[target.name] = type;
        if (target.insecureSkipVerify) {
            // Logged at every start and reload, and shown by check-config: easy to leave on by mistake.
            reader_.warning(fields->find("insecureSkipVerify")->key.Mark(),
                            "target " + inQuotes(target.name) +
                                ": insecureSkipVerify is true, its server's TLS certificate and host name are not "
                                "verified");
        }
        config_.targets.push_back(std::move(target));
    }

    void parseAddress(const Fields& fields, std::optional<TargetType> type, TargetConfig& target) {
        const bool optional = type == TargetType::kubernetes;  // in-cluster API server by default
        std::optional<std::string> text =
            optional ? reader_.string(fields, "address") : reader_.required(fields, "address", "target");
        if (!text) return;
        const bool repository = type == TargetType::github || type == TargetType::githubDeployment;
        std::optional<Url> url = repository ? parseGitHubAddress(*text) : parseUrl(*text);
        if (!url) {
            reader_.error(valueMark(*fields.find("address")),
                          "invalid address " + quotedUrl(*text) +
                              (repository ? " (expected a repository URL, e.g. https://github.com/owner/repo)"
                                          : " (expected an absolute http or https URL)"));
            return;
        }
        target.address = std::move(*url);
        target.addressText = std::move(*text);
    }

    // Basic authentication, which only Alertmanager is sent; a token, which every target type takes, excludes it.
    void parseBasicAuth(const Fields& fields, TargetConfig& target) {
        set(target.username, reader_.string(fields, "username"));
        target.password = readSecret(reader_, fields, "password", "passwordFile", SecretTrim::trailingWhitespace);
        const Entry* username = fields.find("username");
        const Entry* password =
            fields.find("password") != nullptr ? fields.find("password") : fields.find("passwordFile");
        const Entry* token = fields.find("token") != nullptr ? fields.find("token") : fields.find("tokenFile");
        if ((username == nullptr) != (password == nullptr)) {
            const Entry* present = username != nullptr ? username : password;
            reader_.error(present->key.Mark(), "'username' and 'password'/'passwordFile' go together");
        }
        if (token != nullptr && username != nullptr) {
            reader_.error(token->key.Mark(),
                          "a target authenticates with a token or with username and password, not both");
        }
    }

    void parseTransport(const Fields& fields, TargetConfig& target) {
        set(target.timeout, reader_.duration(fields, "timeout", false));
        set(target.caFile, readableFile(reader_, fields, "caFile"));
        set(target.certFile, readableFile(reader_, fields, "certFile"));
        set(target.keyFile, readableFile(reader_, fields, "keyFile"));
        if ((fields.find("certFile") == nullptr) != (fields.find("keyFile") == nullptr)) {
            const Entry* present =
                fields.find("certFile") != nullptr ? fields.find("certFile") : fields.find("keyFile");
            reader_.error(present->key.Mark(), "'certFile' and 'keyFile' go together");
        }
        set(target.insecureSkipVerify, reader_.boolean(fields, "insecureSkipVerify"));
        if (std::optional<std::string> proxy = reader_.string(fields, "proxy")) {
            target.proxy = parseUrl(*proxy);
            if (!target.proxy) {
                reader_.error(valueMark(*fields.find("proxy")),
                              "invalid proxy " + quotedUrl(*proxy) + " (expected an http URL without credentials)");
            } else if (target.proxy->tls()) {
                // Requests reach the proxy in the clear; an https target's TLS runs end to end through it.
                reader_.error(valueMark(*fields.find("proxy")),
                              "proxy " + quotedUrl(*proxy) +
                                  ": only http proxies are supported (https targets are tunnelled through them "
                                  "with CONNECT)");
                target.proxy.reset();
            }
        }
        // File only, never inline: the credentials stay out of the config and of every message.
        target.proxyCredentials =
            readSecret(reader_, fields, {}, "proxyCredentialsFile", SecretTrim::trailingWhitespace);
        if (const Entry* credentials = fields.find("proxyCredentialsFile")) {
            if (fields.find("proxy") == nullptr) {
                reader_.error(credentials->key.Mark(), "'proxyCredentialsFile' applies only with 'proxy'");
            } else if (!target.proxyCredentials.empty() && target.proxyCredentials.find(':') == std::string::npos) {
                reader_.error(credentials->key.Mark(), "proxyCredentialsFile must hold username:password");
            }
        }
        set(target.headers, reader_.stringMap(fields, "headers"));
        if (const Entry* retry = fields.find("retry")) parseRetry(*retry, target.retry);
        // Commit and deployment statuses of one commit must land in order, and the skip-identical
        // memory is only right if they do: one at a time unless asked otherwise.
        if (target.type == TargetType::github || target.type == TargetType::githubDeployment) {
            target.concurrency = 1;
        }
        setNumber(target.concurrency, reader_.integer(fields, "concurrency", 1, std::numeric_limits<int>::max()));
    }

    void parseAlertmanagerTarget(const Fields& fields, TargetConfig& target) {
        parseBasicAuth(fields, target);
        setNumber(target.maxBatch, reader_.integer(fields, "maxBatch", 1, std::numeric_limits<int>::max()));
        set(target.resolve, reader_.boolean(fields, "resolve"));
        // Resolving replays each object's firing alerts in event order: one worker keeps it.
        if (target.resolve && fields.find("concurrency") == nullptr) {
            target.concurrency = 1;
        } else if (target.resolve && target.concurrency > 1) {
            reader_.error(valueMark(*fields.find("concurrency")),
                          "'resolve: true' needs concurrency 1 (firing alerts are tracked in event order)");
        }
        set(target.refireInterval, reader_.duration(fields, "refireInterval", false));
        if (const Entry* refire = fields.find("refireInterval"); refire != nullptr && !target.resolve) {
            reader_.error(refire->key.Mark(), "'refireInterval' applies only with 'resolve: true'");
        }
        if (auto severities = reader_.stringMap(fields, "severityMap")) {
            target.severityMap.insert(severities->begin(), severities->end());
        }
        set(target.labels,
            templateMap(fields, "labels", {kFluxAlertLabels, "label", "Alertmanager routes and silences match on it"}));
        set(target.annotations, templateMap(fields, "annotations",
                                            {kFluxAlertAnnotations, "annotation",
                                             "it carries the event's message: use {message} in another annotation"}));
    }

    // labels, annotations: valid Alertmanager names that Flux does not set itself, each to a
    // template parsed now, so an unknown placeholder is refused at load.
    struct Reserved {
        std::span<const std::string_view> names;  // Flux's own
        std::string_view what;                    // "label"
        std::string_view why;                     // what setting one would break
    };

    std::optional<std::vector<std::pair<std::string, EventTemplate>>> templateMap(const Fields& fields,
                                                                                  std::string_view key,
                                                                                  const Reserved& reserved) {
        std::optional<std::vector<MapItem>> items = reader_.stringMapItems(fields, key);
        if (!items) return std::nullopt;
        std::vector<std::pair<std::string, EventTemplate>> out;
        for (MapItem& item : *items) {
            const std::string what = std::string(key) + "." + item.name;
            if (!isLabelName(item.name)) {
                reader_.error(item.nameMark, inQuotes(what) + ": " + inQuotes(item.name) +
                                                 " is not a valid Alertmanager name (letters, digits and '_', not "
                                                 "starting with a digit)");
            } else if (std::find(reserved.names.begin(), reserved.names.end(), item.name) != reserved.names.end()) {
                reader_.error(item.nameMark, inQuotes(what) + ": Flux's own " + std::string(reserved.what) + " " +
                                                 inQuotes(item.name) + " cannot be set (" + std::string(reserved.why) +
                                                 ")");
            } else if (auto parsed = EventTemplate::parse(item.value); std::holds_alternative<std::string>(parsed)) {
                reader_.error(item.mark, inQuotes(what) + ": " + std::get<std::string>(parsed));
            } else {
                out.emplace_back(std::move(item.name), std::get<EventTemplate>(std::move(parsed)));
            }
        }
        return out;
    }

    void parseRetry(const Entry& entry, RetryPolicy& retry) {
        std::optional<Fields> fields = reader_.mapping(entry, "retry", keysOf(schema::kRetry));
        if (!fields) return;
        setNumber(retry.maxAttempts, reader_.integer(*fields, "maxAttempts", 0, std::numeric_limits<int>::max()));
        set(retry.maxAge, reader_.duration(*fields, "maxAge", false));
        set(retry.initialInterval, reader_.duration(*fields, "initialInterval", false));
        set(retry.maxInterval, reader_.duration(*fields, "maxInterval", false));
        if (retry.initialInterval > retry.maxInterval) {
            const Entry* at = fields->find("initialInterval") != nullptr ? fields->find("initialInterval")
                                                                         : fields->find("maxInterval");
            reader_.error(valueMark(*at), "retry.initialInterval (" + formatDuration(retry.initialInterval) +
                                              ") is longer than retry.maxInterval (" +
                                              formatDuration(retry.maxInterval) + ")");
        }
    }

    void parseGitHubTarget(const Fields& fields, TargetConfig& target) {
        if (std::optional<std::string> context = reader_.nonEmpty(fields, "context")) {
            target.context = *context;
        }
    }

    // `typeKnown` false: the keys are only checked, the type's requirements are not.
    void parseDeploymentTarget(const Fields& fields, TargetConfig& target, bool typeKnown) {
        set(target.environment, eventTemplate(fields, "environment", true));
        if (typeKnown) reader_.present(fields, "environment", "target");
        target.productionEnvironment = reader_.boolean(fields, "productionEnvironment");
        set(target.environmentUrl, eventTemplate(fields, "environmentUrl"));
        set(target.logUrl, eventTemplate(fields, "logUrl"));
    }

    // A template rendered per event, parsed now, so an unknown placeholder is refused at load.
    std::optional<EventTemplate> eventTemplate(const Fields& fields, std::string_view key, bool nonEmpty = false) {
        std::optional<std::string> text = nonEmpty ? reader_.nonEmpty(fields, key) : reader_.string(fields, key);
        if (!text) return std::nullopt;
        auto parsed = EventTemplate::parse(*text);
        if (const auto* error = std::get_if<std::string>(&parsed)) {
            reader_.error(valueMark(*fields.find(key)), inQuotes(key) + ": " + *error);
            return std::nullopt;
        }
        return std::get<EventTemplate>(std::move(parsed));
    }

    void parseGitHubAuth(const Fields& fields, TargetConfig& target, std::optional<TargetType> type) {
        if (const Entry* app = fields.find("app")) target.app = parseGitHubApp(*app);
        const Entry* token = fields.find("token") != nullptr ? fields.find("token") : fields.find("tokenFile");
        if (!type) return;
        const std::string what = "a " + std::string(toString(*type)) + " target";
        if (token != nullptr && fields.find("app") != nullptr) {
            reader_.error(fields.find("app")->key.Mark(), what + " uses either a token or an app, not both");
        } else if (token == nullptr && fields.find("app") == nullptr) {
            reader_.error(fields.mark, what + " needs 'tokenFile' (or 'token') or 'app'");
        }
    }

    std::optional<GitHubAppConfig> parseGitHubApp(const Entry& entry) {
        std::optional<Fields> fields = reader_.mapping(entry, "app", keysOf(schema::kGitHubApp));
        if (!fields) return std::nullopt;
        GitHubAppConfig app;
        reader_.present(*fields, "appID", "app");
        reader_.present(*fields, "installationID", "app");
        setNumber(app.appId, reader_.integer(*fields, "appID", 1));
        setNumber(app.installationId, reader_.integer(*fields, "installationID", 1));
        if (fields->find("privateKeyFile") == nullptr && fields->find("privateKey") == nullptr) {
            reader_.error(fields->mark, "missing required key 'privateKeyFile' in app");
        }
        // PEM is line-based: trailing blank lines mean nothing.
        app.privateKey = readSecret(reader_, *fields, "privateKey", "privateKeyFile", SecretTrim::trailingWhitespace);
        return app;
    }

    void parseReceiverTarget(const Fields& fields, TargetConfig& target, bool typeKnown) {
        const bool hookInAddress = target.addressText.find("/hook/") != std::string::npos;
        if (const Entry* receiver = fields.find("receiver")) {
            // The provider sends to such an address as it is and never reads the receiver.
            if (typeKnown && hookInAddress) {
                reader_.error(receiver->key.Mark(),
                              "'receiver' is not used when the address already has the /hook/ path");
            }
            if (std::optional<Fields> receiverFields =
                    reader_.mapping(*receiver, "receiver", keysOf(schema::kReceiver))) {
                set(target.receiverName, reader_.required(*receiverFields, "name", "receiver"));
                set(target.receiverNamespace, reader_.required(*receiverFields, "namespace", "receiver"));
            }
        } else if (typeKnown && !hookInAddress) {
            // The hook path is computed from the receiver, unless the address already has it.
            reader_.error(fields.mark, "a flux-receiver target needs 'receiver: {name, namespace}'");
        }
        if (typeKnown && fields.find("token") == nullptr && fields.find("tokenFile") == nullptr) {
            reader_.error(fields.mark, "a flux-receiver target needs 'tokenFile' (or 'token'): the Receiver's token");
        }
    }

    void parseGenericTarget(const Fields& fields, TargetConfig& target) {
        // As a flux source reads the key: Flux signs with the Secret's bytes as they are.
        target.hmacKey = readSecret(reader_, fields, "hmacKey", "hmacKeyFile", SecretTrim::oneLineEnding);
    }

    void parseKubernetesTarget(const Fields& fields, TargetConfig& target, bool typeKnown) {
        if (typeKnown) kubernetesDefaults(fields, target);
        const Entry* resources = fields.find("resources");
        if (resources == nullptr) {
            if (typeKnown) reader_.present(fields, "resources", "target");
            return;
        }
        std::optional<std::vector<YAML::Node>> items = reader_.sequence(*resources);
        if (!items) return;
        if (items->empty()) reader_.error(valueMark(*resources), "'resources' must not be empty");
        for (const YAML::Node& item : *items) {
            std::optional<Fields> f = reader_.mapping(item, item.Mark(), "resource", keysOf(schema::kResource));
            if (!f) continue;
            ObjectSelector selector;
            set(selector.apiVersion, reader_.required(*f, "apiVersion", "resource"));
            set(selector.kind, reader_.required(*f, "kind", "resource"));
            set(selector.name, reader_.required(*f, "name", "resource"));
            set(selector.namespace_, reader_.required(*f, "namespace", "resource"));
            target.resources.push_back(std::move(selector));
        }
    }

    // In a pod by default: the API server from the service environment, the token and CA of the
    // pod's service account (the CA for any https address without caFile). Tokens are projected
    // and rotate, so the provider reads the file again while running; the in-cluster one is not
    // read now, since check-config may run elsewhere.
    void kubernetesDefaults(const Fields& fields, TargetConfig& target) {
        static constexpr std::string_view kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";
        if (fields.find("tokenFile") != nullptr) {
            if (!target.token.empty()) target.tokenFile = reader_.resolve(*reader_.string(fields, "tokenFile"));
        } else if (fields.find("token") == nullptr) {
            target.tokenFile = std::string(kServiceAccountDir) + "/token";
        }
        if (fields.find("address") == nullptr && reader_.scope() == Reader::Scope::full) {
            // As client-go finds the API server in a pod; the service's DNS name where the variables
            // are missing (they are, for check-config on a workstation).
            const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
            const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
            std::string text = "https://kubernetes.default.svc";
            if (host != nullptr && *host != '\0' && port != nullptr && *port != '\0') {
                const std::string hostText(host);
                text = "https://" + (hostText.find(':') != std::string::npos ? "[" + hostText + "]" : hostText) + ":" +
                       port;
            }
            if (std::optional<Url> url = parseUrl(text)) {
                target.address = std::move(*url);
                target.addressText = std::move(text);
            } else {
                reader_.error(fields.mark, "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT make no valid URL (" +
                                               inQuotes(text) + "): set the target's 'address'");
            }
        }
        if (target.caFile.empty() && target.address.tls()) target.caFile = std::string(kServiceAccountDir) + "/ca.crt";
    }

    // ---- routes

    void parseRoute(const YAML::Node& node) {
        std::optional<Fields> fields =
            reader_.mapping(node, node.Mark(), "route", keysOf(schema::kRoute), typedKeysOf(schema::kRoute));
        if (!fields) return;
        RouteConfig route;
        std::optional<std::string> name = reader_.required(*fields, "name", "route");
        const std::string label = name ? "route " + inQuotes(*name) : "route";
        std::optional<SourceType> sourceType;
        if (std::optional<std::string> source = reader_.required(*fields, "source", "route")) {
            route.source = *source;
            auto it = sourceTypes_.find(*source);
            if (it == sourceTypes_.end()) {
                reader_.error(valueMark(*fields->find("source")), label + ": unknown source " + inQuotes(*source) +
                                                                      didYouMean(*source, namesOf(sourceTypes_)));
            } else {
                sourceType = it->second;
            }
        }
        if (sourceType) {
            reader_.checkApplicable(*fields, typedKeysOf(schema::kRoute), toString(*sourceType),
                                    [](std::string_view t) { return "routes with a " + std::string(t) + " source"; });
        }
        if (!sourceType || *sourceType == SourceType::flux) readFluxRouteFilters(reader_, *fields, route);
        if (!sourceType || *sourceType == SourceType::github) parseGitHubRoute(*fields, route);
        parseRouteTargets(*fields, label, sourceType, route);
        if (!name || !claimName(routeNames_, "route", *name, valueMark(*fields->find("name")))) return;
        route.name = *name;
        config_.routes.push_back(std::move(route));
    }

    template <class Map>
    static std::vector<std::string_view> namesOf(const Map& named) {
        std::vector<std::string_view> names;
        for (const auto& entry : named) names.push_back(entry.first);
        return names;
    }

    void parseRouteTargets(const Fields& fields, const std::string& label, std::optional<SourceType> sourceType,
                           RouteConfig& route) {
        if (!reader_.present(fields, "targets", "route")) return;
        std::optional<std::vector<Item>> items = reader_.stringList(fields, "targets");
        if (!items) return;
        if (items->empty()) reader_.error(valueMark(*fields.find("targets")), "'targets' must not be empty");
        std::set<std::string> seen;
        for (Item& item : *items) {
            auto it = targetTypes_.find(item.text);
            if (it == targetTypes_.end()) {
                reader_.error(item.mark, label + ": unknown target " + inQuotes(item.text) +
                                             didYouMean(item.text, namesOf(targetTypes_)));
            } else if (!seen.insert(item.text).second) {
                reader_.error(item.mark, label + ": target " + inQuotes(item.text) + " is listed twice");
            } else if (sourceType && it->second && !takesEventsOf(*it->second, *sourceType)) {
                reader_.error(item.mark, label + ": " + std::string(toString(*it->second)) + " target " +
                                             inQuotes(item.text) + " cannot take events of a " +
                                             std::string(toString(*sourceType)) + " source");
            }
            route.targets.push_back(std::move(item.text));
        }
    }

    void parseGitHubRoute(const Fields& fields, RouteConfig& route) {
        set(route.events, reader_.strings(fields, "events"));
        set(route.branches, reader_.strings(fields, "branches"));
        set(route.debounce, reader_.duration(fields, "debounce", true));
    }

    // ---- shared

    // False (and reported) when `name` is already taken by another item of the same kind.
    bool claimName(std::map<std::string, YAML::Mark>& names, std::string_view kind, const std::string& name,
                   const YAML::Mark& mark) {
        auto [it, inserted] = names.emplace(name, mark);
        if (!inserted) {
            reader_.error(mark, "duplicate " + std::string(kind) + " name " + inQuotes(name) +
                                    " (first defined at line " + std::to_string(it->second.line + 1) + ")");
        }
        return inserted;
    }

    Reader& reader_;
    Config config_;
    std::map<std::string, YAML::Mark> sourceNames_;
    std::map<std::string, YAML::Mark> targetNames_;
    std::map<std::string, YAML::Mark> routeNames_;
    std::map<std::string, YAML::Mark> sourcePaths_;
    // Types by name for the routes' checks; nullopt: the item's own type was invalid.
    std::map<std::string, std::optional<SourceType>> sourceTypes_;
    std::map<std::string, std::optional<TargetType>> targetTypes_;
};

}  // namespace

ConfigPtr loadConfigText(const std::string& text, const std::string& file) {
    Reader reader(file, std::filesystem::path(file).parent_path());
    std::optional<YAML::Node> document = reader.document(text);
    if (!document) throw ConfigError(reader.takeDiagnostics());
    Config config = Parser(reader).parse(*document);
    config.file = file;
    config.warnings = reader.takeWarnings();
    std::vector<ConfigDiagnostic> diagnostics = reader.takeDiagnostics();
    if (!diagnostics.empty()) throw ConfigError(std::move(diagnostics));
    return std::make_shared<const Config>(std::move(config));
}

std::vector<ConfigDiagnostic> checkConfigText(const std::string& text, const std::string& file) {
    Reader reader(file, std::filesystem::path(file).parent_path(), Reader::Scope::textOnly);
    if (std::optional<YAML::Node> document = reader.document(text)) Parser(reader).parse(*document);
    return reader.takeDiagnostics();
}

ConfigPtr loadConfigFile(const std::string& path) {
    const FileContent text = readWholeFile(path);
    if (!text.ok()) throw ConfigError({{path, 1, 1, "cannot read the configuration: " + text.error}});
    return loadConfigText(text.bytes, path);
}

}  // namespace fluxrelay
