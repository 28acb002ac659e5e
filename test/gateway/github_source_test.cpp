// Unit tests for the github source: signatures, headers, content types, form bodies, ping, events.
#include "gateway/github_source.hpp"

#include <doctest/doctest.h>

#include <cctype>
#include <map>
#include <string>

#include "core/crypto.hpp"

using namespace fluxrelay;

namespace {

constexpr std::string_view secret = "webhook-secret";
constexpr std::string_view pushBody =
    R"({"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246",)"
    R"("after":"0000000000000000000000000000000000000000","deleted":false,"commits":[{"id":"x","added":[]}],)"
    R"("repository":{"full_name":"octo/repo","default_branch":"main"}})";

std::string lower(std::string_view text) {
    std::string out(text);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string sign256(std::string_view body, std::string_view key = secret) {
    return "sha256=" + toHex(hmac(HashAlgorithm::sha256, key, body));
}

std::string sign1(std::string_view body, std::string_view key = secret) {
    return "sha1=" + toHex(hmac(HashAlgorithm::sha1, key, body));
}

// An HTTP request as the session hands it over: header names looked up case-insensitively.
struct FakeRequest {
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;

    InboundRequest inbound() const {
        return InboundRequest{
            .body = body,
            .header = [this](std::string_view name) -> std::optional<std::string_view> {
                const auto it = headers.find(lower(name));
                if (it == headers.end()) return std::nullopt;
                return std::string_view(it->second);
            },
        };
    }

    FakeRequest& set(std::string_view name, std::string value) {
        headers[lower(name)] = std::move(value);
        return *this;
    }
    FakeRequest& erase(std::string_view name) {
        headers.erase(lower(name));
        return *this;
    }
};

// A delivery as GitHub sends it: JSON body, sha256 signature, event and delivery headers.
FakeRequest delivery(std::string_view event, std::string body) {
    FakeRequest request;
    request.body = std::move(body);
    request.set("Content-Type", "application/json")
        .set("X-GitHub-Event", std::string(event))
        .set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .set("X-Hub-Signature-256", sign256(request.body));
    return request;
}

SourceConfig githubSource() {
    SourceConfig source;
    source.name = "github";
    source.type = SourceType::github;
    source.path = "/github/webhook";
    source.secret = std::string(secret);
    source.events = {"ping", "push"};
    return source;
}

GitHubEvent acceptOk(const SourceConfig& source, const FakeRequest& request) {
    auto result = acceptGitHubRequest(source, request.inbound());
    if (const auto* rejection = std::get_if<Rejection>(&result)) {
        FAIL_CHECK("unexpected rejection " << rejection->status << ": " << rejection->error);
        return {};
    }
    if (std::holds_alternative<GitHubPing>(result)) {
        FAIL_CHECK("unexpected ping");
        return {};
    }
    return std::get<GitHubEvent>(result);
}

Rejection rejected(const SourceConfig& source, const FakeRequest& request) {
    auto result = acceptGitHubRequest(source, request.inbound());
    if (const auto* rejection = std::get_if<Rejection>(&result)) return *rejection;
    FAIL_CHECK("request was not rejected");
    return {};
}

}  // namespace

TEST_CASE("GitHub's published signature example verifies") {
    // From GitHub's "Validating webhook deliveries" page.
    CHECK(verifyGitHubSignature(HashAlgorithm::sha256, "It's a Secret to Everybody",
                                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                                "Hello, World!"));
    CHECK_FALSE(verifyGitHubSignature(HashAlgorithm::sha256, "It's a Secret to Everybody",
                                      "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18",
                                      "Hello, World!"));
    // The algorithm is named by the header's prefix, exactly as GitHub writes it.
    CHECK_FALSE(verifyGitHubSignature(HashAlgorithm::sha256, "It's a Secret to Everybody",
                                      "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                                      "Hello, World!"));
    CHECK_FALSE(verifyGitHubSignature(HashAlgorithm::sha256, "It's a Secret to Everybody",
                                      "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                                      "Hello, World!"));
    CHECK_FALSE(verifyGitHubSignature(HashAlgorithm::sha256, "k", "sha256=zz", "body"));
}

TEST_CASE("a signed push is accepted with its ref and its body byte for byte") {
    const FakeRequest request = delivery("push", std::string(pushBody));
    const GitHubEvent event = acceptOk(githubSource(), request);
    CHECK(event.event == "push");
    CHECK(event.deliveryId == "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    CHECK(event.ref == "refs/heads/main");
    CHECK_FALSE(event.deleted);
    CHECK(event.body == pushBody);
}

TEST_CASE("tag pushes and branch deletions are read as such") {
    GitHubEvent tag = acceptOk(githubSource(), delivery("push", R"({"ref":"refs/tags/v1.2.3","deleted":false})"));
    CHECK(tag.ref == "refs/tags/v1.2.3");
    CHECK_FALSE(tag.deleted);
    GitHubEvent deletion =
        acceptOk(githubSource(), delivery("push", R"({"ref":"refs/heads/feature","deleted":true,"after":"0"})"));
    CHECK(deletion.ref == "refs/heads/feature");
    CHECK(deletion.deleted);
    // Only the top level counts: a nested "ref" or "deleted" is some other object's.
    GitHubEvent nested = acceptOk(
        githubSource(),
        delivery("push",
                 R"({"head_commit":{"ref":"x","deleted":true},"ref":"refs/heads/main","pusher":{"deleted":1}})"));
    CHECK(nested.ref == "refs/heads/main");
    CHECK_FALSE(nested.deleted);
}

TEST_CASE("signatures: missing, wrong, and sha1 only when allowed, all with one answer") {
    const SourceConfig source = githubSource();
    FakeRequest request = delivery("push", std::string(pushBody));

    SUBCASE("missing") { request.erase("X-Hub-Signature-256"); }
    SUBCASE("signed with another secret") { request.set("X-Hub-Signature-256", sign256(pushBody, "other")); }
    SUBCASE("body changed after signing") { request.body += " "; }
    SUBCASE("not hex") { request.set("X-Hub-Signature-256", "sha256=not-hex"); }
    SUBCASE("sha1 without allowSha1") {
        request.erase("X-Hub-Signature-256");
        request.set("X-Hub-Signature", sign1(pushBody));
    }
    const Rejection rejection = rejected(source, request);
    CHECK(rejection.status == 401);
    CHECK(rejection.reason == "signature");
    // Never which part was wrong.
    CHECK(rejection.error == "missing or invalid X-Hub-Signature-256");
}

TEST_CASE("sha1 signatures with allowSha1") {
    SourceConfig source = githubSource();
    source.allowSha1 = true;
    FakeRequest request = delivery("push", std::string(pushBody));
    request.erase("X-Hub-Signature-256");
    request.set("X-Hub-Signature", sign1(pushBody));
    CHECK(acceptOk(source, request).ref == "refs/heads/main");

    request.set("X-Hub-Signature", sign1(pushBody, "other"));
    CHECK(rejected(source, request).status == 401);

    // When both are sent the sha256 one decides, as in GitHub's own libraries.
    request.set("X-Hub-Signature", sign1(pushBody));
    request.set("X-Hub-Signature-256", sign256(pushBody, "other"));
    CHECK(rejected(source, request).status == 401);
}

TEST_CASE("a source without a secret takes unsigned deliveries") {
    SourceConfig source = githubSource();
    source.secret.clear();
    FakeRequest request = delivery("push", std::string(pushBody));
    request.erase("X-Hub-Signature-256");
    CHECK(acceptOk(source, request).ref == "refs/heads/main");
}

TEST_CASE("X-GitHub-Event and X-GitHub-Delivery are required") {
    FakeRequest request = delivery("push", std::string(pushBody));
    SUBCASE("event") {
        request.erase("X-GitHub-Event");
        const Rejection rejection = rejected(githubSource(), request);
        CHECK(rejection.status == 400);
        CHECK(rejection.error == "X-GitHub-Event header is required");
    }
    SUBCASE("delivery") {
        request.erase("X-GitHub-Delivery");
        const Rejection rejection = rejected(githubSource(), request);
        CHECK(rejection.status == 400);
        CHECK(rejection.error == "X-GitHub-Delivery header is required");
    }
    SUBCASE("delivery id that is no id") {
        request.set("X-GitHub-Delivery", std::string(200, 'a'));
        CHECK(rejected(githubSource(), request).status == 400);
        request.set("X-GitHub-Delivery", "a b");
        CHECK(rejected(githubSource(), request).status == 400);
    }
}

TEST_CASE("the signature is checked before anything else is said") {
    FakeRequest request = delivery("push", std::string(pushBody));
    request.erase("X-GitHub-Event").erase("X-GitHub-Delivery").set("Content-Type", "text/plain");
    request.set("X-Hub-Signature-256", sign256(pushBody, "other"));
    CHECK(rejected(githubSource(), request).status == 401);
}

TEST_CASE("content types: JSON with parameters, form bodies, and 415 for the rest") {
    SUBCASE("json with a charset") {
        FakeRequest request = delivery("push", std::string(pushBody));
        request.set("Content-Type", "Application/JSON; charset=utf-8");
        CHECK(acceptOk(githubSource(), request).body == pushBody);
    }
    SUBCASE("unsupported") {
        FakeRequest request = delivery("push", std::string(pushBody));
        request.set("Content-Type", "text/plain");
        const Rejection rejection = rejected(githubSource(), request);
        CHECK(rejection.status == 415);
        CHECK(rejection.reason == "content_type");
        CHECK(rejection.error.find("text/plain") != std::string::npos);
    }
    SUBCASE("missing") {
        FakeRequest request = delivery("push", std::string(pushBody));
        request.erase("Content-Type");
        CHECK(rejected(githubSource(), request).status == 415);
    }
}

TEST_CASE("form bodies: signed as sent, the event is the decoded payload") {
    const std::string json = R"({"ref":"refs/heads/main","deleted":false,"head_commit":{"message":"a+b & c=d 100%"}})";
    // As GitHub encodes it: spaces as '+', reserved bytes escaped.
    const std::string form =
        "payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%2C%22deleted%22%3Afalse%2C%22head_commit%22%3A%7B%22message%"
        "22%3A%22a%2Bb+%26+c%3Dd+100%25%22%7D%7D";
    FakeRequest request = delivery("push", form);
    request.set("Content-Type", "application/x-www-form-urlencoded");
    const GitHubEvent event = acceptOk(githubSource(), request);
    CHECK(event.body == json);
    CHECK(event.ref == "refs/heads/main");

    // A signature over the decoded JSON is not GitHub's.
    request.set("X-Hub-Signature-256", sign256(json));
    CHECK(rejected(githubSource(), request).status == 401);

    FakeRequest noPayload = delivery("push", "other=1&x=%7B%7D");
    noPayload.set("Content-Type", "application/x-www-form-urlencoded");
    const Rejection rejection = rejected(githubSource(), noPayload);
    CHECK(rejection.status == 400);
    CHECK(rejection.error.find("payload") != std::string::npos);
}

TEST_CASE("formField decodes like Go's url.ParseQuery") {
    CHECK(formField("payload=a+b%20c", "payload") == std::optional<std::string>("a b c"));
    CHECK(formField("x=1&payload=%7B%7D&payload=2", "payload") == std::optional<std::string>("{}"));
    CHECK(formField("pay%6Coad=v", "payload") == std::optional<std::string>("v"));
    CHECK(formField("payload", "payload") == std::optional<std::string>(""));
    CHECK_FALSE(formField("x=1", "payload"));
    CHECK_FALSE(formField("payload=%7", "payload"));
    CHECK_FALSE(formField("payload=%zz", "payload"));
    CHECK_FALSE(formField("", "payload"));
}

TEST_CASE("ping is answered after the signature check, whatever events are listed") {
    SourceConfig source = githubSource();
    source.events = {"push"};
    const FakeRequest ping = delivery("ping", R"({"zen":"Keep it logically awesome.","hook_id":1})");
    auto result = acceptGitHubRequest(source, ping.inbound());
    REQUIRE(std::holds_alternative<GitHubPing>(result));
    CHECK(std::get<GitHubPing>(result).deliveryId == "72d3162e-cc78-11e3-81ab-4c9367dc0958");

    FakeRequest unsigned_ = ping;
    unsigned_.set("X-Hub-Signature-256", sign256(ping.body, "other"));
    CHECK(rejected(source, unsigned_).status == 401);
}

TEST_CASE("an event the source does not list is refused, naming it") {
    const Rejection rejection = rejected(githubSource(), delivery("issues", R"({"action":"opened"})"));
    CHECK(rejection.status == 400);
    CHECK(rejection.reason == "event_type");
    CHECK(rejection.error.find("\"issues\"") != std::string::npos);
    CHECK(rejection.error.find("ping, push") != std::string::npos);

    // Names compare case-insensitively, as Flux's Receiver does; no events: every event.
    CHECK(acceptOk(githubSource(), delivery("Push", std::string(pushBody))).event == "Push");
    SourceConfig all = githubSource();
    all.events.clear();
    const GitHubEvent issues = acceptOk(all, delivery("issues", R"({"action":"opened"})"));
    CHECK(issues.event == "issues");
    CHECK(issues.ref.empty());
}

TEST_CASE("bodies that are not a webhook payload") {
    const auto status = [](std::string body, std::string_view event = "push") {
        return rejected(githubSource(), delivery(event, std::move(body)));
    };
    CHECK(status("{").error.find("not valid JSON") != std::string::npos);
    CHECK(status("[1,2]").error == "payload must be a JSON object");
    CHECK(status("\"refs/heads/main\"").error == "payload must be a JSON object");
    CHECK(status(R"({"ref":"refs/heads/main"} x)").status == 400);
    CHECK(status(R"({"deleted":false})").error == "ref is required in a push payload");
    CHECK(status(R"({"ref":1})").error == "ref must be a string");
    CHECK(status(R"({"ref":{"name":"main"}})").error == "ref must be a string");
    CHECK(status(R"({"ref":"refs/heads/main","deleted":"yes"})").error == "deleted must be true or false");
    CHECK(status(std::string(100, '[') + std::string(100, ']')).status == 400);
    CHECK(status("{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}").error.find("nested deeper") !=
          std::string::npos);
    // Invalid UTF-8 could not be stored or forwarded as JSON text.
    CHECK(status("{\"ref\":\"refs/heads/\xff\"}").status == 400);
    for (const std::string_view event : {"push", "issues"}) {
        CHECK(status("not json", event).reason == "bad_json");
    }
}
