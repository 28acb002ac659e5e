// explain: every filter step's verdict and reason, each target's exact request, and no secret shown.
#include "app/explain.hpp"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>

#include "config/loader.hpp"
#include "core/crypto.hpp"
#include "providers/flux_receiver.hpp"

using namespace fluxrelay;

namespace {

constexpr const char* kAlertmanagerToken = "am-bearer-token-0123456789";
constexpr const char* kGitHubToken = "ghp_statusToken0123456789";
constexpr const char* kReceiverToken = "receiver-token-0123456789";
constexpr const char* kApiKey = "header-api-key-0123456789";

const std::string kConfig = std::string(R"(
sources:
  - {name: flux, type: flux, path: /flux/events, hmacKey: flux-hmac-key-0123456789}
  - {name: github, type: github, path: /github/webhook, secret: github-webhook-secret-0123, events: [ping, push]}
targets:
  - name: alertmanager
    type: alertmanager
    address: http://alertmanager.o11y:9093/api/v2/alerts
    token: )") + kAlertmanagerToken +
                            R"(
    headers: {X-Api-Key: )" +
                            kApiKey + R"(, X-Team: platform}
  - name: github-status
    type: github
    address: https://github.com/onedr0p/home-ops
    token: )" + kGitHubToken +
                            R"(
  - name: reconcile
    type: flux-receiver
    address: http://webhook-receiver.flux-system.svc
    receiver: {name: github-webhook, namespace: flux-system}
    token: )" + kReceiverToken +
                            R"(
routes:
  - name: errors
    source: flux
    eventSeverity: error
    eventSources: [{kind: Kustomization, name: "*", namespace: flux-system}]
    exclusionList: ["dial.*tcp.*timeout"]
    targets: [alertmanager, github-status]
  - name: reconciliations
    source: flux
    inclusionList: ["^Reconciliation"]
    dedup: {mode: normalized}
    targets: [alertmanager]
  - name: health
    source: flux
    match: {reason: "^Health"}
    targets: [alertmanager]
  - name: push-main
    source: github
    events: [push]
    branches: [main]
    targets: [reconcile]
)";

ConfigPtr load(const std::string& yaml) {
    try {
        return loadConfigText(yaml, "test.yaml");
    } catch (const ConfigError& error) {
        FAIL("unexpected config errors:\n" << error.what());
    }
    return nullptr;
}

std::string fluxEvent(const std::string& severity, const std::string& reason, const std::string& message,
                      const std::string& kind = "Kustomization", const std::string& extraMetadata = "") {
    return R"({"involvedObject":{"kind":")" + kind +
           R"(","namespace":"flux-system","name":"apps","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},"severity":")" +
           severity + R"(","timestamp":"2024-05-01T10:00:00Z","message":")" + message + R"(","reason":")" + reason +
           R"(","metadata":{"revision":"main@sha1:bd5f1dc5b5be44b16dbb37ab0b8ea0e0fd2b4d07")" + extraMetadata +
           R"(},"reportingController":"kustomize-controller","reportingInstance":"kc-1"})";
}

// 2024-05-01T10:00:05Z
const TimePoint kNow{std::chrono::sys_days{std::chrono::year{2024} / 5 / 1} + std::chrono::hours{10} +
                     std::chrono::seconds{5}};

Explanation explained(const Config& config, const std::string& source, const std::string& body,
                      const std::string& eventType = "push") {
    auto result = explain(config, source, eventType, body, kNow);
    if (const auto* error = std::get_if<ExplainError>(&result)) FAIL("explain failed: " << error->message);
    return std::get<Explanation>(result);
}

const ExplainedRoute& route(const Explanation& explanation, const std::string& name) {
    for (const auto& r : explanation.routes) {
        if (r.name == name) return r;
    }
    FAIL("no route " << name);
    static const ExplainedRoute none;
    return none;
}

std::string header(const ShownRequest& request, const std::string& name) {
    for (const auto& [key, value] : request.headers) {
        if (key == name) return value;
    }
    return "(absent)";
}

std::string verdictOf(const Decision& decision) { return std::string(toString(decision.verdict)); }

// The report in both forms, for "no secret anywhere" checks.
std::string everything(const Explanation& explanation) {
    return formatExplanation(explanation) + explanationJson(explanation).dump();
}

}  // namespace

TEST_CASE("explain: each filter step names its verdict and reason") {
    const ConfigPtr config = load(kConfig);

    SUBCASE("exclusion") {
        const auto e =
            explained(*config, "flux", fluxEvent("error", "ArtifactFailed", "dial tcp 10.0.0.1:443: i/o timeout"));
        CHECK(verdictOf(route(e, "errors").decision) == "exclusion");
        CHECK(route(e, "errors").decision.reason.find("\"dial.*tcp.*timeout\"") != std::string::npos);
        CHECK(formatExplanation(e).find("route \"errors\": not matched (exclusion): exclusionList pattern") !=
              std::string::npos);
    }
    SUBCASE("eventSources") {
        const auto e = explained(*config, "flux", fluxEvent("error", "Failed", "boom", "HelmRelease"));
        CHECK(verdictOf(route(e, "errors").decision) == "event_source");
        CHECK(route(e, "errors").decision.reason == "no eventSources entry matches HelmRelease/flux-system/apps");
    }
    SUBCASE("severity") {
        const auto e = explained(*config, "flux", fluxEvent("info", "ReconciliationSucceeded", "done"));
        CHECK(verdictOf(route(e, "errors").decision) == "severity");
        CHECK(route(e, "errors").decision.reason.find("error events only") != std::string::npos);
    }
    SUBCASE("inclusion and match") {
        const auto e = explained(*config, "flux", fluxEvent("error", "BuildFailed", "kustomize build failed"));
        CHECK(verdictOf(route(e, "reconciliations").decision) == "inclusion");
        CHECK(route(e, "reconciliations").decision.reason.find("\"^Reconciliation\"") != std::string::npos);
        CHECK(verdictOf(route(e, "health").decision) == "match");
        CHECK(route(e, "health").decision.reason.find("match reason: \"BuildFailed\" does not match \"^Health\"") !=
              std::string::npos);
        CHECK(e.routes.size() == 3);  // the flux routes only, in config order
        CHECK(e.routes[0].name == "errors");
        CHECK(e.routes[2].name == "health");
    }
    SUBCASE("target rule") {
        const auto e = explained(*config, "flux",
                                 fluxEvent("info", "ReconciliationSucceeded", "Reconciliation finished in 2.31s",
                                           "Kustomization", R"(,"commit_status":"update")"));
        const auto& r = route(e, "reconciliations");
        REQUIRE(r.decision.passed());
        REQUIRE(r.targets.size() == 1);
        CHECK(verdictOf(r.targets[0].rule) == "target_rule");
        CHECK(r.targets[0].requests.empty());
        CHECK(formatExplanation(e).find("skipped by Flux's target rule (target_rule): commit status updates") !=
              std::string::npos);
        CHECK(e.deliveries() == 0);
        // normalized dedup shows the masked message it keys on
        CHECK(r.dedup.find("mode normalized") != std::string::npos);
        CHECK(r.dedup.find("finished in <duration>") != std::string::npos);
    }
}

TEST_CASE("explain: a passing event shows each target's exact request, secrets redacted") {
    const ConfigPtr config = load(kConfig);
    const auto e =
        explained(*config, "flux", fluxEvent("error", "HealthCheckFailed", "Health check failed after 5m0s"));
    const auto& r = route(e, "errors");
    REQUIRE(r.decision.passed());
    CHECK(r.dedup.find("mode flux, window 5m0s, key ") != std::string::npos);
    CHECK(r.dedup.find("live dedup state is not consulted") != std::string::npos);
    REQUIRE(r.targets.size() == 2);

    const ExplainedTarget& am = r.targets[0];
    CHECK(am.rule.passed());
    REQUIRE(am.requests.size() == 1);
    const ShownRequest& request = am.requests[0];
    CHECK(request.method == "POST");
    CHECK(request.url == "http://alertmanager.o11y:9093/api/v2/alerts");
    CHECK(header(request, "Host") == "alertmanager.o11y:9093");
    CHECK(header(request, "Authorization") == "Bearer <redacted>");
    CHECK(header(request, "X-Api-Key") == "<redacted>");
    CHECK(header(request, "X-Team") == "platform");
    const auto alerts = nlohmann::json::parse(request.body);
    REQUIRE(alerts.is_array());
    CHECK(alerts[0]["labels"]["alertname"] == "FluxKustomizationHealthcheckfailed");
    CHECK(alerts[0]["startsAt"] == "2024-05-01T10:00:00Z");
    CHECK(header(request, "Content-Length") == std::to_string(request.body.size()));

    const ExplainedTarget& github = r.targets[1];
    CHECK(github.rule.passed());
    REQUIRE(github.requests.size() == 1);
    CHECK(github.requests[0].url ==
          "https://api.github.com/repos/onedr0p/home-ops/statuses/bd5f1dc5b5be44b16dbb37ab0b8ea0e0fd2b4d07");
    CHECK(header(github.requests[0], "Authorization") == "Bearer <redacted>");
    CHECK(nlohmann::json::parse(github.requests[0].body)["state"] == "failure");
    CHECK(e.deliveries() == 3);  // errors → 2 targets, health → alertmanager

    const std::string all = everything(e);
    CHECK(all.find(kAlertmanagerToken) == std::string::npos);
    CHECK(all.find(kGitHubToken) == std::string::npos);
    CHECK(all.find(kApiKey) == std::string::npos);
    CHECK(formatExplanation(e).find("result: 3 deliveries (errors → alertmanager, errors → github-status, health → "
                                    "alertmanager)") != std::string::npos);
}

TEST_CASE("explain: a GitHub push forwarded to a Flux Receiver hides the capability URL and the signature") {
    const ConfigPtr config = load(kConfig);
    const std::string body = R"({"ref":"refs/heads/main","after":"bd5f1dc5b5be44b16dbb37ab0b8ea0e0fd2b4d07"})";
    const auto e = explained(*config, "github", body);
    const auto& r = route(e, "push-main");
    REQUIRE(r.decision.passed());
    REQUIRE(r.targets.size() == 1);
    REQUIRE(r.targets[0].requests.size() == 1);
    const ShownRequest& request = r.targets[0].requests[0];
    CHECK(request.url == "http://webhook-receiver.flux-system.svc/hook/<redacted>");
    CHECK(header(request, "X-Hub-Signature-256") == "sha256=<redacted>");
    CHECK(header(request, "X-GitHub-Event") == "push");
    CHECK(request.body == body);  // byte for byte
    CHECK(r.dedup.find("none for GitHub deliveries") != std::string::npos);

    const std::string digest = receiverWebhookPath(kReceiverToken, "github-webhook", "flux-system").substr(6);
    const std::string all = everything(e);
    CHECK(all.find(digest) == std::string::npos);
    CHECK(all.find(kReceiverToken) == std::string::npos);
    CHECK(all.find(toHex(hmac(HashAlgorithm::sha256, kReceiverToken, body))) == std::string::npos);

    SUBCASE("another branch") {
        const auto other = explained(*config, "github", R"({"ref":"refs/heads/dev"})");
        CHECK(verdictOf(route(other, "push-main").decision) == "branch");
    }
    SUBCASE("the source answers a ping itself") {
        const auto ping = explained(*config, "github", R"({"zen":"Keep it logically awesome."})", "ping");
        CHECK(ping.sourceAnswer.find("pong") != std::string::npos);
        CHECK(ping.routes.empty());
    }
    SUBCASE("an event the source does not list is refused with 400") {
        const auto issues = explained(*config, "github", R"({"action":"opened"})", "issues");
        CHECK(issues.sourceAnswer.starts_with("HTTP 400: GitHub event \"issues\" is not accepted by source github"));
    }
    SUBCASE("a form-encoded body") {
        const auto form = explained(*config, "github", "payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D");
        CHECK(route(form, "push-main").decision.passed());
    }
}

TEST_CASE("explain: events that are not events are errors naming the problem") {
    const ConfigPtr config = load(kConfig);
    auto notJson = explain(*config, "flux", "push", "{not json", kNow);
    REQUIRE(std::holds_alternative<ExplainError>(notJson));
    CHECK(std::get<ExplainError>(notJson).message.starts_with("not a Flux event: "));

    auto missing = explain(*config, "flux", "push", R"({"severity":"error"})", kNow);
    REQUIRE(std::holds_alternative<ExplainError>(missing));
    CHECK(std::get<ExplainError>(missing).message.find("involvedObject") != std::string::npos);

    auto pushWithoutRef = explain(*config, "github", "push", R"({"after":"x"})", kNow);
    REQUIRE(std::holds_alternative<ExplainError>(pushWithoutRef));
    CHECK(std::get<ExplainError>(pushWithoutRef).message ==
          "not a GitHub push webhook: ref is required in a push payload");

    auto unknownSource = explain(*config, "nope", "push", "{}", kNow);
    REQUIRE(std::holds_alternative<ExplainError>(unknownSource));
}

namespace {

struct PkeyFree {
    void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};

std::string rsaPrivateKeyPem() {
    std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
    REQUIRE(key);
    BIO* bio = BIO_new(BIO_s_mem());
    REQUIRE(PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1);
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<std::size_t>(size));
    BIO_free(bio);
    return pem;
}

}  // namespace

TEST_CASE("explain: a GitHub App target shows its token exchange first, both redacted") {
    const std::string pem = rsaPrivateKeyPem();
    std::string indented;
    for (std::size_t start = 0; start < pem.size();) {
        const std::size_t end = pem.find('\n', start);
        indented += "        " + pem.substr(start, end - start) + "\n";
        start = end == std::string::npos ? pem.size() : end + 1;
    }
    const ConfigPtr config = load(R"(
sources:
  - {name: flux, type: flux, path: /flux/events}
targets:
  - name: status
    type: github
    address: https://github.example.com/org/repo
    app:
      appID: 1234
      installationID: 5678
      privateKey: |
)" + indented + R"(
routes:
  - {name: all, source: flux, targets: [status]}
)");
    const auto e = explained(*config, "flux", fluxEvent("error", "BuildFailed", "boom"));
    const auto& target = route(e, "all").targets.at(0);
    REQUIRE(target.requests.size() == 2);
    CHECK(target.requests[0].purpose == "credentials");
    CHECK(target.requests[0].url == "https://github.example.com/api/v3/app/installations/5678/access_tokens");
    CHECK(header(target.requests[0], "Authorization") == "Bearer <redacted>");
    CHECK(target.requests[1].purpose == "delivery");
    CHECK(header(target.requests[1], "Authorization") == "Bearer <redacted>");
    CHECK(target.failure.empty());
    const std::string all = everything(e);
    CHECK(all.find("PRIVATE KEY") == std::string::npos);
    CHECK(all.find("eyJ") == std::string::npos);  // no JWT
}

TEST_CASE("explain: redaction helpers") {
    CHECK(isSecretHeaderName("Authorization"));
    CHECK(isSecretHeaderName("X-Hub-Signature-256"));
    CHECK(isSecretHeaderName("X-Signature"));
    CHECK(isSecretHeaderName("X-API-Key"));
    CHECK(isSecretHeaderName("Private-Token"));
    CHECK_FALSE(isSecretHeaderName("Content-Type"));
    CHECK_FALSE(isSecretHeaderName("X-GitHub-Delivery"));
    CHECK_FALSE(isSecretHeaderName("X-GitHub-Api-Version"));

    CHECK(redactHeaderValue("Authorization", "Basic dXNlcjpwYXNz") == "Basic <redacted>");
    CHECK(redactHeaderValue("X-Signature", "sha512=abcdef") == "sha512=<redacted>");
    CHECK(redactHeaderValue("X-Token", "plain") == "<redacted>");
    CHECK(redactHeaderValue("Accept", "application/json") == "application/json");

    CHECK(redactUrl("http://h/hook/abc123") == "http://h/hook/<redacted>");
    CHECK(redactUrl("http://h/base/hook/abc123?x=1") == "http://h/base/hook/<redacted>?x=1");
    CHECK(redactUrl("https://h/api?token=s3cret&name=a&api_key=k") ==
          "https://h/api?token=<redacted>&name=a&api_key=<redacted>");
    CHECK(redactUrl("https://h/api/v2/alerts") == "https://h/api/v2/alerts");
    CHECK(redactUrl("https://user:pass@h/api?token=") == "https://<redacted>@h/api?token=<redacted>");
    CHECK(redactUrl("http://h/hook/") == "http://h/hook/");
    CHECK(redactUrl("http://h/hook?hook=1") == "http://h/hook?hook=1");
}

TEST_CASE("explain: a kubernetes target shows one PATCH per resource and reads no token file") {
    const ConfigPtr config = load(R"(
sources:
  - {name: github, type: github, path: /github/webhook}
targets:
  - name: reconcile
    type: kubernetes
    address: https://10.43.0.1:443
    insecureSkipVerify: true
    resources:
      - {apiVersion: source.toolkit.fluxcd.io/v1, kind: GitRepository, name: flux-system, namespace: flux-system}
      - {apiVersion: kustomize.toolkit.fluxcd.io/v1, kind: Kustomization, name: apps, namespace: flux-system}
routes:
  - {name: push, source: github, targets: [reconcile]}
)");
    const auto e = explained(*config, "github", R"({"ref":"refs/heads/main"})");
    const auto& target = route(e, "push").targets.at(0);
    CHECK(target.failure.empty());
    REQUIRE(target.requests.size() == 2);
    CHECK(target.requests[0].method == "PATCH");
    CHECK(target.requests[0].url ==
          "https://10.43.0.1/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/flux-system");
    CHECK(target.requests[1].url ==
          "https://10.43.0.1/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/apps");
    CHECK(header(target.requests[0], "Authorization") == "Bearer <redacted>");
    CHECK(header(target.requests[0], "Content-Type") == "application/merge-patch+json");
    REQUIRE(!target.notes.empty());
    CHECK(target.notes[0].find("read from /var/run/secrets/kubernetes.io/serviceaccount/token when sending") !=
          std::string::npos);
    CHECK(e.notes.empty());  // the source has no secret: nothing is skipped
}

TEST_CASE("explain: a generic target shows Flux's Event JSON with the route's metadata, its signature redacted") {
    constexpr const char* kHmacKey = "generic-hmac-key-0123456789";
    const ConfigPtr config = load(std::string(R"(
sources:
  - {name: flux, type: flux, path: /flux/events}
targets:
  - {name: n8n, type: generic, address: "https://n8n.example/webhook/flux", hmacKey: )") +
                                  kHmacKey + R"(}
routes:
  - {name: all, source: flux, eventMetadata: {cluster: home}, targets: [n8n]}
)");
    const std::string body = fluxEvent("error", "HealthCheckFailed", "Health check <failed>");
    const auto e = explained(*config, "flux", body);
    const auto& target = route(e, "all").targets.at(0);
    CHECK(target.failure.empty());
    REQUIRE(target.requests.size() == 1);
    const ShownRequest& request = target.requests[0];
    CHECK(request.method == "POST");
    CHECK(request.url == "https://n8n.example/webhook/flux");
    CHECK(header(request, "Content-Type") == "application/json");
    CHECK(header(request, "gotk-component") == "kustomize-controller");
    CHECK(header(request, "X-Signature") == "sha256=<redacted>");
    // The posted event as Go writes it, with the route's metadata in its sorted place.
    std::string expected = body;
    expected.replace(expected.find("Health check <failed>"), 21, "Health check \\u003cfailed\\u003e");
    expected.replace(expected.find(R"("metadata":{)"), 12, R"("metadata":{"cluster":"home",)");
    CHECK(request.body == expected);
    CHECK(everything(e).find(kHmacKey) == std::string::npos);
}

TEST_CASE("explain: a github-deployment target shows each step, the create answered with a made-up id") {
    const ConfigPtr config = load(R"(
sources:
  - {name: flux, type: flux, path: /flux/events}
targets:
  - {name: deploys, type: github-deployment, address: "https://github.com/o/r", environment: "home/{name}", token: ghp_deployment-token}
routes:
  - {name: all, source: flux, targets: [deploys]}
)");
    const auto e = explained(*config, "flux", fluxEvent("info", "Progressing", "Running health checks"));
    const auto& target = route(e, "all").targets.at(0);
    CHECK(target.failure.empty());
    REQUIRE(target.requests.size() == 3);
    CHECK(target.requests[0].method == "GET");
    CHECK(target.requests[0].url ==
          "https://api.github.com/repos/o/r/"
          "deployments?sha=bd5f1dc5b5be44b16dbb37ab0b8ea0e0fd2b4d07&environment=home%2Fapps");
    CHECK(target.requests[1].purpose == "delivery, step 2");
    CHECK(target.requests[1].url == "https://api.github.com/repos/o/r/deployments");
    CHECK(target.requests[2].url == "https://api.github.com/repos/o/r/deployments/1/statuses");
    CHECK(header(target.requests[2], "Authorization") == "Bearer <redacted>");
    CHECK(target.notes == std::vector<std::string>{"step 2 is planned on a made-up answer to step 1: []",
                                                   R"(step 3 is planned on a made-up answer to step 2: {"id":1})"});
    // The id, then the status it got: the last write is what the spool holds after the attempt.
    REQUIRE(target.writes.size() == 2);
    CHECK(target.writes.back().second->find(R"("state":"in_progress")") != std::string::npos);

    // With the id in the spool, only the status is posted.
    const std::string key = target.writes.front().first;
    auto withId = explain(*config, "flux", "push", fluxEvent("info", "Progressing", "Running health checks"), kNow,
                          [&](const std::string& asked) -> std::optional<std::string> {
                              if (asked != key) return std::nullopt;
                              return R"({"deployment":7,"state":"","description":"","applied":0})";
                          });
    const auto& known = route(std::get<Explanation>(withId), "all").targets.at(0);
    REQUIRE(known.requests.size() == 1);
    CHECK(known.requests[0].url == "https://api.github.com/repos/o/r/deployments/7/statuses");
    CHECK(known.notes.empty());
}
