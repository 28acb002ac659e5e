// GitHub Deployments: the steps of an attempt (list, create, remember the id, post the status),
// the status mapping, the remembered state and what GitHub's answers mean.
#include "providers/github_deployment.hpp"
#include "providers/github_api.hpp"
#include "test/providers/plans.hpp"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fluxrelay {
namespace {

const std::string kSha = "5394cb7f48332b2de7c17dd8b8384bbc84b7e738";

FluxEvent kustomizationEvent(std::string severity = "info", std::string reason = "ReconciliationSucceeded",
                             std::string message = "Applied revision: main@sha1:" + kSha) {
    FluxEvent flux;
    flux.involvedObject.kind = "Kustomization";
    flux.involvedObject.namespace_ = "flux-system";
    flux.involvedObject.name = "apps";
    flux.severity = std::move(severity);
    flux.message = std::move(message);
    flux.reason = std::move(reason);
    flux.metadata = {{"revision", "main@sha1:" + kSha}};
    flux.reportingController = "kustomize-controller";
    return flux;
}

std::vector<Delivery> batchOf(FluxEvent flux, std::uint64_t id = 1) {
    Event event;
    event.id = "0123456789abcdef";
    event.source = "flux";
    event.payload = std::move(flux);
    Delivery delivery;
    delivery.id = id;
    delivery.route = "deploys";
    delivery.target = "deploys";
    delivery.event = std::make_shared<const Event>(std::move(event));
    return {delivery};
}

EventTemplate objectTemplate(std::string_view text) { return std::get<EventTemplate>(EventTemplate::parse(text)); }

TargetConfig deploymentTarget() {
    TargetConfig target;
    target.name = "deploys";
    target.type = TargetType::githubDeployment;
    target.address = Url{"https", "github.com", 443, "/onedr0p/home-ops"};
    target.addressText = "https://github.com/onedr0p/home-ops";
    target.token = "ghp_secret-token";
    target.environment = objectTemplate("home/{name}");
    return target;
}

HttpResponse response(int status, std::string body = {},
                      std::vector<std::pair<std::string, std::string>> headers = {}) {
    return HttpResponse{status, std::move(headers), std::move(body)};
}

std::string header(const HttpRequest& request, std::string_view name) {
    for (const auto& [key, value] : request.headers) {
        if (key == name) return value;
    }
    return {};
}

const std::string kKey = "github-deployment:deploys:onedr0p/home-ops:home/apps:" + kSha;

// The steps of one attempt as the dispatcher runs them, each request answered by `answer`.
struct Steps {
    std::vector<AttemptPlan> plans;
    ProviderState state;
};

template <class Answer>
Steps runSteps(const Provider& provider, std::span<const Delivery> batch, ProviderState state, Answer answer) {
    Steps steps;
    for (int step = 1; step <= kMaxAttemptSteps; ++step) {
        AttemptPlan plan = provider.plan(batch, state, Clock::now());
        steps.plans.push_back(plan);
        if (plan.decided && plan.decided->kind != OutcomeKind::delivered) break;
        std::string body;
        for (const HttpRequest& request : plan.requests) body = answer(request);
        if (!advanceAttempt(plan, body, state)) break;
    }
    steps.state = std::move(state);
    return steps;
}

nlohmann::json known(const ProviderState& state) {
    const auto it = state.find(kKey);
    REQUIRE(it != state.end());
    REQUIRE(it->second.has_value());
    return nlohmann::json::parse(*it->second);
}

}  // namespace

TEST_CASE("deployment states: Progressing is in_progress, other info success, error failure") {
    CHECK(deploymentState("info", "Progressing") == "in_progress");
    CHECK(deploymentState("info", "ReconciliationSucceeded") == "success");
    CHECK(deploymentState("info", "DependencyNotReady") == "success");
    CHECK(deploymentState("error", "HealthCheckFailed") == "failure");
    CHECK_FALSE(deploymentState("trace", "Progressing").has_value());
}

TEST_CASE("a description is 'Reason: message' cut to 140 characters, not bytes") {
    CHECK(deploymentDescription(kustomizationEvent("error", "HealthCheckFailed", "timeout")) ==
          "HealthCheckFailed: timeout");
    std::string message;
    for (int i = 0; i < 200; ++i) message += "é";
    const std::string cut = deploymentDescription(kustomizationEvent("error", "Failed", message));
    CHECK(cut.size() == std::string("Failed: ").size() + 2 * (140 - 8));
    CHECK(gitHubDescription(std::string(141, 'x')).size() == 140);
}

TEST_CASE("a new revision: list, create, remember the id, then post the status") {
    const auto provider = makeProvider(deploymentTarget());
    const auto batch = batchOf(kustomizationEvent("info", "Progressing", "Running health checks"), 7);
    CHECK(provider->stateKeys(batch) == std::vector<std::string>{kKey});

    std::vector<HttpRequest> sent;
    const Steps steps = runSteps(*provider, batch, {{kKey, std::nullopt}}, [&](const HttpRequest& request) {
        sent.push_back(request);
        return sent.size() == 1 ? std::string("[]") : std::string(R"({"id": 4242, "sha": "x"})");
    });
    REQUIRE(steps.plans.size() == 4);
    REQUIRE(sent.size() == 3);

    CHECK(sent[0].method == "GET");
    CHECK(sent[0].url.host == "api.github.com");
    CHECK(sent[0].url.target == "/repos/onedr0p/home-ops/deployments?sha=" + kSha + "&environment=home%2Fapps");
    CHECK(sent[0].body.empty());
    CHECK(header(sent[0], "Authorization") == "Bearer ghp_secret-token");

    CHECK(sent[1].method == "POST");
    CHECK(sent[1].url.target == "/repos/onedr0p/home-ops/deployments");
    const auto create = nlohmann::json::parse(sent[1].body);
    CHECK(create ==
          nlohmann::json{{"ref", kSha},
                         {"environment", "home/apps"},
                         {"auto_merge", false},
                         {"required_contexts", nlohmann::json::array()},
                         {"description", "Progressing: Running health checks"},
                         {"payload", {{"kind", "Kustomization"}, {"namespace", "flux-system"}, {"name", "apps"}}}});
    CHECK(steps.plans[1].writes.empty());

    // The id is stored by a step of its own, before the status is posted.
    CHECK(steps.plans[2].requests.empty());
    REQUIRE(steps.plans[2].writes.contains(kKey));
    CHECK(nlohmann::json::parse(*steps.plans[2].writes.at(kKey))["deployment"] == 4242);

    CHECK(sent[2].url.target == "/repos/onedr0p/home-ops/deployments/4242/statuses");
    CHECK(nlohmann::json::parse(sent[2].body) == nlohmann::json{{"state", "in_progress"},
                                                                {"description", "Progressing: Running health checks"},
                                                                {"auto_inactive", true}});
    CHECK(known(steps.state) == nlohmann::json{{"deployment", 4242},
                                               {"state", "in_progress"},
                                               {"description", "Progressing: Running health checks"},
                                               {"applied", 7}});
    // The responses passed between steps are never stored.
    for (const AttemptPlan& plan : steps.plans) CHECK(plan.writes.size() <= 1);
}

TEST_CASE("a Deployment this relay created before (its 201 was lost) is found and reused") {
    const auto provider = makeProvider(deploymentTarget());
    const auto batch = batchOf(kustomizationEvent());
    const nlohmann::json listed = nlohmann::json::array(
        {{{"id", 1}, {"sha", kSha}, {"environment", "home/apps"}, {"payload", {{"deploy", "by hand"}}}},
         {{"id", 99},
          {"sha", kSha},
          {"environment", "home/apps"},
          {"payload", R"({"kind":"Kustomization","namespace":"flux-system","name":"apps"})"}}});
    std::vector<HttpRequest> sent;
    const Steps steps = runSteps(*provider, batch, {}, [&](const HttpRequest& request) {
        sent.push_back(request);
        return listed.dump();
    });
    REQUIRE(sent.size() == 2);
    CHECK(sent[0].method == "GET");
    CHECK(sent[1].url.target == "/repos/onedr0p/home-ops/deployments/99/statuses");
    CHECK(known(steps.state)["deployment"] == 99);
}

TEST_CASE("a known Deployment gets only the status; unchanged and superseded statuses are not sent") {
    const auto provider = makeProvider(deploymentTarget());
    const ProviderState state = {
        {kKey, R"({"deployment":5,"state":"failure","description":"HealthCheckFailed: timeout","applied":3})"}};

    const auto succeeded = batchOf(kustomizationEvent(), 4);
    const AttemptPlan success = provider->plan(succeeded, state, Clock::now());
    REQUIRE(success.requests.size() == 1);
    CHECK(success.requests[0].url.target == "/repos/onedr0p/home-ops/deployments/5/statuses");
    CHECK(nlohmann::json::parse(success.requests[0].body)["state"] == "success");
    CHECK_FALSE(success.then.has_value());

    const auto same = batchOf(kustomizationEvent("error", "HealthCheckFailed", "timeout"), 8);
    const AttemptPlan unchanged = provider->plan(same, state, Clock::now());
    REQUIRE(unchanged.decided.has_value());
    CHECK(unchanged.decided->kind == OutcomeKind::delivered);
    CHECK(unchanged.decided->detail.find("unchanged") == 0);
    CHECK(nlohmann::json::parse(*unchanged.writes.at(kKey))["applied"] == 8);

    const auto late = batchOf(kustomizationEvent(), 2);
    const AttemptPlan superseded = provider->plan(late, state, Clock::now());
    REQUIRE(superseded.decided.has_value());
    CHECK(superseded.decided->detail.find("superseded") == 0);
    CHECK(superseded.writes.empty());
}

TEST_CASE("configured URLs and production_environment go into the requests") {
    TargetConfig target = deploymentTarget();
    target.environment = objectTemplate("production");
    target.productionEnvironment = true;
    target.environmentUrl = objectTemplate("https://{name}.example.org");
    target.logUrl = objectTemplate("https://logs.example.org/{namespace}/{name}");
    const auto provider = makeProvider(target);
    const auto batch = batchOf(kustomizationEvent());
    std::vector<HttpRequest> sent;
    runSteps(*provider, batch, {}, [&](const HttpRequest& request) {
        sent.push_back(request);
        return sent.size() == 1 ? std::string("[]") : std::string(R"({"id":1})");
    });
    REQUIRE(sent.size() == 3);
    CHECK(sent[0].url.target.ends_with("&environment=production"));
    CHECK(nlohmann::json::parse(sent[1].body)["production_environment"] == true);
    const auto status = nlohmann::json::parse(sent[2].body);
    CHECK(status["environment_url"] == "https://apps.example.org");
    CHECK(status["log_url"] == "https://logs.example.org/flux-system/apps");
}

TEST_CASE("a create answered without an id is retried; events without a Git revision fail permanently") {
    const auto provider = makeProvider(deploymentTarget());
    const auto batch = batchOf(kustomizationEvent());
    const ProviderState afterCreate = {
        {"github-deployment:response:listed", "[]"},
        {"github-deployment:response:created", R"({"message":"Auto-merged master into topic-branch on deployment."})"}};
    const AttemptPlan plan = provider->plan(batch, afterCreate, Clock::now());
    REQUIRE(plan.decided.has_value());
    CHECK(plan.decided->kind == OutcomeKind::retry);
    CHECK(plan.decided->detail.find("Auto-merged") != std::string::npos);

    FluxEvent oci = kustomizationEvent();
    oci.metadata = {{"revision", "latest@sha256:0c4b4b5a0b0ac1e8a2d9b0cf9b5b1e0f2b0a3f1d2c3b4a5968778695a4b3c2d1"}};
    const BuildResult digest = buildRequest(*provider, batchOf(oci));
    REQUIRE(std::holds_alternative<Outcome>(digest));
    CHECK(std::get<Outcome>(digest).kind == OutcomeKind::permanent);
    CHECK(std::get<Outcome>(digest).detail.find("originRevision") != std::string::npos);
    CHECK(provider->stateKeys(batchOf(oci)).empty());
}

TEST_CASE("GitHub's answers: 404 names the deployments permission, 409 and 422 are permanent, rate limits pause") {
    const auto provider = makeProvider(deploymentTarget());
    const Outcome missing = provider->classify(response(404, R"({"message":"Not Found"})"));
    CHECK(missing.kind == OutcomeKind::permanent);
    CHECK(missing.detail.find("Deployments: write") != std::string::npos);
    CHECK(missing.detail.find("repo_deployment") != std::string::npos);

    const Outcome conflict = provider->classify(response(409, R"({"message":"Conflict merging main into topic."})"));
    CHECK(conflict.kind == OutcomeKind::permanent);
    CHECK(conflict.detail.find("Conflict merging") != std::string::npos);

    const Outcome invalid = provider->classify(response(422, R"({"message":"Validation Failed"})"));
    CHECK(invalid.kind == OutcomeKind::permanent);
    CHECK(invalid.detail.find("Validation Failed") != std::string::npos);

    const Outcome limited = provider->classify(response(403, R"({"message":"API rate limit exceeded"})",
                                                        {{"x-ratelimit-remaining", "0"}, {"Retry-After", "30"}}));
    CHECK(limited.kind == OutcomeKind::retry);
    CHECK(limited.pauseTarget);

    CHECK(provider->classify(response(201, R"({"id":1})")).kind == OutcomeKind::delivered);
    CHECK(provider->classify(response(503)).kind == OutcomeKind::retry);
}

TEST_CASE("as a GitHub App: no token yet is a retry, then the installation token is the bearer") {
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}),
                                                            &EVP_PKEY_free);
    REQUIRE(key);
    BIO* bio = BIO_new(BIO_s_mem());
    REQUIRE(PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1);
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<std::size_t>(length));
    BIO_free(bio);

    TargetConfig target = deploymentTarget();
    target.token.clear();
    target.app = GitHubAppConfig{.appId = 1234, .installationId = 5678, .privateKey = pem};
    const auto provider = makeProvider(target);
    const auto batch = batchOf(kustomizationEvent());
    const BuildResult before = buildRequest(*provider, batch);
    REQUIRE(std::holds_alternative<Outcome>(before));
    CHECK(std::get<Outcome>(before).kind == OutcomeKind::retry);

    const TimePoint now = Clock::now();
    const auto exchange = credentialsRequest(*provider, now);
    REQUIRE(exchange.has_value());
    CHECK(exchange->url.target == "/app/installations/5678/access_tokens");
    REQUIRE(acceptCredentials(*provider,
                              response(201, nlohmann::json{{"token", "ghs_installation"},
                                                           {"expires_at", formatRfc3339(now + std::chrono::hours(1))}}
                                                .dump()),
                              now)
                .kind == OutcomeKind::delivered);
    const BuildResult list = buildRequest(*provider, batch);
    REQUIRE(std::holds_alternative<HttpRequest>(list));
    CHECK(header(std::get<HttpRequest>(list), "Authorization") == "Bearer ghs_installation");

    const Outcome rejected = provider->classify(response(401, R"({"message":"Bad credentials"})"));
    CHECK(rejected.kind == OutcomeKind::retry);
}

}  // namespace fluxrelay
