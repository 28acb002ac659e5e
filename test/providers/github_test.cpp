// GitHub commit statuses: revisions, Flux's description and context, request shape, known state,
// rate limits and the GitHub App JWT (verified against the public key).
#include "providers/github.hpp"
#include "test/providers/plans.hpp"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

namespace fluxrelay {
namespace {

using namespace std::chrono;

const std::string kSha = "5394cb7f48332b2de7c17dd8b8384bbc84b7e738";
const std::string kOtherSha = "bd5f1dc5b5be44b16dbb37ab0b8ea0e0fd2b4d07";
const std::string kDigest = "sha256:0c4b4b5a0b0ac1e8a2d9b0cf9b5b1e0f2b0a3f1d2c3b4a5968778695a4b3c2d1";

// Wed, 21 Oct 2015 07:28:00 GMT
const TimePoint referenceNow = sys_days{year{2015} / October / 21} + hours{7} + minutes{28};

FluxEvent kustomizationEvent(std::string severity = "info", std::string reason = "ReconciliationSucceeded") {
    FluxEvent flux;
    flux.involvedObject.kind = "Kustomization";
    flux.involvedObject.namespace_ = "flux-system";
    flux.involvedObject.name = "Apps";
    flux.involvedObject.apiVersion = "kustomize.toolkit.fluxcd.io/v1";
    flux.severity = std::move(severity);
    flux.message = "Applied revision: main@sha1:" + kSha;
    flux.reason = std::move(reason);
    flux.metadata = {{"revision", "main@sha1:" + kSha}};
    flux.reportingController = "kustomize-controller";
    return flux;
}

Delivery makeDelivery(FluxEvent flux) {
    Event event;
    event.id = "0123456789abcdef";
    event.source = "flux";
    event.payload = std::move(flux);
    Delivery delivery;
    delivery.id = 1;
    delivery.route = "statuses";
    delivery.target = "github-status";
    delivery.event = std::make_shared<const Event>(std::move(event));
    return delivery;
}

TargetConfig githubTarget() {
    TargetConfig target;
    target.name = "github-status";
    target.type = TargetType::github;
    target.address = Url{"https", "github.com", 443, "/onedr0p/home-ops"};
    target.addressText = "https://github.com/onedr0p/home-ops";
    target.token = "ghp_secret-token";
    return target;
}

HttpResponse response(int status, std::string body = {},
                      std::vector<std::pair<std::string, std::string>> headers = {}) {
    return HttpResponse{status, std::move(headers), std::move(body)};
}

std::vector<std::string> headerValues(const HttpRequest& request, std::string_view name) {
    std::vector<std::string> values;
    for (const auto& [key, value] : request.headers) {
        if (key == name) values.push_back(value);
    }
    return values;
}

std::string headerValue(const HttpRequest& request, std::string_view name) {
    const auto values = headerValues(request, name);
    REQUIRE(values.size() == 1);
    return values.front();
}

HttpRequest build(const Provider& provider, const Delivery& delivery) {
    BuildResult result = buildRequest(provider, std::span(&delivery, 1));
    if (const auto* outcome = std::get_if<Outcome>(&result)) FAIL("no request: " << outcome->detail);
    return std::get<HttpRequest>(std::move(result));
}

Outcome buildFailure(const Provider& provider, const Delivery& delivery) {
    BuildResult result = buildRequest(provider, std::span(&delivery, 1));
    REQUIRE(std::holds_alternative<Outcome>(result));
    return std::get<Outcome>(std::move(result));
}

std::string base64UrlDecode(std::string_view text) {
    static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    unsigned buffer = 0;
    int bits = 0;
    for (const char c : text) {
        const auto index = alphabet.find(c);
        REQUIRE(index != std::string::npos);
        buffer = (buffer << 6) | static_cast<unsigned>(index);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((buffer >> bits) & 0xFF);
        }
    }
    return out;
}

struct PkeyFree {
    void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

PkeyPtr generateKey(const char* type, size_t bits) {
    PkeyPtr key(bits ? EVP_PKEY_Q_keygen(nullptr, nullptr, type, bits)
                     : EVP_PKEY_Q_keygen(nullptr, nullptr, type, "P-256"));
    REQUIRE(key);
    return key;
}

// PKCS#8 ("PRIVATE KEY"), or PKCS#1 ("RSA PRIVATE KEY") as GitHub hands App keys out.
std::string privatePem(EVP_PKEY* key, bool pkcs1 = false) {
    BIO* bio = BIO_new(BIO_s_mem());
    REQUIRE(bio != nullptr);
    const int written = pkcs1 ? PEM_write_bio_PrivateKey_traditional(bio, key, nullptr, nullptr, 0, nullptr, nullptr)
                              : PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    REQUIRE(written == 1);
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<std::size_t>(length));
    BIO_free(bio);
    return pem;
}

bool verifyRs256(EVP_PKEY* key, std::string_view signingInput, std::string_view signature) {
    EVP_MD_CTX* context = EVP_MD_CTX_new();
    const bool ok =
        EVP_DigestVerifyInit(context, nullptr, EVP_sha256(), nullptr, key) == 1 &&
        EVP_DigestVerify(context, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                         reinterpret_cast<const unsigned char*>(signingInput.data()), signingInput.size()) == 1;
    EVP_MD_CTX_free(context);
    return ok;
}

struct Jwt {
    nlohmann::json header;
    nlohmann::json claims;
    std::string signingInput;
    std::string signature;
};

Jwt splitJwt(const std::string& jwt) {
    const auto first = jwt.find('.');
    const auto second = jwt.find('.', first + 1);
    REQUIRE(first != std::string::npos);
    REQUIRE(second != std::string::npos);
    CHECK(jwt.find('=') == std::string::npos);  // no padding
    return Jwt{nlohmann::json::parse(base64UrlDecode(jwt.substr(0, first))),
               nlohmann::json::parse(base64UrlDecode(jwt.substr(first + 1, second - first - 1))), jwt.substr(0, second),
               base64UrlDecode(jwt.substr(second + 1))};
}

// The key pair is slow to make: one for the whole file.
EVP_PKEY* appKey() {
    static PkeyPtr key = generateKey("RSA", 2048);
    return key.get();
}

TargetConfig appTarget() {
    TargetConfig target = githubTarget();
    target.token.clear();
    target.app = GitHubAppConfig{.appId = 1234, .installationId = 5678, .privateKey = privatePem(appKey(), true)};
    return target;
}

std::string installationTokenBody(std::string_view token, std::string_view expiresAt) {
    return nlohmann::json{{"token", token}, {"expires_at", expiresAt}, {"repository_selection", "all"}}.dump();
}

}  // namespace

TEST_CASE("every revision form Flux writes names its commit") {
    for (const std::string& revision : {"main@sha1:" + kSha, "refs/heads/feature/x@sha1:" + kSha, "sha1:" + kSha,
                                        "main/" + kSha, "feature/branch/" + kSha, kSha, "v1.2.3@sha1:" + kSha}) {
        CAPTURE(revision);
        const CommitRef commit = parseRevision(revision);
        CHECK(commit.error == "");
        CHECK(commit.sha == kSha);
    }
    SUBCASE("upper-case hex is sent lower-case") {
        CHECK(parseRevision("main@sha1:5394CB7F48332B2DE7C17DD8B8384BBC84B7E738").sha == kSha);
    }
}

TEST_CASE("revisions that name no Git commit fail with a reason") {
    for (const std::string& revision : std::vector<std::string>{"main@sha1:5394cb7", "main@sha1:" + kSha + "00",
                                                                "zz94cb7f48332b2de7c17dd8b8384bbc84b7e738", "6.1.0", "",
                                                                "main@md5:" + kSha, "main/"}) {
        CAPTURE(revision);
        const CommitRef commit = parseRevision(revision);
        CHECK_FALSE(commit.ok());
        CHECK(commit.sha == "");
        CHECK(commit.error.find("revision '" + revision + "'") == 0);
    }
    SUBCASE("an OCI digest asks for originRevision") {
        for (const std::string& revision : std::vector<std::string>{kDigest, "latest@" + kDigest, "6.1.0@" + kDigest}) {
            CAPTURE(revision);
            const CommitRef commit = parseRevision(revision);
            CHECK_FALSE(commit.ok());
            CHECK(commit.error.find("not a Git commit") != std::string::npos);
            CHECK(commit.error.find("originRevision") != std::string::npos);
        }
    }
}

TEST_CASE("the commit comes from commit, then originRevision, then revision metadata") {
    FluxEvent event = kustomizationEvent();
    event.metadata = {{"revision", "latest@" + kDigest}, {"originRevision", "main@sha1:" + kSha}};
    CHECK(commitOf(event).sha == kSha);
    event.metadata["commit"] = kOtherSha;
    CHECK(commitOf(event).sha == kOtherSha);
    // Flux's targetAccepts reads an empty commit as none; so does the provider.
    event.metadata["commit"] = "";
    CHECK(commitOf(event).sha == kSha);

    event.metadata = {{"revision", "latest@" + kDigest}};
    const CommitRef digest = commitOf(event);
    CHECK(digest.error.find("metadata revision: revision 'latest@sha256:") == 0);
    CHECK(digest.error.find("originRevision") != std::string::npos);

    event.metadata = {{"summary", "cluster: home"}};
    CHECK(commitOf(event).error == "the event has no commit, originRevision or revision metadata");
}

TEST_CASE("severity maps to the GitHub state as in Flux") {
    CHECK(statusState("info") == "success");
    CHECK(statusState("error") == "failure");
    CHECK_FALSE(statusState("trace").has_value());
    CHECK_FALSE(statusState("").has_value());
}

TEST_CASE("the description is the reason split at camel case, lower-cased, as Flux's splitCamelcase") {
    CHECK(statusDescription("ReconciliationSucceeded") == "reconciliation succeeded");
    CHECK(statusDescription("ReconciliationFailed") == "reconciliation failed");
    CHECK(statusDescription("HealthCheckFailed") == "health check failed");
    CHECK(statusDescription("PDFLoader") == "pdf loader");
    CHECK(statusDescription("BuildFailed2") == "build failed 2");
    CHECK(statusDescription("Progressing") == "progressing");
    CHECK(statusDescription("") == "");
    // Go's runs: "dependency", " ", "not", " ", "ready", joined with spaces.
    CHECK(statusDescription("dependency not ready") == "dependency   not   ready");
    CHECK(splitCamelCase("GitOperationFailed") == std::vector<std::string>{"Git", "Operation", "Failed"});
    CHECK(splitCamelCase("ArtifactFailedV2") == std::vector<std::string>{"Artifact", "Failed", "V", "2"});
    // Invalid UTF-8 is not split, as in Go.
    CHECK(splitCamelCase("Bad\xffReason") == std::vector<std::string>{"Bad\xffReason"});
}

TEST_CASE("the description is cut to GitHub's 140 characters") {
    std::string reason;
    for (int i = 0; i < 30; ++i) reason += "Word";
    const std::string description = statusDescription(reason);
    CHECK(description.size() == 140);
    CHECK(description.starts_with("word word "));
    // Characters, not bytes: 150 two-byte characters become 140.
    std::string wide;
    for (int i = 0; i < 150; ++i) wide += "\xc3\xa9";
    CHECK(statusDescription(wide).size() == 280);
    CHECK(statusDescription(std::string(140, 'x')) == std::string(140, 'x'));
}

TEST_CASE("the context fills kind, name and namespace into the template and lower-cases it") {
    ObjectRef object;
    object.kind = "Kustomization";
    object.name = "Apps";
    object.namespace_ = "Flux-System";
    CHECK(statusContext("{kind}/{name}", object) == "kustomization/apps");
    CHECK(statusContext("{kind}/{namespace}/{name}", object) == "kustomization/flux-system/apps");
    CHECK(statusContext("Flux/{kind}/{name}/0c9c2e41", object) == "flux/kustomization/apps/0c9c2e41");
    CHECK(statusContext("{kind}-{other}{", object) == "kustomization-{other}{");
}

TEST_CASE("owner, repo and API base come from the address") {
    SUBCASE("github.com uses api.github.com") {
        const GitHubRepository repo = gitHubRepository(Url{"https", "github.com", 443, "/onedr0p/home-ops.git"});
        REQUIRE(repo.ok());
        CHECK(repo.owner == "onedr0p");
        CHECK(repo.name == "home-ops");
        CHECK(repo.api.toString() == "https://api.github.com");
    }
    SUBCASE("any other host is GitHub Enterprise under /api/v3, scheme and port kept") {
        const GitHubRepository repo = gitHubRepository(Url{"https", "ghe.example.com", 8443, "/platform/fleet/"});
        REQUIRE(repo.ok());
        CHECK(repo.owner == "platform");
        CHECK(repo.name == "fleet");
        CHECK(repo.api.toString() == "https://ghe.example.com:8443/api/v3");
        CHECK(gitHubRepository(Url{"http", "127.0.0.1", 8080, "/o/r"}).api.toString() ==
              "http://127.0.0.1:8080/api/v3");
    }
    SUBCASE("the path must be exactly owner/repo, as in Flux") {
        for (const std::string& path :
             std::vector<std::string>{"/owner", "/", "/owner/repo/extra", "//repo", "/owner//"}) {
            CAPTURE(path);
            const GitHubRepository repo = gitHubRepository(Url{"https", "github.com", 443, path});
            CHECK_FALSE(repo.ok());
            CHECK(repo.error.find("does not name a repository") != std::string::npos);
        }
    }
}

TEST_CASE("a status request is Flux's POST with GitHub's headers") {
    TargetConfig target = githubTarget();
    target.headers = {{"X-Team", "platform"}, {"Authorization", "Basic hand-written"}};
    const auto provider = makeGitHubProvider(target);
    CHECK(provider->maxBatch() == 1);

    const HttpRequest request = build(*provider, makeDelivery(kustomizationEvent()));
    CHECK(request.method == "POST");
    CHECK(request.url.toString() == "https://api.github.com/repos/onedr0p/home-ops/statuses/" + kSha);
    CHECK(headerValue(request, "Accept") == "application/vnd.github+json, application/json");
    CHECK(headerValue(request, "X-GitHub-Api-Version") == "2022-11-28");
    CHECK(headerValue(request, "Content-Type") == "application/json");
    CHECK(headerValue(request, "X-Team") == "platform");
    // The configured token wins over a hand-written Authorization.
    CHECK(headerValues(request, "Authorization") == std::vector<std::string>{"Bearer ghp_secret-token"});
    CHECK(nlohmann::json::parse(request.body) == nlohmann::json{{"state", "success"},
                                                                {"context", "kustomization/apps"},
                                                                {"description", "reconciliation succeeded"}});

    SUBCASE("an error is a failure") {
        const HttpRequest failed = build(*provider, makeDelivery(kustomizationEvent("error", "HealthCheckFailed")));
        CHECK(nlohmann::json::parse(failed.body) == nlohmann::json{{"state", "failure"},
                                                                   {"context", "kustomization/apps"},
                                                                   {"description", "health check failed"}});
    }
    SUBCASE("GitHub Enterprise") {
        target.address = Url{"https", "ghe.example.com", 443, "/platform/fleet"};
        const HttpRequest ghe = build(*makeGitHubProvider(target), makeDelivery(kustomizationEvent()));
        CHECK(ghe.url.toString() == "https://ghe.example.com/api/v3/repos/platform/fleet/statuses/" + kSha);
    }
}

TEST_CASE("deliveries no status can be made of fail permanently with the reason") {
    const auto provider = makeGitHubProvider(githubTarget());
    SUBCASE("OCI digest") {
        FluxEvent event = kustomizationEvent();
        event.metadata = {{"revision", "latest@" + kDigest}};
        const Outcome outcome = buildFailure(*provider, makeDelivery(event));
        CHECK((outcome.kind == OutcomeKind::permanent));
        CHECK(outcome.detail.find("originRevision") != std::string::npos);
        CHECK(provider->stateKeys(std::vector{makeDelivery(event)}).empty());
    }
    SUBCASE("trace severity") {
        const Outcome outcome = buildFailure(*provider, makeDelivery(kustomizationEvent("trace")));
        CHECK((outcome.kind == OutcomeKind::permanent));
        CHECK(outcome.detail.find("severity 'trace'") == 0);
    }
    SUBCASE("a GitHub webhook event") {
        Delivery delivery = makeDelivery(kustomizationEvent());
        Event event = *delivery.event;
        event.payload = GitHubEvent{.event = "push"};
        delivery.event = std::make_shared<const Event>(event);
        CHECK(buildFailure(*provider, delivery).detail == "github targets take only Flux events");
    }
    SUBCASE("an address without owner/repo") {
        TargetConfig target = githubTarget();
        target.address.target = "/onedr0p/home-ops/tree/main";
        const Outcome outcome = buildFailure(*makeGitHubProvider(target), makeDelivery(kustomizationEvent()));
        CHECK((outcome.kind == OutcomeKind::permanent));
        CHECK(outcome.detail.find("does not name a repository") != std::string::npos);
    }
}

Delivery withId(Delivery delivery, std::uint64_t id) {
    delivery.id = id;
    return delivery;
}

TEST_CASE("the known state is the last (state, description) per repository, commit and context") {
    const auto provider = makeGitHubProvider(githubTarget());
    const std::vector succeeded{withId(makeDelivery(kustomizationEvent()), 1)};
    const auto keys = provider->stateKeys(succeeded);
    REQUIRE(keys.size() == 1);
    CHECK(keys[0] == "github-status:github-status:onedr0p/home-ops:" + kSha + ":kustomization/apps");
    const AttemptPlan first = provider->plan(succeeded, {}, Clock::now());
    CHECK(first.requests.size() == 1);
    CHECK(first.writes ==
          ProviderState{{keys[0], R"({"applied":1,"description":"reconciliation succeeded","state":"success"})"}});

    // The same status again is settled without a request; what it came from is remembered.
    const std::vector succeededAgain{withId(makeDelivery(kustomizationEvent()), 2)};
    const AttemptPlan again = provider->plan(succeededAgain, first.writes, Clock::now());
    CHECK(again.requests.empty());
    REQUIRE(again.decided.has_value());
    CHECK((again.decided->kind == OutcomeKind::delivered));
    CHECK(again.writes ==
          ProviderState{{keys[0], R"({"applied":2,"description":"reconciliation succeeded","state":"success"})"}});

    const std::vector failed{withId(makeDelivery(kustomizationEvent("error", "HealthCheckFailed")), 3)};
    CHECK(provider->stateKeys(failed) == keys);
    const AttemptPlan changed = provider->plan(failed, again.writes, Clock::now());
    CHECK(changed.requests.size() == 1);
    CHECK(changed.writes ==
          ProviderState{{keys[0], R"({"applied":3,"description":"health check failed","state":"failure"})"}});
}

TEST_CASE("a status older than the one the commit has is not sent: the commit keeps the newer one") {
    const auto provider = makeGitHubProvider(githubTarget());
    const std::vector failed{withId(makeDelivery(kustomizationEvent("error", "HealthCheckFailed")), 4)};
    const std::vector succeeded{withId(makeDelivery(kustomizationEvent()), 5)};
    // The failure was retried (or sent by the other replica) after the success went out.
    const ProviderState afterSuccess = stateAfterDelivery(*provider, succeeded, {});
    const AttemptPlan late = provider->plan(failed, afterSuccess, Clock::now());
    CHECK(late.requests.empty());
    REQUIRE(late.decided.has_value());
    CHECK((late.decided->kind == OutcomeKind::delivered));
    CHECK(late.decided->detail.find("superseded") != std::string::npos);
    CHECK(late.writes.empty());
}

TEST_CASE("a status remembered by an earlier release still counts as the known one") {
    const auto provider = makeGitHubProvider(githubTarget());
    const std::vector succeeded{withId(makeDelivery(kustomizationEvent()), 1)};
    const auto keys = provider->stateKeys(succeeded);
    const AttemptPlan plan = provider->plan(succeeded, {{keys[0], "success\nreconciliation succeeded"}}, Clock::now());
    CHECK(plan.requests.empty());
    REQUIRE(plan.decided.has_value());
    CHECK(plan.decided->detail.find("unchanged") != std::string::npos);
}

TEST_CASE("token targets need no credentials request") {
    const auto provider = makeGitHubProvider(githubTarget());
    CHECK_FALSE(credentialsRequest(*provider, Clock::now()).has_value());
}

TEST_CASE("GitHub's answers to a status post") {
    SUBCASE("201 is delivered") {
        CHECK((classifyGitHubResponse(response(201, R"({"state":"success"})"), referenceNow).kind ==
               OutcomeKind::delivered));
    }
    SUBCASE("404 is permanent with a hint about the token and the repository") {
        const Outcome outcome = classifyGitHubResponse(response(404, R"({"message":"Not Found"})"), referenceNow);
        CHECK((outcome.kind == OutcomeKind::permanent));
        CHECK(outcome.detail.find("HTTP 404: {\"message\":\"Not Found\"}") == 0);
        CHECK(outcome.detail.find("check the address") != std::string::npos);
        CHECK(outcome.detail.find("Commit statuses: write") != std::string::npos);
    }
    SUBCASE("422 is permanent") {
        const Outcome outcome = classifyGitHubResponse(
            response(
                422,
                R"({"message":"Validation Failed","errors":[{"message":"This SHA and context has reached the maximum number of statuses."}]})"),
            referenceNow);
        CHECK((outcome.kind == OutcomeKind::permanent));
        CHECK(outcome.detail.find("maximum number of statuses") != std::string::npos);
    }
    SUBCASE("401 with a token and 403 without a rate limit are permanent") {
        CHECK((classifyGitHubResponse(response(401, R"({"message":"Bad credentials"})"), referenceNow).kind ==
               OutcomeKind::permanent));
        const HttpResponse forbidden =
            response(403, R"({"message":"Resource not accessible by personal access token"})",
                     {{"x-ratelimit-remaining", "4999"}, {"x-ratelimit-reset", "1445412480"}});
        const Outcome outcome = classifyGitHubResponse(forbidden, referenceNow);
        CHECK((outcome.kind == OutcomeKind::permanent));
        CHECK_FALSE(outcome.pauseTarget);
    }
    SUBCASE("5xx retries without pausing the target") {
        const Outcome outcome = classifyGitHubResponse(response(502), referenceNow);
        CHECK((outcome.kind == OutcomeKind::retry));
        CHECK_FALSE(outcome.pauseTarget);
    }
}

TEST_CASE("rate limits pause the whole target until GitHub says") {
    const auto epoch = duration_cast<seconds>(referenceNow.time_since_epoch()).count();
    const auto paused = [](const Outcome& outcome, milliseconds wait) {
        CHECK((outcome.kind == OutcomeKind::retry));
        CHECK(outcome.pauseTarget);
        REQUIRE(outcome.retryAfter.has_value());
        CHECK(outcome.retryAfter->count() == wait.count());
    };
    SUBCASE("Retry-After on 429 and 403") {
        paused(classifyGitHubResponse(response(429, "", {{"Retry-After", "30"}}), referenceNow), seconds(30));
        paused(classifyGitHubResponse(
                   response(403, R"({"message":"You have exceeded a secondary rate limit."})", {{"retry-after", "90"}}),
                   referenceNow),
               seconds(90));
    }
    SUBCASE("primary limit: x-ratelimit-remaining 0 until x-ratelimit-reset") {
        const HttpResponse limited = response(403, R"({"message":"API rate limit exceeded for installation ID 5678."})",
                                              {{"x-ratelimit-limit", "5000"},
                                               {"x-ratelimit-remaining", "0"},
                                               {"x-ratelimit-reset", std::to_string(epoch + 42)}});
        const Outcome outcome = classifyGitHubResponse(limited, referenceNow);
        paused(outcome, seconds(42));
        CHECK(outcome.detail.find("HTTP 403: ") == 0);
        CHECK(outcome.detail.find("rate limited, the target waits 42s") != std::string::npos);
        paused(
            classifyGitHubResponse(
                response(429, "", {{"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", std::to_string(epoch + 3)}}),
                referenceNow),
            seconds(3));
    }
    SUBCASE("Retry-After wins over the reset") {
        paused(classifyGitHubResponse(response(403, "",
                                               {{"Retry-After", "5"},
                                                {"x-ratelimit-remaining", "0"},
                                                {"x-ratelimit-reset", std::to_string(epoch + 600)}}),
                                      referenceNow),
               seconds(5));
    }
    SUBCASE("a reset already past still waits a second; one too far waits at most an hour") {
        paused(
            classifyGitHubResponse(
                response(403, "", {{"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", std::to_string(epoch - 10)}}),
                referenceNow),
            seconds(1));
        paused(classifyGitHubResponse(
                   response(403, "",
                            {{"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", std::to_string(epoch + 86400)}}),
                   referenceNow),
               hours(1));
    }
    SUBCASE("a secondary limit without headers waits a minute") {
        paused(
            classifyGitHubResponse(
                response(
                    403,
                    R"({"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."})"),
                referenceNow),
            seconds(60));
        paused(classifyGitHubResponse(response(429), referenceNow), seconds(60));
        paused(classifyGitHubResponse(response(403, "", {{"x-ratelimit-remaining", "0"}}), referenceNow), seconds(60));
    }
    SUBCASE("an unreadable reset falls back to a minute") {
        paused(classifyGitHubResponse(
                   response(403, "", {{"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", "soon"}}), referenceNow),
               seconds(60));
    }
}

TEST_CASE("the App JWT is RS256 with GitHub's claims and verifies with the public key") {
    const TimePoint now = sys_seconds{seconds{1'700'000'000}};
    for (const bool pkcs1 : {true, false}) {
        CAPTURE(pkcs1);
        const auto jwt = makeAppJwt(1234, privatePem(appKey(), pkcs1), now);
        REQUIRE(jwt.has_value());
        const Jwt parts = splitJwt(*jwt);
        CHECK(parts.header == nlohmann::json{{"alg", "RS256"}, {"typ", "JWT"}});
        CHECK(parts.claims ==
              nlohmann::json{{"iat", 1'700'000'000 - 60}, {"exp", 1'700'000'000 + 540}, {"iss", "1234"}});
        CHECK(parts.signature.size() == 256);
        CHECK(verifyRs256(appKey(), parts.signingInput, parts.signature));
        // A signature over anything else, or by another key, does not verify.
        CHECK_FALSE(verifyRs256(appKey(), parts.signingInput + "x", parts.signature));
    }
    const PkeyPtr other = generateKey("RSA", 2048);
    const Jwt parts = splitJwt(*makeAppJwt(1, privatePem(appKey()), now));
    CHECK_FALSE(verifyRs256(other.get(), parts.signingInput, parts.signature));
}

TEST_CASE("keys that cannot sign an RS256 JWT are refused") {
    const TimePoint now = Clock::now();
    CHECK_FALSE(makeAppJwt(1, "", now).has_value());
    CHECK_FALSE(makeAppJwt(1, "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n", now));
    const PkeyPtr ec = generateKey("EC", 0);
    CHECK_FALSE(makeAppJwt(1, privatePem(ec.get()), now).has_value());

    TargetConfig target = appTarget();
    target.app->privateKey = privatePem(ec.get());
    const auto provider = makeGitHubProvider(target);
    CHECK_FALSE(credentialsRequest(*provider, now).has_value());
    const Outcome outcome = buildFailure(*provider, makeDelivery(kustomizationEvent()));
    CHECK((outcome.kind == OutcomeKind::permanent));
    CHECK(outcome.detail.find("not a usable RSA private key") != std::string::npos);
}

TEST_CASE("base64url has no padding and the URL-safe alphabet") {
    CHECK(base64UrlEncode("") == "");
    CHECK(base64UrlEncode("f") == "Zg");
    CHECK(base64UrlEncode("fo") == "Zm8");
    CHECK(base64UrlEncode("foo") == "Zm9v");
    CHECK(base64UrlEncode("\xfb\xff\xfe") == "-__-");
}

TEST_CASE("a GitHub App exchanges its JWT for an installation token and caches it") {
    const auto provider = makeGitHubProvider(appTarget());
    const TimePoint now = Clock::now();

    const auto exchange = credentialsRequest(*provider, now);
    REQUIRE(exchange.has_value());
    CHECK(exchange->method == "POST");
    CHECK(exchange->url.toString() == "https://api.github.com/app/installations/5678/access_tokens");
    CHECK(headerValue(*exchange, "Accept") == "application/vnd.github+json, application/json");
    CHECK(headerValue(*exchange, "X-GitHub-Api-Version") == "2022-11-28");
    const std::string authorization = headerValue(*exchange, "Authorization");
    REQUIRE(authorization.starts_with("Bearer "));
    const Jwt jwt = splitJwt(authorization.substr(7));
    CHECK(verifyRs256(appKey(), jwt.signingInput, jwt.signature));
    CHECK(jwt.claims["iss"] == "1234");

    const std::string expiresAt = formatRfc3339(now + hours(1));
    const Outcome accepted =
        acceptCredentials(*provider, response(201, installationTokenBody("ghs_installation", expiresAt)), now);
    CHECK((accepted.kind == OutcomeKind::delivered));
    CHECK_FALSE(credentialsRequest(*provider, now).has_value());

    const HttpRequest status = build(*provider, makeDelivery(kustomizationEvent()));
    CHECK(headerValues(status, "Authorization") == std::vector<std::string>{"Bearer ghs_installation"});

    SUBCASE("renewed five minutes before it expires") {
        CHECK_FALSE(credentialsRequest(*provider, now + minutes(54)).has_value());
        CHECK(credentialsRequest(*provider, now + minutes(56)).has_value());
    }
    SUBCASE("a 401 drops the token and retries with a new one") {
        const Outcome outcome = provider->classify(response(401, R"({"message":"Bad credentials"})"));
        CHECK((outcome.kind == OutcomeKind::retry));
        CHECK(outcome.detail.find("ghs_installation") == std::string::npos);
        CHECK(credentialsRequest(*provider, now).has_value());
    }
    SUBCASE("other answers are classified as for tokens") {
        CHECK((provider->classify(response(201)).kind == OutcomeKind::delivered));
        CHECK(provider->classify(response(429)).pauseTarget);
        CHECK_FALSE(credentialsRequest(*provider, now).has_value());
    }
}

TEST_CASE("failed token exchanges say why and never show the token") {
    const auto provider = makeGitHubProvider(appTarget());
    const TimePoint now = Clock::now();
    REQUIRE(credentialsRequest(*provider, now).has_value());

    SUBCASE("a 2xx without a usable token retries, without quoting the body") {
        for (const std::string& body :
             {std::string("not json"), std::string(R"({"token":"ghs_leak"})"),
              installationTokenBody("ghs_leak", "tomorrow"), installationTokenBody("", "2030-01-01T00:00:00Z")}) {
            CAPTURE(body);
            const Outcome outcome = acceptCredentials(*provider, response(201, body), now);
            CHECK((outcome.kind == OutcomeKind::retry));
            CHECK(outcome.detail.find("ghs_leak") == std::string::npos);
            CHECK(outcome.detail.find("GitHub App token exchange: HTTP 201") == 0);
        }
        CHECK(credentialsRequest(*provider, now).has_value());
    }
    SUBCASE("401: the JWT was rejected") {
        const Outcome outcome = acceptCredentials(
            *provider, response(401, R"({"message":"'Expiration time' claim ('exp') is too far in the future"})"), now);
        CHECK((outcome.kind == OutcomeKind::permanent));
        CHECK(outcome.detail.find("GitHub App token exchange: HTTP 401") == 0);
        CHECK(outcome.detail.find("check appID, the private key") != std::string::npos);
    }
    SUBCASE("404: no such installation") {
        const Outcome outcome = acceptCredentials(*provider, response(404, R"({"message":"Not Found"})"), now);
        CHECK((outcome.kind == OutcomeKind::permanent));
        CHECK(outcome.detail.find("installation 5678 of App 1234 not found") != std::string::npos);
    }
    SUBCASE("5xx retries, rate limits pause") {
        CHECK((acceptCredentials(*provider, response(503), now).kind == OutcomeKind::retry));
        const Outcome limited = acceptCredentials(*provider, response(429, "", {{"Retry-After", "7"}}), now);
        CHECK((limited.kind == OutcomeKind::retry));
        CHECK(limited.pauseTarget);
        CHECK(limited.retryAfter == milliseconds(7000));
    }
    SUBCASE("no status goes out without a token") {
        CHECK((buildFailure(*provider, makeDelivery(kustomizationEvent())).kind == OutcomeKind::retry));
    }
}

}  // namespace fluxrelay
