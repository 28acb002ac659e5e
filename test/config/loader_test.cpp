// The config loader: defaults, the full example, ${ENV} and secret files, and every kind of
// error with its exact FILE:LINE:COL.
#include "config/loader.hpp"
#include "test/support/temp_dir.hpp"

#include <doctest/doctest.h>
#include <re2/re2.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using namespace fluxrelay;
namespace fs = std::filesystem;

namespace {

// Every diagnostic as FILE:LINE:COL: message, one a line; empty when the text loads.
// One string, so that a failing check prints both sides.
std::string errorsOf(const std::string& yaml, const std::string& file = "test.yaml") {
    try {
        loadConfigText(yaml, file);
    } catch (const ConfigError& error) {
        return error.what();
    }
    return {};
}

std::string errors(std::initializer_list<std::string> lines) {
    std::string out;
    for (const std::string& line : lines) out += (out.empty() ? "" : "\n") + line;
    return out;
}

// doctest would print an enum through fluxrelay::toString (found by ADL), which it cannot
// append; comparing names also reads better in a failure.
template <class Enum>
std::string name(Enum value) {
    return std::string(toString(value));
}

ConfigPtr load(const std::string& yaml) {
    try {
        return loadConfigText(yaml, "test.yaml");
    } catch (const ConfigError& error) {
        FAIL("unexpected config errors:\n" << error.what());
    }
    return nullptr;
}

using test::TempDir;

// Just enough around a route to make it load.
const std::string kSourcesAndTargets = R"(sources:
  - {name: flux, type: flux, path: /flux/events}
  - {name: github, type: github, path: /github/webhook}
targets:
  - {name: am, type: alertmanager, address: "http://127.0.0.1:9093/api/v2/alerts"}
  - {name: status, type: github, address: "https://github.com/owner/repo", token: t}
  - {name: reconcile, type: flux-receiver, address: "http://receiver.flux-system", token: t, receiver: {name: r, namespace: ns}}
routes:
)";  // routes start at line 9

}  // namespace

TEST_CASE("a minimal config gets the documented defaults") {
    const ConfigPtr config = load(R"(sources:
  - {name: flux, type: flux, path: /flux/events}
targets:
  - {name: am, type: alertmanager, address: "http://127.0.0.1:9093/api/v2/alerts"}
routes:
  - {name: all, source: flux, targets: [am]}
)");
    REQUIRE(config);
    CHECK(config->file == "test.yaml");
    CHECK(config->server.listen.host == "0.0.0.0");
    CHECK(config->server.listen.port == 8080);
    CHECK_FALSE(config->server.tls.has_value());
    CHECK(config->server.maxBodyBytes == 3145728);
    CHECK(config->server.ioThreads == 2);
    CHECK(config->admin.listen.host == "127.0.0.1");
    CHECK(config->admin.listen.port == 9090);
    CHECK(config->admin.token.empty());
    CHECK(config->admin.forgetObjectsAfter == 24h);
    CHECK(config->storage.path == "./fluxrelay-data");
    CHECK(config->storage.sync == SyncMode::normal);
    CHECK(config->storage.retention == 168h);
    CHECK(config->storage.maxQueuedDeliveries == 1'000'000);

    REQUIRE(config->sources.size() == 1);
    const SourceConfig& source = config->sources[0];
    CHECK(name(source.type) == "flux");
    CHECK(source.hmacKey.empty());
    CHECK(source.requiredHeaders.empty());

    REQUIRE(config->targets.size() == 1);
    const TargetConfig& target = config->targets[0];
    CHECK(name(target.type) == "alertmanager");
    CHECK(target.addressText == "http://127.0.0.1:9093/api/v2/alerts");
    CHECK(target.address.host == "127.0.0.1");
    CHECK(target.address.port == 9093);
    CHECK(target.address.target == "/api/v2/alerts");
    CHECK(target.timeout == 15s);
    CHECK(target.retry.maxAttempts == 0);
    CHECK(target.retry.maxAge == 24h);
    CHECK(target.retry.initialInterval == 1s);
    CHECK(target.retry.maxInterval == 5min);
    CHECK(target.concurrency == 4);
    CHECK(target.maxBatch == 64);
    CHECK_FALSE(target.resolve);
    CHECK_FALSE(target.proxy.has_value());
    CHECK_FALSE(target.app.has_value());
    CHECK(target.token.empty());

    REQUIRE(config->routes.size() == 1);
    const RouteConfig& route = config->routes[0];
    CHECK(route.source == "flux");
    CHECK(route.eventSeverity == Severity::info);
    CHECK(route.eventSources.empty());
    CHECK(route.inclusionList.empty());
    CHECK(route.exclusionList.empty());
    CHECK(route.match.empty());
    CHECK(name(route.dedup.mode) == "flux");
    CHECK(route.dedup.window == 5min);
    CHECK(route.dedup.renotify == 0ms);
    CHECK(route.dedup.threshold == 0);
    CHECK(route.targets == std::vector<std::string>{"am"});

    CHECK(config->sourceByName("flux") == &source);
    CHECK(config->sourceByPath("/flux/events") == &source);
    CHECK(config->sourceByPath("/flux") == nullptr);
    CHECK(config->sourceByName("github") == nullptr);
    CHECK(config->targetByName("am") == &target);
    CHECK(config->targetByName("missing") == nullptr);
}

TEST_CASE("the full example config loads, secrets read relative to the config's folder") {
    setenv("FLUX_RELAY_TOKEN", "relay-token", 1);
    const fs::path folder = fs::path(FLUXRELAY_CONFIG_TESTDATA) / "spec-example";
    const std::string file = (folder / "fluxrelay.yaml").string();
    ConfigPtr config;
    try {
        config = loadConfigFile(file);
    } catch (const ConfigError& error) {
        FAIL(error.what());
    }
    REQUIRE(config);
    CHECK(config->file == file);

    REQUIRE(config->server.tls.has_value());
    CHECK(config->server.tls->certFile == (folder / "tls" / "tls.crt").string());
    CHECK(config->server.tls->keyFile == (folder / "tls" / "tls.key").string());
    CHECK(config->server.tls->clientCAFile.empty());
    CHECK(config->admin.token == "admin-token");
    CHECK(config->storage.path == "./fluxrelay-data");

    REQUIRE(config->sources.size() == 2);
    const SourceConfig& flux = config->sources[0];
    CHECK(flux.name == "flux");
    CHECK(flux.path == "/flux/events");
    CHECK(flux.hmacKey == "7152fed34dd6149a7c75a276c510da27cb6f82b0");
    REQUIRE(flux.requiredHeaders.size() == 1);
    CHECK(flux.requiredHeaders[0].first == "Authorization");
    CHECK(flux.requiredHeaders[0].second == "Bearer relay-token");
    const SourceConfig& github = config->sources[1];
    CHECK(name(github.type) == "github");
    CHECK(github.secret == "github-webhook-secret");
    CHECK_FALSE(github.allowSha1);
    CHECK(github.events == std::vector<std::string>{"ping", "push"});

    REQUIRE(config->targets.size() == 3);
    const TargetConfig& alertmanager = config->targets[0];
    CHECK(alertmanager.resolve);
    CHECK(alertmanager.concurrency == 1);
    CHECK(alertmanager.address.host == "alertmanager-operated.o11y");
    const TargetConfig& status = config->targets[1];
    CHECK(name(status.type) == "github");
    CHECK(status.token == "ghp_exampletoken");
    CHECK(status.context == "{kind}/{name}");
    CHECK(status.address.target == "/onedr0p/home-ops");
    const TargetConfig& reconcile = config->targets[2];
    CHECK(name(reconcile.type) == "flux-receiver");
    CHECK(reconcile.receiverName == "github-webhook");
    CHECK(reconcile.receiverNamespace == "flux-system");
    CHECK(reconcile.token == "receiver-token");

    REQUIRE(config->routes.size() == 2);
    const RouteConfig& errors = config->routes[0];
    CHECK(errors.eventSeverity == Severity::error);
    REQUIRE(errors.eventSources.size() == 2);
    CHECK(errors.eventSources[1].kind == "HelmRelease");
    CHECK(errors.eventSources[1].namespace_ == "apps-*");
    CHECK(errors.eventSources[0].namespace_ == "*");
    REQUIRE(errors.exclusionList.size() == 2);
    CHECK(errors.inclusionList.empty());
    REQUIRE(errors.match.size() == 2);
    CHECK(name(errors.match[0].field) == "reason");
    CHECK(name(errors.match[1].field) == "metadata");
    CHECK(errors.match[1].metadataKey == "cluster");
    CHECK(name(errors.dedup.mode) == "flux");
    CHECK(errors.dedup.window == 5min);
    const RouteConfig& push = config->routes[1];
    CHECK(push.source == "github");
    CHECK(push.events == std::vector<std::string>{"push"});
    CHECK(push.branches == std::vector<std::string>{"main"});
    CHECK(push.debounce == 10s);
    CHECK(push.targets == std::vector<std::string>{"reconcile"});
}

TEST_CASE("the home-ops route") {
    const ConfigPtr config = load(kSourcesAndTargets + R"(  - name: home-ops
    source: flux
    eventSeverity: error
    eventSources:
      - {kind: FluxInstance, name: "*"}
      - {kind: GitRepository, name: "*"}
      - {kind: HelmRelease, name: "*"}
      - {kind: HelmRepository, name: "*"}
      - {kind: Kustomization, name: "*"}
      - {kind: OCIRepository, name: "*"}
    exclusionList:
      - "error.*lookup.*github"
      - "dial.*tcp.*timeout"
      - "dial.*tcp.*unreachable"
      - "waiting.*socket"
    targets: [am]
)");
    REQUIRE(config);
    REQUIRE(config->routes.size() == 1);
    const RouteConfig& route = config->routes[0];
    CHECK(route.name == "home-ops");
    CHECK(route.eventSeverity == Severity::error);
    const std::vector<std::string> kinds = {"FluxInstance",   "GitRepository", "HelmRelease",
                                            "HelmRepository", "Kustomization", "OCIRepository"};
    REQUIRE(route.eventSources.size() == kinds.size());
    for (std::size_t i = 0; i < kinds.size(); ++i) {
        CHECK(route.eventSources[i].kind == kinds[i]);
        CHECK(route.eventSources[i].name == "*");
        CHECK(route.eventSources[i].namespace_ == "*");
    }
    REQUIRE(route.exclusionList.size() == 4);
    CHECK(route.exclusionList[0].text == "error.*lookup.*github");
    CHECK(route.exclusionList[3].text == "waiting.*socket");
    for (const Pattern& pattern : route.exclusionList) REQUIRE(pattern.regex);
    // Compiled RE2, unanchored as Flux matches.
    CHECK(
        re2::RE2::PartialMatch("Get \"https://x\": dial tcp 10.0.0.1:443: i/o timeout", *route.exclusionList[1].regex));
    CHECK(re2::RE2::PartialMatch("dial tcp: lookup api.github.com: no such host: error",
                                 *route.exclusionList[0].regex) == false);
    CHECK(re2::RE2::PartialMatch("error: lookup api.github.com failed", *route.exclusionList[0].regex));
}

TEST_CASE("each kind of error is reported at its exact line and column") {
    SUBCASE("unknown key") {
        CHECK(errorsOf(kSourcesAndTargets + R"(  - name: r
    source: flux
    foo: bar
    targets: [am]
)") == errors({"test.yaml:11:5: unknown key 'foo' in route"}));
    }
    SUBCASE("unknown key in a nested mapping, with a hint for a case slip") {
        CHECK(errorsOf(kSourcesAndTargets + R"(  - name: r
    source: flux
    dedup: {window: 5m, Mode: flux}
    targets: [am]
)") == errors({"test.yaml:11:25: unknown key 'Mode' in dedup (did you mean 'mode'?)"}));
    }
    SUBCASE("a misspelt key, enum value, type or name: the nearest known one is suggested") {
        CHECK(errorsOf(kSourcesAndTargets + R"(  - name: r
    source: flux
    eventSeverty: error
    targets: [am]
)") == errors({"test.yaml:11:5: unknown key 'eventSeverty' in route (did you mean 'eventSeverity'?)"}));
        CHECK(errorsOf(kSourcesAndTargets + R"(  - name: r
    source: flux
    eventSeverity: eror
    targets: [stauts]
)") == errors({"test.yaml:11:20: invalid eventSeverity 'eror' (did you mean 'error'?) (one of: info, error)",
               "test.yaml:12:15: route 'r': unknown target 'stauts' (did you mean 'status'?)"}));
        CHECK(errorsOf(R"(sources:
  - {name: flux, type: flx, path: /flux/events}
targets:
  - {name: am, type: alertmanger, address: "http://127.0.0.1:9093/api/v2/alerts"}
routes:
  - {name: r, source: fluxx, targets: [am]}
)") == errors({"test.yaml:2:24: invalid type 'flx' (did you mean 'flux'?) (one of: flux, github)",
               "test.yaml:4:22: invalid type 'alertmanger' (did you mean 'alertmanager'?) (one of: alertmanager, "
               "github, github-deployment, flux-receiver, kubernetes, generic)",
               "test.yaml:6:23: route 'r': unknown source 'fluxx' (did you mean 'flux'?)"}));
    }
    SUBCASE("a name far from every known one gets no suggestion") {
        CHECK(errorsOf(kSourcesAndTargets + R"(  - name: r
    source: flux
    retries: 3
    targets: [am]
)") == errors({"test.yaml:11:5: unknown key 'retries' in route"}));
    }
    SUBCASE("bad duration") {
        CHECK(errorsOf(kSourcesAndTargets + R"(  - name: r
    source: flux
    dedup: {window: 5 minutes}
    targets: [am]
)") == errors({"test.yaml:11:21: invalid duration '5 minutes' for 'window' (expected e.g. 30s, 5m, 1h30m)"}));
    }
    SUBCASE("invalid regular expression, with RE2's reason") {
        CHECK(errorsOf(kSourcesAndTargets + R"(  - name: r
    source: flux
    exclusionList:
      - "ok.*"
      - "dial.*tcp.*(timeout"
    targets: [am]
)") == errors({"test.yaml:13:9: invalid regular expression 'dial.*tcp.*(timeout': missing ): dial.*tcp.*(timeout"}));
    }
    SUBCASE("dangling target") {
        CHECK(errorsOf(kSourcesAndTargets + R"(  - name: r
    source: flux
    targets: [am, pagerduty]
)") == errors({"test.yaml:11:19: route 'r': unknown target 'pagerduty'"}));
    }
    SUBCASE("dangling source") {
        CHECK(errorsOf(kSourcesAndTargets + R"(  - name: r
    source: flux2
    targets: [am]
)") == errors({"test.yaml:10:13: route 'r': unknown source 'flux2' (did you mean 'flux'?)"}));
    }
    SUBCASE("missing environment variable") {
        unsetenv("FLUXRELAY_TEST_UNSET");
        CHECK(errorsOf(R"(sources:
  - name: flux
    type: flux
    path: /flux/events
    requiredHeaders:
      Authorization: "Bearer ${FLUXRELAY_TEST_UNSET}"
)") == errors({"test.yaml:6:22: environment variable 'FLUXRELAY_TEST_UNSET' is not set"}));
    }
    SUBCASE("duplicate names") {
        CHECK(errorsOf(R"(sources:
  - {name: flux, type: flux, path: /a}
  - {name: flux, type: flux, path: /b}
targets:
  - {name: am, type: alertmanager, address: "http://am/"}
  - {name: am, type: alertmanager, address: "http://am/"}
routes:
  - {name: r, source: flux, targets: [am]}
  - {name: r, source: flux, targets: [am]}
)") == errors({
           "test.yaml:3:12: duplicate source name 'flux' (first defined at line 2)",
           "test.yaml:6:12: duplicate target name 'am' (first defined at line 5)",
           "test.yaml:9:12: duplicate route name 'r' (first defined at line 8)",
       }));
    }
    SUBCASE("YAML syntax error") {
        CHECK(errorsOf("sources:\n  - {name: flux, type: flux\nroutes: []\n") ==
              errors({"test.yaml:3:7: end of map flow not found"}));
    }
}

TEST_CASE("every error of a file is reported at once, in file order") {
    unsetenv("FLUXRELAY_TEST_UNSET");
    CHECK(errorsOf(R"(server:
  listen: 127.0.0.1:8080
  listne: 127.0.0.1:8081
sources:
  - name: flux
    type: flux
    path: /flux/events
targets:
  - name: am
    type: alertmanager
    address: http://127.0.0.1:9093/api/v2/alerts
    timeout: 5 parsecs
    headers: {X-Token: "${FLUXRELAY_TEST_UNSET}"}
routes:
  - name: errors
    source: flux
    exclusionList: ["dial.*tcp.*(timeout"]
    targets: [am, pagerduty]
)") == errors({
           "test.yaml:3:3: unknown key 'listne' in server (did you mean 'listen'?)",
           "test.yaml:12:14: invalid duration '5 parsecs' for 'timeout' (expected e.g. 30s, 5m, 1h30m)",
           "test.yaml:13:24: environment variable 'FLUXRELAY_TEST_UNSET' is not set",
           "test.yaml:17:21: invalid regular expression 'dial.*tcp.*(timeout': missing ): dial.*tcp.*(timeout",
           "test.yaml:18:19: route 'errors': unknown target 'pagerduty'",
       }));
}

TEST_CASE("ConfigError's message lists every diagnostic") {
    try {
        loadConfigText("foo: 1\nbar: 2\n", "c.yaml");
        FAIL("expected a ConfigError");
    } catch (const ConfigError& error) {
        CHECK(std::string(error.what()) ==
              "c.yaml:1:1: unknown key 'foo' in configuration\nc.yaml:2:1: unknown key 'bar' in configuration");
        REQUIRE(error.diagnostics().size() == 2);
        CHECK(error.diagnostics()[1].file == "c.yaml");
        CHECK(error.diagnostics()[1].line == 2);
        CHECK(error.diagnostics()[1].column == 1);
        CHECK(error.diagnostics()[1].message == "unknown key 'bar' in configuration");
    }
}

TEST_CASE("values of the wrong type") {
    CHECK(errorsOf(R"(server:
  listen: {host: 0.0.0.0}
  maxBodyBytes: lots
  ioThreads: 0
sources: {name: flux}
targets:
  - name: am
    type: alertmanager
    address: http://am/
    resolve: yes
    concurrency: 1.5
    headers: [a, b]
routes: []
)") == errors({
           "test.yaml:2:11: expected a string for 'listen'",
           "test.yaml:3:17: expected an integer for 'maxBodyBytes'",
           "test.yaml:4:14: 'ioThreads' must be between 1 and 1024",
           "test.yaml:5:10: expected a list for 'sources'",
           "test.yaml:10:14: expected true or false for 'resolve'",
           "test.yaml:11:18: expected an integer for 'concurrency'",
           "test.yaml:12:14: expected a mapping for 'headers'",
       }));
    CHECK(errorsOf("sources:\n  - flux\n") == errors({"test.yaml:2:5: expected a mapping for source"}));
    CHECK(errorsOf(
              "targets:\n  - {name: am, type: alertmanager, address: http://am/, resolve: true, concurrency: 2}\n") ==
          errors({"test.yaml:2:85: 'resolve: true' needs concurrency 1 (firing alerts are tracked in event order)"}));
    CHECK(errorsOf("sources:\n  - name:\n    type: flux\n    path: /x\n") ==
          errors({"test.yaml:2:5: 'name' has no value"}));
    CHECK(errorsOf("storage:\n  sync: always\n") ==
          errors({"test.yaml:2:9: invalid sync 'always' (one of: normal, full)"}));
}

TEST_CASE("required keys") {
    CHECK(errorsOf(R"(sources:
  - type: flux
  - name: b
    path: /b
  - name: c
    type: flux
    path: ""
targets:
  - name: am
  - type: alertmanager
    address: http://am/
routes:
  - name: r
)") == errors({
           "test.yaml:2:5: missing required key 'name' in source",
           "test.yaml:2:5: missing required key 'path' in source",
           "test.yaml:3:5: missing required key 'type' in source",
           "test.yaml:7:11: 'path' must not be empty",
           "test.yaml:9:5: missing required key 'type' in target",
           "test.yaml:9:5: missing required key 'address' in target",
           "test.yaml:10:5: missing required key 'name' in target",
           "test.yaml:13:5: missing required key 'source' in route",
           "test.yaml:13:5: missing required key 'targets' in route",
       }));
}

TEST_CASE("source paths") {
    CHECK(errorsOf(R"(sources:
  - {name: a, type: flux, path: flux}
  - {name: b, type: flux, path: /healthz}
  - {name: c, type: flux, path: /readyz}
  - {name: d, type: flux, path: /events}
  - {name: e, type: github, path: /events}
  - {name: f, type: flux, path: "/x?y"}
)") == errors({
           "test.yaml:2:33: path 'flux' must start with '/'",
           "test.yaml:3:33: path '/healthz' is reserved for health checks",
           "test.yaml:4:33: path '/readyz' is reserved for health checks",
           "test.yaml:6:35: path '/events' is already used by another source (line 5)",
           "test.yaml:7:33: path '/x?y' must not contain a query, fragment or blank",
       }));
}

TEST_CASE("${ENV} expands in any string value") {
    setenv("FLUXRELAY_TEST_HOST", "alertmanager.o11y", 1);
    setenv("FLUXRELAY_TEST_CONCURRENCY", "8", 1);
    setenv("FLUXRELAY_TEST_EMPTY", "", 1);
    const ConfigPtr config = load(R"(sources:
  - {name: flux, type: flux, path: "/${FLUXRELAY_TEST_EMPTY}flux"}
targets:
  - name: am
    type: alertmanager
    address: "http://${FLUXRELAY_TEST_HOST}:9093/api/v2/alerts"
    concurrency: ${FLUXRELAY_TEST_CONCURRENCY}
    headers: {X-Host: "${FLUXRELAY_TEST_HOST}-${FLUXRELAY_TEST_HOST}", X-Plain: "$HOME and $"}
routes:
  - {name: r, source: flux, targets: [am]}
)");
    REQUIRE(config);
    CHECK(config->sources[0].path == "/flux");
    const TargetConfig& target = config->targets[0];
    CHECK(target.address.host == "alertmanager.o11y");
    CHECK(target.addressText == "http://alertmanager.o11y:9093/api/v2/alerts");
    CHECK(target.concurrency == 8);
    REQUIRE(target.headers.size() == 2);
    CHECK(target.headers[0] == std::pair<std::string, std::string>{"X-Host", "alertmanager.o11y-alertmanager.o11y"});
    CHECK(target.headers[1].second == "$HOME and $");

    unsetenv("FLUXRELAY_TEST_A");
    unsetenv("FLUXRELAY_TEST_B");
    CHECK(errorsOf(R"(admin:
  token: "${FLUXRELAY_TEST_A}:${FLUXRELAY_TEST_B}"
  listen: "${not-a-name}:9090"
storage:
  path: "${FLUXRELAY_TEST_A"
)") == errors({
           "test.yaml:2:10: environment variable 'FLUXRELAY_TEST_A' is not set",
           "test.yaml:2:10: environment variable 'FLUXRELAY_TEST_B' is not set",
           "test.yaml:3:11: invalid environment variable name 'not-a-name'",
           "test.yaml:5:9: unterminated '${' (expected '${NAME}')",
       }));
}

TEST_CASE("secret files") {
    TempDir dir;
    dir.write("secrets/hmac", "raw key \n");
    dir.write("secrets/hmac-crlf", "crlf-key\r\n");
    dir.write("secrets/hmac-two-lines", "key\n\n");
    dir.write("secrets/token", "bearer-token\n\n  \t");
    dir.write("secrets/password", "pa ss\n");
    dir.write("secrets/github", "webhook-secret\n");
    dir.write("admin-token", "admin\n");
    dir.write("secrets/empty", "\n");
    const std::string yaml = R"(admin:
  tokenFile: admin-token
sources:
  - {name: a, type: flux, path: /a, hmacKeyFile: ./secrets/hmac}
  - {name: b, type: flux, path: /b, hmacKeyFile: secrets/hmac-crlf}
  - {name: c, type: flux, path: /c, hmacKeyFile: secrets/../secrets/hmac-two-lines}
  - {name: d, type: flux, path: /d, hmacKey: inline-key}
  - {name: e, type: github, path: /e, secretFile: ./secrets/github}
targets:
  - {name: am, type: alertmanager, address: "http://am/", tokenFile: ./secrets/token}
  - {name: basic, type: alertmanager, address: "http://am/", username: me, passwordFile: ./secrets/password}
)";

    SUBCASE("are read relative to the config file's folder and trimmed") {
        const std::string file = dir.write("config/../fluxrelay.yaml", yaml);
        ConfigPtr config;
        try {
            config = loadConfigFile(file);
        } catch (const ConfigError& error) {
            FAIL(error.what());
        }
        REQUIRE(config);
        CHECK(config->admin.token == "admin");
        // HMAC keys are raw bytes: only one final line ending goes.
        CHECK(config->sources[0].hmacKey == "raw key ");
        CHECK(config->sources[1].hmacKey == "crlf-key");
        CHECK(config->sources[2].hmacKey == "key\n");
        CHECK(config->sources[3].hmacKey == "inline-key");
        CHECK(config->sources[4].secret == "webhook-secret");
        CHECK(config->targets[0].token == "bearer-token");
        CHECK(config->targets[1].username == "me");
        CHECK(config->targets[1].password == "pa ss");
    }
    SUBCASE("loadConfigText anchors them at the folder of the name it is given") {
        const ConfigPtr config = loadConfigText(yaml, (dir.path() / "any.yaml").string());
        CHECK(config->sources[0].hmacKey == "raw key ");
    }
    SUBCASE("an unreadable, empty or doubly given secret is an error at its key") {
        const std::string file = (dir.path() / "bad.yaml").string();
        const std::string folder = dir.path().string();
        CHECK(errorsOf(R"(sources:
  - name: a
    type: flux
    path: /a
    hmacKeyFile: ./secrets/missing
  - name: b
    type: flux
    path: /b
    hmacKey: inline
    hmacKeyFile: ./secrets/hmac
  - name: c
    type: github
    path: /c
    secretFile: ./secrets/empty
  - name: d
    type: github
    path: /d
    secret: ""
)",
                       file) ==
              errors({
                  file + ":5:5: cannot read hmacKeyFile '" + folder + "/secrets/missing': No such file or directory",
                  file + ":10:5: 'hmacKey' and 'hmacKeyFile' are mutually exclusive",
                  file + ":14:5: secretFile '" + folder + "/secrets/empty' is empty",
                  file + ":18:13: 'secret' must not be empty",
              }));
    }
}

TEST_CASE("server, admin and storage") {
    TempDir dir;
    dir.write("tls.crt", "cert");
    dir.write("tls.key", "key");
    const ConfigPtr config = loadConfigText(R"(server:
  listen: "[::]:8443"
  tls: {certFile: tls.crt, keyFile: tls.key}
  maxBodyBytes: 1048576
  ioThreads: 4
admin:
  listen: :0
  token: secret
  forgetObjectsAfter: 6h
storage:
  path: /var/lib/fluxrelay
  sync: full
  retention: 72h
  maxQueuedDeliveries: 5000
)",
                                            (dir.path() / "c.yaml").string());
    CHECK(config->server.listen.host == "::");
    CHECK(config->server.listen.port == 8443);
    REQUIRE(config->server.tls.has_value());
    CHECK(config->server.tls->certFile == (dir.path() / "tls.crt").string());
    CHECK(config->server.maxBodyBytes == 1048576);
    CHECK(config->server.ioThreads == 4);
    CHECK(config->admin.listen.host == "0.0.0.0");
    CHECK(config->admin.listen.port == 0);
    CHECK(config->admin.token == "secret");
    CHECK(config->admin.forgetObjectsAfter == 6h);
    CHECK(config->storage.path == "/var/lib/fluxrelay");
    CHECK(config->storage.sync == SyncMode::full);
    CHECK(config->storage.retention == 72h);
    CHECK(config->storage.maxQueuedDeliveries == 5000);

    CHECK(load("server: {listen: 'localhost:80'}\n")->server.listen.host == "127.0.0.1");
    const std::string file = (dir.path() / "c.yaml").string();
    CHECK(errorsOf(R"(server:
  listen: example.com:80
  tls: {keyFile: missing.key}
admin:
  listen: "127.0.0.1:99999"
  forgetObjectsAfter: 0s
storage:
  redis: {url: "redis://127.0.0.1:6379/0", keyPrefix: "fluxrelay:", db: 1}
  retention: 0s
)",
                   file) ==
          errors({
              file + ":2:11: invalid listen address 'example.com:80' (expected IP:PORT, e.g. "
                     "0.0.0.0:8080 or [::]:8080)",
              file + ":3:8: missing required key 'certFile' in server.tls",
              file + ":3:9: cannot read keyFile '" + dir.path().string() + "/missing.key': No such file or directory",
              file + ":5:11: invalid listen address '127.0.0.1:99999' (expected IP:PORT, e.g. "
                     "0.0.0.0:8080 or [::]:8080)",
              file + ":6:23: 'forgetObjectsAfter' must be longer than 0s",
              file + ":8:69: unknown key 'db' in storage.redis",
              file + ":9:14: 'retention' must be longer than 0s",
          }));
}

TEST_CASE("storage.redis: url, key prefix, credentials, claimIdle") {
    CHECK_FALSE(load("storage: {path: ./data}\n")->storage.redis.has_value());

    TempDir dir;
    dir.write("redis-password", "s3cret\n");
    const ConfigPtr config = loadConfigText(R"(storage:
  redis:
    url: redis://redis.fluxrelay.svc:6380/2
    keyPrefix: "relay-a:"
    username: fluxrelay
    passwordFile: redis-password
    claimIdle: 1m
    timeout: 2s
)",
                                            (dir.path() / "c.yaml").string());
    REQUIRE(config->storage.redis.has_value());
    const RedisConfig& redis = *config->storage.redis;
    CHECK(redis.host == "redis.fluxrelay.svc");
    CHECK(redis.port == 6380);
    CHECK(redis.database == 2);
    CHECK(redis.keyPrefix == "relay-a:");
    CHECK(redis.username == "fluxrelay");
    CHECK(redis.password == "s3cret");
    CHECK(redis.claimIdle == 1min);
    CHECK(redis.timeout == 2s);

    const RedisConfig defaults = *load("storage: {redis: {url: 'redis://10.0.0.7'}}\n")->storage.redis;
    CHECK(defaults.host == "10.0.0.7");
    CHECK(defaults.port == 6379);
    CHECK(defaults.database == 0);
    CHECK(defaults.keyPrefix == "fluxrelay:");
    CHECK(defaults.password.empty());
    CHECK(defaults.claimIdle == 30s);
    CHECK(load("storage: {redis: {url: 'redis://[::1]:7000'}}\n")->storage.redis->host == "::1");

    CHECK(errorsOf(R"(storage:
  redis: {keyPrefix: x}
)") == errors({"test.yaml:2:10: missing required key 'url' in storage.redis"}));
    CHECK(errorsOf(R"(storage:
  redis:
    url: https://127.0.0.1:6379
    claimIdle: 0s
    username: u
    keyPrefix: ""
)") == errors({
           "test.yaml:3:10: invalid Redis url 'https://127.0.0.1:6379': expected redis://HOST:PORT/DB",
           "test.yaml:4:16: 'claimIdle' must be longer than 0s",
           "test.yaml:5:5: 'username' needs 'password' or 'passwordFile'",
           "test.yaml:6:16: 'keyPrefix' must not be empty",
       }));
    CHECK(errorsOf("storage: {redis: {url: 'redis://:secret@127.0.0.1'}}\n") ==
          errors({"test.yaml:1:24: invalid Redis url 'redis://<redacted>@127.0.0.1': credentials do not belong in the "
                  "url: use username and passwordFile"}));
    CHECK(errorsOf("storage: {redis: {url: 'rediss://127.0.0.1'}}\n") ==
          errors({"test.yaml:1:24: invalid Redis url 'rediss://127.0.0.1': TLS to Redis is not supported; use "
                  "redis:// on a trusted network"}));
    CHECK(errorsOf("storage: {redis: {url: 'redis://127.0.0.1:0/x'}}\n") ==
          errors({"test.yaml:1:24: invalid Redis url 'redis://127.0.0.1:0/x': invalid port '0'"}));
    CHECK(errorsOf("storage: {redis: {url: 'redis://127.0.0.1/x'}}\n") ==
          errors({"test.yaml:1:24: invalid Redis url 'redis://127.0.0.1/x': invalid database number 'x'"}));
}

TEST_CASE("listener TLS: server.tls and admin.tls have the same shape") {
    TempDir dir;
    dir.write("tls.crt", "cert");
    dir.write("tls.key", "key");
    dir.write("ca.crt", "ca");
    const ConfigPtr config = loadConfigText(R"(server:
  tls: {certFile: tls.crt, keyFile: tls.key, clientCAFile: ca.crt}
admin:
  tls: {certFile: tls.crt, keyFile: tls.key}
)",
                                            (dir.path() / "c.yaml").string());
    REQUIRE(config->server.tls.has_value());
    CHECK(config->server.tls->clientCAFile == (dir.path() / "ca.crt").string());
    REQUIRE(config->admin.tls.has_value());
    CHECK(config->admin.tls->certFile == (dir.path() / "tls.crt").string());
    CHECK(config->admin.tls->keyFile == (dir.path() / "tls.key").string());
    CHECK(config->admin.tls->clientCAFile.empty());
    CHECK_FALSE(load("admin: {listen: 127.0.0.1:9090}\n")->admin.tls.has_value());

    const std::string file = (dir.path() / "c.yaml").string();
    CHECK(errorsOf(R"(admin:
  tls: {certFile: tls.crt, clientCAFile: missing.crt, minVersion: "1.3"}
)",
                   file) == errors({
                                file + ":2:8: missing required key 'keyFile' in admin.tls",
                                file + ":2:28: cannot read clientCAFile '" + dir.path().string() +
                                    "/missing.crt': No such file or directory",
                                file + ":2:55: unknown key 'minVersion' in admin.tls",
                            }));
}

TEST_CASE("server: connection cap and deadlines") {
    const ConfigPtr defaults = load("{}\n");
    CHECK(defaults->server.maxConnections == 1024);
    CHECK(defaults->server.readTimeout == 30s);
    CHECK(defaults->server.idleTimeout == 75s);
    CHECK(defaults->server.writeTimeout == 30s);

    const ConfigPtr config = load(R"(server:
  maxConnections: 10
  readTimeout: 2s
  idleTimeout: 500ms
  writeTimeout: 1m
)");
    CHECK(config->server.maxConnections == 10);
    CHECK(config->server.readTimeout == 2s);
    CHECK(config->server.idleTimeout == 500ms);
    CHECK(config->server.writeTimeout == 1min);

    CHECK(errorsOf(R"(server:
  maxConnections: 0
  readTimeout: 0s
  idleTimeout: soon
  writetimeout: 1s
)") == errors({
           "test.yaml:2:19: 'maxConnections' must be between 1 and 1000000",
           "test.yaml:3:16: 'readTimeout' must be longer than 0s",
           "test.yaml:4:16: invalid duration 'soon' for 'idleTimeout' (expected e.g. 30s, 5m, 1h30m)",
           "test.yaml:5:3: unknown key 'writetimeout' in server (did you mean 'writeTimeout'?)",
       }));
}

TEST_CASE("sources: rateLimit") {
    const ConfigPtr config = load(R"(sources:
  - {name: a, type: flux, path: /a, rateLimit: {requestsPerSecond: 10, burst: 40}}
  - {name: b, type: github, path: /b, rateLimit: {requestsPerSecond: 5}}
  - {name: c, type: flux, path: /c}
)");
    REQUIRE(config->sources[0].rateLimit.has_value());
    CHECK(*config->sources[0].rateLimit == RateLimit{.requestsPerSecond = 10, .burst = 40});
    // The burst defaults to one second's worth.
    CHECK(*config->sources[1].rateLimit == RateLimit{.requestsPerSecond = 5, .burst = 5});
    CHECK_FALSE(config->sources[2].rateLimit.has_value());

    CHECK(errorsOf(R"(sources:
  - {name: a, type: flux, path: /a, rateLimit: {burst: 4}}
  - {name: b, type: flux, path: /b, rateLimit: {requestsPerSecond: 0}}
  - {name: c, type: flux, path: /c, rateLimit: {requestsPerSecond: 1.5, burst: 0}}
  - {name: d, type: flux, path: /d, rateLimit: {requestsPerSecond: 1, perMinute: 4}}
)") == errors({
           "test.yaml:2:48: missing required key 'requestsPerSecond' in rateLimit",
           "test.yaml:3:68: 'requestsPerSecond' must be between 1 and 1000000",
           "test.yaml:4:68: expected an integer for 'requestsPerSecond'",
           "test.yaml:4:80: 'burst' must be between 1 and 1000000",
           "test.yaml:5:71: unknown key 'perMinute' in rateLimit",
       }));
}

TEST_CASE("secret files others may write are refused, those others may read are warned about") {
    TempDir dir;
    const auto withMode = [&](const std::string& name, fs::perms mode) {
        const std::string path = dir.write(name, "secret-value\n");
        fs::permissions(path, mode, fs::perm_options::replace);
        return path;
    };
    using fs::perms;
    withMode("private", perms::owner_read | perms::owner_write);
    withMode("shared-read", perms::owner_read | perms::owner_write | perms::group_read | perms::others_read);
    withMode("group-write", perms::owner_read | perms::owner_write | perms::group_read | perms::group_write);
    withMode("world-write", perms::owner_read | perms::owner_write | perms::others_read | perms::others_write);
    const std::string file = (dir.path() / "c.yaml").string();
    const std::string folder = dir.path().string();

    const ConfigPtr config = loadConfigText(R"(admin: {tokenFile: private}
sources:
  - {name: a, type: flux, path: /a, hmacKeyFile: shared-read}
  - {name: b, type: github, path: /b, secretFile: group-write}
)",
                                            file);
    CHECK(config->sources[0].hmacKey == "secret-value");
    // Warnings never quote the secret, only where it is.
    CHECK(config->warnings == std::vector<std::string>{
                                  file + ":3:37: hmacKeyFile '" + folder +
                                      "/shared-read' is readable by every user (mode 0644); chmod 600 (or o-r)",
                                  file + ":4:39: secretFile '" + folder +
                                      "/group-write' is writable by its group (mode 0660); chmod g-w unless that "
                                      "group is trusted",
                              });

    CHECK(errorsOf(R"(admin: {tokenFile: world-write}
)",
                   file) == errors({
                                file + ":1:9: tokenFile '" + folder +
                                    "/world-write' is writable by every user (mode 0606): anyone on this host could "
                                    "replace it; chmod o-w",
                            }));
}

TEST_CASE("targets: common keys") {
    TempDir dir;
    dir.write("ca.pem", "ca");
    const ConfigPtr config = loadConfigText(R"(targets:
  - name: am
    type: alertmanager
    address: https://am.example:8443/api/v2/alerts
    timeout: 5s
    caFile: ca.pem
    insecureSkipVerify: true
    proxy: http://proxy:3128
    headers: {X-Scope-OrgID: home, X-A: b}
    retry: {maxAttempts: 10, maxAge: 1h, initialInterval: 100ms, maxInterval: 1s}
    concurrency: 2
    maxBatch: 16
    resolve: false
)",
                                            (dir.path() / "c.yaml").string());
    const TargetConfig& target = config->targets.at(0);
    CHECK(target.address.tls());
    CHECK(target.address.port == 8443);
    CHECK(target.timeout == 5s);
    CHECK(target.caFile == (dir.path() / "ca.pem").string());
    CHECK(target.insecureSkipVerify);
    CHECK(config->warnings ==
          std::vector<std::string>{(dir.path() / "c.yaml").string() +
                                   ":7:5: target 'am': insecureSkipVerify is true, its server's TLS certificate and "
                                   "host name are not verified"});
    REQUIRE(target.proxy.has_value());
    CHECK(target.proxy->host == "proxy");
    CHECK(target.proxy->port == 3128);
    CHECK(target.headers == std::vector<std::pair<std::string, std::string>>{{"X-Scope-OrgID", "home"}, {"X-A", "b"}});
    CHECK(target.retry.maxAttempts == 10);
    CHECK(target.retry.maxAge == 1h);
    CHECK(target.retry.initialInterval == 100ms);
    CHECK(target.retry.maxInterval == 1s);
    CHECK(target.concurrency == 2);
    CHECK(target.maxBatch == 16);
    CHECK_FALSE(target.resolve);

    CHECK(errorsOf(R"(targets:
  - name: a
    type: alertmanager
    address: am:9093
    proxy: http://user:pw@proxy:3128
    retry: {initialInterval: 10s, maxInterval: 1s}
    concurrency: 0
    maxBatch: -1
    timeout: 0s
  - name: b
    type: pagerduty
    address: http://pd/
  - name: c
    type: alertmanager
    address: http://am/
    username: me
    token: t
    certFile: client.crt
  - name: d
    type: alertmanager
    address: "http://me:s3cret@am:9093/api/v2/alerts?x=a@b"
)") == errors({
           "test.yaml:4:14: invalid address 'am:9093' (expected an absolute http or https URL)",
           // Never repeated: the password.
           "test.yaml:5:12: invalid proxy 'http://<redacted>@proxy:3128' (expected an http URL without "
           "credentials)",
           "test.yaml:6:30: retry.initialInterval (10s) is longer than retry.maxInterval (1s)",
           "test.yaml:7:18: 'concurrency' must be between 1 and 2147483647",
           "test.yaml:8:15: 'maxBatch' must be between 1 and 2147483647",
           "test.yaml:9:14: 'timeout' must be longer than 0s",
           "test.yaml:11:11: invalid type 'pagerduty' (one of: alertmanager, github, github-deployment, flux-receiver, "
           "kubernetes, "
           "generic)",
           "test.yaml:16:5: 'username' and 'password'/'passwordFile' go together",
           "test.yaml:17:5: a target authenticates with a token or with username and password, not both",
           "test.yaml:18:5: cannot read certFile 'client.crt': No such file or directory",
           "test.yaml:18:5: 'certFile' and 'keyFile' go together",
           "test.yaml:21:14: invalid address 'http://<redacted>@am:9093/api/v2/alerts?x=a@b' (expected an absolute "
           "http or https URL)",
       }));
}

TEST_CASE("targets: proxy credentials come from a file, only with a proxy") {
    TempDir dir;
    const std::string credentials = dir.write("proxy-credentials", "relay:pr0xy-pass\n");
    fs::permissions(credentials, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
    const std::string shared = dir.write("shared-credentials", "relay:pr0xy-pass\n");
    fs::permissions(shared, fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read,
                    fs::perm_options::replace);
    dir.write("no-colon", "relay\n");
    const std::string file = (dir.path() / "c.yaml").string();

    const ConfigPtr config = loadConfigText(R"(targets:
  - {name: a, type: alertmanager, address: https://am/, proxy: http://proxy:3128, proxyCredentialsFile: proxy-credentials}
  - {name: b, type: alertmanager, address: https://am/, proxy: http://proxy:3128}
  - {name: c, type: alertmanager, address: https://am/, proxy: http://proxy:3128, proxyCredentialsFile: shared-credentials}
)",
                                            file);
    CHECK(config->targets[0].proxyCredentials == "relay:pr0xy-pass");
    CHECK(config->targets[1].proxyCredentials.empty());
    // Warned about as every secret file is, never quoted.
    REQUIRE(config->warnings.size() == 1);
    CHECK(config->warnings[0] == file + ":4:83: proxyCredentialsFile '" + dir.path().string() +
                                     "/shared-credentials' is readable by every user (mode 0604); chmod 600 (or o-r)");

    CHECK(errorsOf(R"(targets:
  - {name: a, type: alertmanager, address: http://am/, proxyCredentialsFile: proxy-credentials}
  - {name: b, type: alertmanager, address: http://am/, proxy: http://proxy:3128, proxyCredentialsFile: no-colon}
  - {name: c, type: alertmanager, address: http://am/, proxy: http://proxy:3128, proxyCredentialsFile: missing}
  - {name: d, type: alertmanager, address: http://am/, proxy: "https://proxy:3129"}
  - {name: e, type: alertmanager, address: http://am/, proxy: http://proxy:3128, proxyCredentials: "u:p"}
)",
                   file) == errors({
                                file + ":2:56: 'proxyCredentialsFile' applies only with 'proxy'",
                                file + ":3:82: proxyCredentialsFile must hold username:password",
                                file + ":4:82: cannot read proxyCredentialsFile '" + dir.path().string() +
                                    "/missing': No such file or directory",
                                file + ":5:63: proxy 'https://proxy:3129': only http proxies are supported (https "
                                       "targets are tunnelled through them with CONNECT)",
                                file + ":6:82: unknown key 'proxyCredentials' in target",
                            }));
}

TEST_CASE("targets: keys of one type only") {
    TempDir dir;
    dir.write("app.pem", "-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----\n\n");
    const ConfigPtr config = loadConfigText(R"(targets:
  - name: status
    type: github
    address: git@github.example:team/repo.git
    app: {appID: 1234, installationID: 5678, privateKeyFile: app.pem}
    context: "flux/{kind}/{name}"
  - name: status-ssh
    type: github
    address: ssh://git@github.com:22/owner/repo
    token: t
  - name: hook
    type: flux-receiver
    address: http://receiver/hook/0123abcd
    token: t
  - name: kube
    type: kubernetes
    resources:
      - {apiVersion: source.toolkit.fluxcd.io/v1, kind: GitRepository, name: flux-system, namespace: flux-system}
)",
                                            (dir.path() / "c.yaml").string());
    const TargetConfig& status = config->targets.at(0);
    CHECK(status.address.toString() == "https://github.example/team/repo.git");
    CHECK(status.addressText == "git@github.example:team/repo.git");
    CHECK(status.context == "flux/{kind}/{name}");
    REQUIRE(status.app.has_value());
    CHECK(status.app->appId == 1234);
    CHECK(status.app->installationId == 5678);
    CHECK(status.app->privateKey == "-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----");
    CHECK(config->targets.at(1).address.toString() == "https://github.com/owner/repo");
    CHECK(config->targets.at(2).receiverName.empty());
    const TargetConfig& kube = config->targets.at(3);
    // No address: in a pod, the API server from KUBERNETES_SERVICE_HOST/PORT (unset here).
    CHECK(kube.addressText == "https://kubernetes.default.svc");
    REQUIRE(kube.resources.size() == 1);
    CHECK(kube.resources[0].apiVersion == "source.toolkit.fluxcd.io/v1");
    CHECK(kube.resources[0].kind == "GitRepository");
    CHECK(kube.resources[0].name == "flux-system");
    CHECK(kube.resources[0].namespace_ == "flux-system");

    CHECK(errorsOf(R"(targets:
  - name: am
    type: alertmanager
    address: http://am/
    context: x
    receiver: {name: r, namespace: ns}
  - name: status
    type: github
    address: https://github.com/owner
    resolve: true
  - name: receiver
    type: flux-receiver
    address: http://receiver/
    receiver: {name: r}
  - name: kube
    type: kubernetes
    resources: [{kind: Kustomization, name: apps}]
  - name: status2
    type: github
    address: https://github.com/owner/repo
    token: t
    app: {appID: 0, privateKeyFile: app.pem}
)") == errors({
           "test.yaml:5:5: 'context' applies only to github targets",
           "test.yaml:6:5: 'receiver' applies only to flux-receiver targets",
           "test.yaml:7:5: a github target needs 'tokenFile' (or 'token') or 'app'",
           "test.yaml:9:14: invalid address 'https://github.com/owner' (expected a repository URL, e.g. "
           "https://github.com/owner/repo)",
           "test.yaml:10:5: 'resolve' applies only to alertmanager targets",
           "test.yaml:11:5: a flux-receiver target needs 'tokenFile' (or 'token'): the Receiver's token",
           "test.yaml:14:15: missing required key 'namespace' in receiver",
           "test.yaml:17:17: missing required key 'apiVersion' in resource",
           "test.yaml:17:17: missing required key 'namespace' in resource",
           "test.yaml:22:5: a github target uses either a token or an app, not both",
           "test.yaml:22:10: missing required key 'installationID' in app",
           "test.yaml:22:18: 'appID' must be at least 1",
           "test.yaml:22:21: cannot read privateKeyFile 'app.pem': No such file or directory",
       }));
}

TEST_CASE("targets: a key no code of the target's type reads is refused") {
    // Only alertmanager targets batch and send Basic authentication.
    const ConfigPtr config = load(R"(targets:
  - {name: am, type: alertmanager, address: "http://am/", maxBatch: 8, username: u, password: p}
)");
    REQUIRE(config);
    CHECK(config->targets.at(0).maxBatch == 8);
    CHECK(config->targets.at(0).username == "u");
    CHECK(config->targets.at(0).password == "p");

    CHECK(errorsOf(R"(targets:
  - name: status
    type: github
    address: https://github.com/owner/repo
    token: t
    maxBatch: 16
  - name: reconcile
    type: flux-receiver
    address: http://receiver/
    receiver: {name: r, namespace: ns}
    tokenFile: token
    username: flux
    passwordFile: password
  - name: kube
    type: kubernetes
    resources: [{apiVersion: v1, kind: ConfigMap, name: c, namespace: ns}]
    maxBatch: 2
    password: p
)") == errors({
           "test.yaml:6:5: 'maxBatch' applies only to alertmanager targets (github targets send one request per event)",
           "test.yaml:11:5: cannot read tokenFile 'token': No such file or directory",
           "test.yaml:12:5: 'username' applies only to alertmanager targets (flux-receiver targets send no username "
           "and password)",
           "test.yaml:13:5: 'passwordFile' applies only to alertmanager targets (flux-receiver targets send no "
           "username and password)",
           "test.yaml:17:5: 'maxBatch' applies only to alertmanager targets (kubernetes targets send one request per "
           "event)",
           "test.yaml:18:5: 'password' applies only to alertmanager targets (kubernetes targets send no username and "
           "password)",
       }));

    // An address that already has the Receiver's /hook/ path is sent to as it is.
    CHECK(errorsOf(R"(targets:
  - name: reconcile
    type: flux-receiver
    address: http://receiver/hook/0123abcd
    token: t
    receiver: {name: r, namespace: ns}
)") == errors({"test.yaml:6:5: 'receiver' is not used when the address already has the /hook/ path"}));
}

TEST_CASE("targets: alertmanager labels and annotations are templates, parsed at load") {
    const ConfigPtr config = load(R"(targets:
  - name: am
    type: alertmanager
    address: "http://am/"
    labels: {cluster: home, team: "{metadata.team}", revision: ""}
    annotations: {summary: "{kind}/{name}: {reason}", runbook_url: "https://runbooks/{kind}"}
)");
    REQUIRE(config);
    const TargetConfig& am = config->targets.at(0);
    REQUIRE(am.labels.size() == 3);
    // In the file's order.
    CHECK(am.labels[0].first == "cluster");
    CHECK(am.labels[0].second.text() == "home");
    CHECK(am.labels[1].first == "team");
    CHECK(am.labels[1].second.text() == "{metadata.team}");
    CHECK(am.labels[2].first == "revision");
    CHECK(am.labels[2].second.text().empty());
    REQUIRE(am.annotations.size() == 2);
    CHECK(am.annotations[0].first == "summary");
    CHECK(am.annotations[1].second.text() == "https://runbooks/{kind}");
    FluxEvent flux;
    flux.involvedObject.kind = "Kustomization";
    flux.involvedObject.name = "apps";
    flux.reason = "HealthCheckFailed";
    CHECK(am.annotations[0].second.render(flux) == "Kustomization/apps: HealthCheckFailed");

    CHECK(errorsOf(R"(targets:
  - name: am
    type: alertmanager
    address: "http://am/"
    labels:
      alertname: Custom
      severity: "{severity}"
      reportingcontroller: x
      team: "{metadata.team}"
      cluster: "{clustr}"
      9lives: x
      app.kubernetes.io/name: x
      owner: "{nmae}"
    annotations: {message: "{reason}", summary: "{summary}", runbook_url: "https://runbooks/{kind}"}
  - name: status
    type: github
    address: https://github.com/owner/repo
    token: t
    labels: {cluster: home}
)") == errors({
           "test.yaml:6:7: 'labels.alertname': Flux's own label 'alertname' cannot be set (Alertmanager routes and "
           "silences match on it)",
           "test.yaml:7:7: 'labels.severity': Flux's own label 'severity' cannot be set (Alertmanager routes and "
           "silences match on it)",
           "test.yaml:8:7: 'labels.reportingcontroller': Flux's own label 'reportingcontroller' cannot be set "
           "(Alertmanager routes and silences match on it)",
           "test.yaml:10:16: 'labels.cluster': unknown placeholder '{clustr}' (known: {kind} {name} {namespace} "
           "{reason} {severity} {revision} {message} {reportingController} {metadata.KEY})",
           "test.yaml:11:7: 'labels.9lives': '9lives' is not a valid Alertmanager name (letters, digits and '_', not "
           "starting with a digit)",
           "test.yaml:12:7: 'labels.app.kubernetes.io/name': 'app.kubernetes.io/name' is not a valid Alertmanager "
           "name (letters, digits and '_', not starting with a digit)",
           "test.yaml:13:14: 'labels.owner': unknown placeholder '{nmae}' (did you mean '{name}'?)",
           "test.yaml:14:19: 'annotations.message': Flux's own annotation 'message' cannot be set (it carries the "
           "event's message: use {message} in another annotation)",
           "test.yaml:14:49: 'annotations.summary': unknown placeholder '{summary}' (known: {kind} {name} {namespace} "
           "{reason} {severity} {revision} {message} {reportingController} {metadata.KEY})",
           "test.yaml:19:5: 'labels' applies only to alertmanager targets",
       }));
}

TEST_CASE("targets: generic, its HMAC key and the keys it refuses") {
    TempDir dir;
    // Flux signs with the Secret's bytes: only the final line ending is dropped.
    dir.write("hmac-key", " key with spaces \n");
    const ConfigPtr config = loadConfigText(R"(sources:
  - {name: flux, type: flux, path: /flux/events}
targets:
  - name: n8n
    type: generic
    address: https://n8n.example/webhook/flux
    hmacKeyFile: hmac-key
    headers: {X-Team: platform}
    timeout: 5s
    proxy: http://proxy.internal:3128
  - {name: ha, type: generic, address: "http://ha.local:8123/api/webhook/flux", hmacKey: inline-key, token: t}
routes:
  - {name: all, source: flux, targets: [n8n, ha]}
)",
                                            (dir.path() / "c.yaml").string());
    const TargetConfig& n8n = config->targets.at(0);
    CHECK(name(n8n.type) == "generic");
    CHECK(n8n.hmacKey == " key with spaces ");
    CHECK(n8n.addressText == "https://n8n.example/webhook/flux");
    CHECK(n8n.timeout == 5s);
    REQUIRE(n8n.proxy.has_value());
    CHECK(n8n.proxy->host == "proxy.internal");
    CHECK(config->targets.at(1).hmacKey == "inline-key");
    CHECK(config->targets.at(1).token == "t");

    dir.write("empty-key", "\n");
    const std::string file = (dir.path() / "c.yaml").string();
    const std::string at = file + ":";
    CHECK(errorsOf(R"(sources:
  - {name: github, type: github, path: /github/webhook}
targets:
  - name: n8n
    type: generic
    hmacKeyFile: empty-key
    maxBatch: 8
    resolve: true
    username: u
    context: x
  - {name: g, type: generic, address: "http://g/", hmacKey: a, hmacKeyFile: empty-key}
  - {name: am, type: alertmanager, address: "http://am/", hmacKey: a}
routes:
  - {name: push, source: github, targets: [g]}
)",
                   file) ==
          errors({
              at + "4:5: missing required key 'address' in target",
              at + "6:5: hmacKeyFile '" + (dir.path() / "empty-key").string() + "' is empty",
              at + "7:5: 'maxBatch' applies only to alertmanager targets (generic targets send one request per "
                   "event)",
              at + "8:5: 'resolve' applies only to alertmanager targets",
              at + "9:5: 'username' applies only to alertmanager targets (generic targets send no username and "
                   "password)",
              at + "10:5: 'context' applies only to github targets",
              at + "11:64: 'hmacKey' and 'hmacKeyFile' are mutually exclusive",
              at + "12:59: 'hmacKey' applies only to generic targets",
              at + "14:44: route 'push': generic target 'g' cannot take events of a github source",
          }));
}

TEST_CASE("routes: a dedup window nothing counts within is refused") {
    CHECK(errorsOf(kSourcesAndTargets +
                   R"(  - {name: a, source: flux, targets: [am], dedup: {mode: transitions, window: 1h}}
  - {name: b, source: flux, targets: [am], dedup: {mode: none, window: 1h}}
)") == errors({
           "test.yaml:9:71: 'window' applies only to dedup modes 'flux' and 'normalized', or with a 'threshold'",
           "test.yaml:10:64: 'window' applies only to dedup modes 'flux' and 'normalized', or with a 'threshold'",
       }));
    // A threshold counts failures within the window, whatever the mode.
    const ConfigPtr config =
        load(kSourcesAndTargets +
             R"(  - {name: a, source: flux, targets: [am], dedup: {mode: none, threshold: 2, window: 1h}}
  - {name: b, source: flux, targets: [am], dedup: {mode: normalized, window: 1h}}
)");
    REQUIRE(config);
    CHECK(config->routes.at(0).dedup.window == 1h);
    CHECK(config->routes.at(1).dedup.window == 1h);
}

TEST_CASE("routes: match, eventMetadata, summary and dedup") {
    const ConfigPtr config = load(kSourcesAndTargets + R"(  - name: r
    source: flux
    inclusionList: ["^Health check", "failed"]
    match:
      namespace: "^apps-"
      reason: "ReconciliationFailed|HealthCheckFailed"
      metadata: {cluster: home, env: "prod|staging"}
      reportingController: kustomize-controller
    eventMetadata: {cluster: home, summary: "from metadata"}
    summary: "from summary"
    dedup: {mode: normalized, window: 10m}
    targets: [am, status]
  - name: s
    source: flux
    summary: "only summary"
    dedup: {mode: none}
    eventSources: [{kind: HelmRelease, namespace: "apps-*"}]
    targets: [am]
)");
    REQUIRE(config);
    const RouteConfig& route = config->routes.at(0);
    REQUIRE(route.inclusionList.size() == 2);
    CHECK(route.inclusionList[0].text == "^Health check");
    REQUIRE(route.match.size() == 5);
    CHECK(name(route.match[0].field) == "namespace");
    CHECK(route.match[0].pattern == "^apps-");
    CHECK(name(route.match[1].field) == "reason");
    CHECK(name(route.match[2].field) == "metadata");
    CHECK(route.match[2].metadataKey == "cluster");
    CHECK(route.match[3].metadataKey == "env");
    CHECK(route.match[3].pattern == "prod|staging");
    CHECK(name(route.match[4].field) == "reportingController");
    for (const FieldMatcher& matcher : route.match) REQUIRE(matcher.regex);
    CHECK(re2::RE2::PartialMatch("staging", *route.match[3].regex));
    CHECK(route.eventMetadata == std::map<std::string, std::string>{{"cluster", "home"}, {"summary", "from metadata"}});
    CHECK(name(route.dedup.mode) == "normalized");
    CHECK(route.dedup.window == 10min);
    CHECK(route.targets == std::vector<std::string>{"am", "status"});

    const RouteConfig& other = config->routes.at(1);
    CHECK(other.eventMetadata.at("summary") == "only summary");
    CHECK(name(other.dedup.mode) == "none");
    REQUIRE(other.eventSources.size() == 1);
    CHECK(other.eventSources[0].name == "*");
    CHECK(other.eventSources[0].namespace_ == "apps-*");

    CHECK(errorsOf(kSourcesAndTargets + R"(  - name: r
    source: flux
    eventSeverity: warning
    eventSources: [{name: x}, {kind: K, matchLabels: {a: b}}]
    match: {reason: "(", metadata: {a: "[z-a]"}, message: x}
    dedup: {mode: fast, renotify: 1h}
    targets: []
)") == errors({
           "test.yaml:11:20: invalid eventSeverity 'warning' (one of: info, error)",
           "test.yaml:12:20: missing required key 'kind' in eventSources entry",
           "test.yaml:12:41: unknown key 'matchLabels' in eventSources entry",
           "test.yaml:13:21: invalid regular expression '(': missing ): (",
           "test.yaml:13:40: invalid regular expression '[z-a]': invalid character class range: z-a",
           "test.yaml:13:50: unknown key 'message' in match",
           "test.yaml:14:19: invalid mode 'fast' (one of: flux, normalized, transitions, none)",
           "test.yaml:14:25: 'renotify' applies only to dedup mode 'transitions'",
           "test.yaml:15:14: 'targets' must not be empty",
       }));
    const ConfigPtr quiet = load(kSourcesAndTargets +
                                 "  - {name: r, source: flux, targets: [am], dedup: {mode: transitions, renotify: 4h, "
                                 "threshold: 3, window: 10m}}\n");
    REQUIRE(quiet);
    CHECK((quiet->routes[0].dedup.mode == DedupMode::transitions));
    CHECK(quiet->routes[0].dedup.renotify == std::chrono::hours(4));
    CHECK(quiet->routes[0].dedup.threshold == 3);
    CHECK(quiet->routes[0].dedup.window == std::chrono::minutes(10));
}

TEST_CASE("routes: keys and targets must fit the source's type") {
    const ConfigPtr config = load(kSourcesAndTargets + R"(  - name: push
    source: github
    events: [push]
    branches: [main, "release-*"]
    debounce: 10s
    targets: [reconcile]
)");
    REQUIRE(config);
    const RouteConfig& route = config->routes.at(0);
    CHECK(route.events == std::vector<std::string>{"push"});
    CHECK(route.branches == std::vector<std::string>{"main", "release-*"});
    CHECK(route.debounce == 10s);

    CHECK(errorsOf(kSourcesAndTargets + R"(  - name: push
    source: github
    eventSeverity: error
    dedup: {window: 1m}
    targets: [reconcile, am, reconcile]
  - name: flux
    source: flux
    branches: [main]
    targets: [status, reconcile]
)") == errors({
           "test.yaml:11:5: 'eventSeverity' applies only to routes with a flux source",
           "test.yaml:12:5: 'dedup' applies only to routes with a flux source",
           "test.yaml:13:26: route 'push': alertmanager target 'am' cannot take events of a github source",
           "test.yaml:13:30: route 'push': target 'reconcile' is listed twice",
           "test.yaml:16:5: 'branches' applies only to routes with a github source",
           "test.yaml:17:23: route 'flux': flux-receiver target 'reconcile' cannot take events of a flux source",
       }));
}

TEST_CASE("checkConfigText reports what the text alone decides, reading no file and no ${ENV}") {
    unsetenv("FLUXRELAY_TEST_UNSET");
    const std::string text = R"(sources:
  - {name: flux, type: flux, path: /flux/events, hmacKeyFile: ./secrets/missing}
targets:
  - {name: am, type: alertmanager, address: "${FLUXRELAY_TEST_UNSET}", caFile: ca.pem, username: u, passwordFile: pw}
  - {name: status, type: github, address: "https://github.com/o/r", tokenFile: ./missing, maxBatch: 2}
routes:
  - {name: all, source: flux, targets: [am, nowhere]}
)";
    std::string checked;
    for (const ConfigDiagnostic& diagnostic : checkConfigText(text, "test.yaml")) {
        checked += (checked.empty() ? "" : "\n") + diagnostic.toString();
    }
    CHECK(checked ==
          errors({
              "test.yaml:5:91: 'maxBatch' applies only to alertmanager targets (github targets send one request per "
              "event)",
              "test.yaml:7:45: route 'all': unknown target 'nowhere'",
          }));
    CHECK(errorsOf(text).find("environment variable 'FLUXRELAY_TEST_UNSET' is not set") != std::string::npos);
    CHECK(errorsOf(text).find("cannot read hmacKeyFile") != std::string::npos);
    CHECK(checkConfigText("sources: [{name: flux, type: flux, path: /flux/events}]\n", "test.yaml").empty());
}

TEST_CASE("keys of YAML itself: duplicates, documents, emptiness") {
    CHECK(errorsOf("server:\n  listen: 0.0.0.0:1\n  listen: 0.0.0.0:2\n") ==
          errors({"test.yaml:3:3: duplicate key 'listen' in server"}));
    CHECK(errorsOf("") == errors({"test.yaml:1:1: the configuration is empty"}));
    CHECK(errorsOf("# nothing\n") == errors({"test.yaml:1:1: the configuration is empty"}));
    CHECK(errorsOf("- a\n") == errors({"test.yaml:1:1: expected a mapping for configuration"}));
    CHECK(errorsOf("server: {}\n---\nserver: {}\n") == errors({"test.yaml:3:1: only one YAML document is allowed"}));
    CHECK(errorsOf("admin: {}\nserver: {}\nsources: []\ntargets: []\nroutes: []\nstorage: {}\n").empty());
}

TEST_CASE("loadConfigFile reports an unreadable file") {
    TempDir dir;
    const std::string file = (dir.path() / "missing.yaml").string();
    try {
        loadConfigFile(file);
        FAIL("expected a ConfigError");
    } catch (const ConfigError& error) {
        REQUIRE(error.diagnostics().size() == 1);
        CHECK(error.diagnostics()[0].toString() ==
              file + ":1:1: cannot read the configuration: No such file or directory");
    }
}

TEST_CASE("toString names types as the config writes them") {
    CHECK(std::string(toString(SourceType::flux)) == "flux");
    CHECK(std::string(toString(SourceType::github)) == "github");
    CHECK(std::string(toString(TargetType::alertmanager)) == "alertmanager");
    CHECK(std::string(toString(TargetType::github)) == "github");
    CHECK(std::string(toString(TargetType::fluxReceiver)) == "flux-receiver");
    CHECK(std::string(toString(TargetType::kubernetes)) == "kubernetes");
    CHECK(std::string(toString(TargetType::generic)) == "generic");
    CHECK(std::string(toString(DedupMode::none)) == "none");
    CHECK(std::string(toString(DedupMode::flux)) == "flux");
    CHECK(std::string(toString(DedupMode::normalized)) == "normalized");
    CHECK(std::string(toString(DedupMode::transitions)) == "transitions");
    CHECK(std::string(toString(MatchField::reason)) == "reason");
    CHECK(std::string(toString(MatchField::kind)) == "kind");
    CHECK(std::string(toString(MatchField::name)) == "name");
    CHECK(std::string(toString(MatchField::namespace_)) == "namespace");
    CHECK(std::string(toString(MatchField::reportingController)) == "reportingController");
    CHECK(std::string(toString(MatchField::metadata)) == "metadata");
}

// Found by fuzz/config_fuzz.cpp: YAML::LoadAll on a stray ',' collected empty documents until
// the process ran out of memory, so check-config, or a reload of a mistyped file, never returned.
TEST_CASE("a stray comma is an error, not an endless stream of documents") {
    CHECK(errorsOf(",") == errors({"test.yaml:1:1: unexpected ',' outside a [...] or {...} collection"}));
    CHECK(errorsOf("  ,\n") == errors({"test.yaml:1:3: unexpected ',' outside a [...] or {...} collection"}));
    CHECK(errorsOf("server: {}\n...\n,\n") == errors({"test.yaml:3:1: only one YAML document is allowed"}));
}

TEST_CASE("targets: github-deployment, its templates and the keys it refuses") {
    const ConfigPtr config = load(R"(sources:
  - {name: flux, type: flux, path: /flux/events}
targets:
  - name: deploys
    type: github-deployment
    address: https://github.com/owner/repo.git
    environment: "home/{namespace}/{name}"
    productionEnvironment: false
    environmentUrl: "https://{name}.example.org"
    logUrl: "https://logs.example.org/{kind}"
    token: t
routes:
  - {name: all, source: flux, targets: [deploys]}
)");
    const TargetConfig& deploys = config->targets.at(0);
    CHECK(name(deploys.type) == "github-deployment");
    CHECK(deploys.environment.text() == "home/{namespace}/{name}");
    CHECK(deploys.productionEnvironment == false);
    CHECK(deploys.environmentUrl.text() == "https://{name}.example.org");
    CHECK(deploys.logUrl.text() == "https://logs.example.org/{kind}");
    CHECK(deploys.concurrency == 1);  // statuses of one Deployment land in order

    CHECK(errorsOf(R"(sources:
  - {name: flux, type: flux, path: /flux/events}
targets:
  - name: deploys
    type: github-deployment
    address: https://github.com/owner/repo
    environment: "{cluster}/{name}"
    context: "{kind}/{name}"
    maxBatch: 2
  - {name: bare, type: github-deployment, address: "https://github.com/owner/repo", token: t}
routes:
  - {name: all, source: flux, targets: [deploys, bare]}
)") == errors({
           "test.yaml:4:5: a github-deployment target needs 'tokenFile' (or 'token') or 'app'",
           "test.yaml:7:18: 'environment': unknown placeholder '{cluster}' (known: {kind} {name} {namespace} {reason} "
           "{severity} {revision} {message} {reportingController} {metadata.KEY})",
           "test.yaml:8:5: 'context' applies only to github targets",
           "test.yaml:9:5: 'maxBatch' applies only to alertmanager targets (github-deployment targets send one "
           "request per event)",
           "test.yaml:10:5: missing required key 'environment' in target",
       }));
}
