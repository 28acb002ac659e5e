// Generic target: the request Flux's generic and generic-hmac Providers send, header by header and
// byte for byte.
#include "providers/generic.hpp"
#include "test/providers/plans.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "core/text.hpp"

namespace fluxrelay {
namespace {

// Flux's published generic-hmac test vector: this key over the body below gives this signature.
constexpr std::string_view vectorKey = "7152fed34dd6149a7c75a276c510da27cb6f82b0";
constexpr std::string_view vectorSignature = "sha256=65b018549b1254e7226d1c08f9567ee45bc9de0fc4e7b1a40253f9a018b08be7";
constexpr std::string_view vectorBody =
    R"({"involvedObject":{"kind":"GitRepository","namespace":"gitops-system","name":"webapp"},)"
    R"("severity":"info","timestamp":"2022-09-30T06:40:29Z","message":"message","reason":"reason",)"
    R"("metadata":{"test":"metadata"},"reportingController":"source-controller",)"
    R"("reportingInstance":"source-controller-xyz"})";

TargetConfig genericTarget(std::string hmacKey = {}) {
    const std::string address = "https://n8n.example/webhook/flux?x=1";
    TargetConfig target;
    target.name = "n8n";
    target.type = TargetType::generic;
    target.address = *parseUrl(address);
    target.addressText = address;
    target.hmacKey = std::move(hmacKey);
    return target;
}

FluxEvent vectorEvent() {
    FluxEvent event;
    event.involvedObject.kind = "GitRepository";
    event.involvedObject.namespace_ = "gitops-system";
    event.involvedObject.name = "webapp";
    event.severity = "info";
    event.timestamp = "2022-09-30T06:40:29Z";
    event.message = "message";
    event.reason = "reason";
    event.metadata = {{"test", "metadata"}};
    event.reportingController = "source-controller";
    event.reportingInstance = "source-controller-xyz";
    return event;
}

Delivery delivery(std::variant<FluxEvent, GitHubEvent> payload) {
    Delivery out;
    out.id = 1;
    out.route = "all";
    out.target = "n8n";
    out.event = std::make_shared<const Event>(
        Event{.id = "0123456789abcdef", .source = "flux", .receivedAt = {}, .payload = std::move(payload)});
    return out;
}

HttpRequest build(const Provider& provider, const FluxEvent& event) {
    const std::vector<Delivery> batch{delivery(event)};
    BuildResult result = buildRequest(provider, batch);
    REQUIRE(std::holds_alternative<HttpRequest>(result));
    return std::get<HttpRequest>(result);
}

std::vector<std::string> headerValues(const HttpRequest& request, std::string_view name) {
    std::vector<std::string> values;
    for (const auto& [key, value] : request.headers) {
        if (equalsIgnoreCase(key, name)) values.push_back(value);
    }
    return values;
}

std::string header(const HttpRequest& request, std::string_view name) {
    const auto values = headerValues(request, name);
    REQUIRE(values.size() == 1);
    return values.front();
}

}  // namespace

TEST_CASE("generic-hmac: Flux's test vector, body and signature byte for byte") {
    const auto provider = makeGenericProvider(genericTarget(std::string(vectorKey)));
    CHECK(provider->maxBatch() == 1);
    const HttpRequest request = build(*provider, vectorEvent());
    CHECK(request.method == "POST");
    CHECK(request.url.toString() == "https://n8n.example/webhook/flux?x=1");
    CHECK(request.body == vectorBody);
    CHECK(header(request, "X-Signature") == vectorSignature);
    CHECK(header(request, "Content-Type") == "application/json");
    CHECK(header(request, "gotk-component") == "source-controller");
    // The key only signs; it is sent nowhere.
    CHECK(headerValues(request, "Authorization").empty());
    for (const auto& [name, value] : request.headers) CHECK(value.find(vectorKey) == std::string::npos);
    CHECK(request.headers.size() == 3);
}

TEST_CASE("generic: the same body unsigned") {
    const HttpRequest request = build(*makeGenericProvider(genericTarget()), vectorEvent());
    CHECK(request.body == vectorBody);
    CHECK(headerValues(request, "X-Signature").empty());
    CHECK(header(request, "Content-Type") == "application/json");
}

TEST_CASE("generic: the body is Go's json.Marshal of the Event after the route's metadata") {
    FluxEvent event;
    event.involvedObject = {.kind = "Kustomization",
                            .namespace_ = "flux-system",
                            .name = "apps",
                            .uid = "7d0cdc51-ddcf-4743-b223-83ca5c699632",
                            .apiVersion = "kustomize.toolkit.fluxcd.io/v1",
                            .resourceVersion = "56921",
                            .fieldPath = ""};
    event.severity = "error";
    // Kept as received, written as metav1.Time writes it: UTC, whole seconds.
    event.timestamp = "2024-05-06T09:08:07.654321+02:00";
    event.message = "Health check <failed> & \"timed out\": caf\xc3\xa9 \xe2\x80\xa9 \xf0\x9f\x9a\x80 \xfe\x01";
    event.reason = "HealthCheckFailed";
    // What a route's eventMetadata added is in the event by the time it is planned; keys sorted.
    event.metadata = {{"summary", "prod <eu>"}, {"env", "prod"}, {"Zone", "a"}};
    event.reportingController = "kustomize-controller";
    event.dedupToken = "not sent";
    const HttpRequest request = build(*makeGenericProvider(genericTarget()), event);
    CHECK(request.body ==
          R"({"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"apps",)"
          R"("uid":"7d0cdc51-ddcf-4743-b223-83ca5c699632","apiVersion":"kustomize.toolkit.fluxcd.io/v1",)"
          R"("resourceVersion":"56921"},"severity":"error","timestamp":"2024-05-06T07:08:07Z",)"
          "\"message\":\"Health check \\u003cfailed\\u003e \\u0026 \\\"timed out\\\": caf\xc3\xa9 \\u2029 "
          "\xf0\x9f\x9a\x80 \\ufffd\\u0001\","
          R"("reason":"HealthCheckFailed","metadata":{"Zone":"a","env":"prod","summary":"prod \u003ceu\u003e"},)"
          R"("reportingController":"kustomize-controller"})");

    // Go's omitempty: no metadata and no reportingInstance when empty; the rest always.
    FluxEvent bare;
    bare.involvedObject.kind = "Bucket";
    bare.involvedObject.name = "b";
    bare.severity = "trace";
    const HttpRequest bareRequest = build(*makeGenericProvider(genericTarget()), bare);
    CHECK(bareRequest.body == R"({"involvedObject":{"kind":"Bucket","name":"b"},"severity":"trace","timestamp":null,)"
                              R"("message":"","reason":"","reportingController":""})");
    CHECK(header(bareRequest, "gotk-component") == "");
}

TEST_CASE("generic: configured headers are sent, never in place of the content type or the signature") {
    TargetConfig target = genericTarget(std::string(vectorKey));
    target.headers = {
        {"X-Api-Key", "abc"}, {"content-type", "text/plain"}, {"x-signature", "forged"}, {"Gotk-Component", "relay-a"}};
    const auto provider = makeGenericProvider(target);
    const HttpRequest request = build(*provider, vectorEvent());
    CHECK(header(request, "X-Api-Key") == "abc");
    CHECK(header(request, "Content-Type") == "application/json");
    CHECK(header(request, "X-Signature") == vectorSignature);
    // Flux lets a Provider's header replace gotk-component.
    CHECK(header(request, "gotk-component") == "relay-a");
    CHECK(provider->shadowedHeaders() == std::vector<std::string>{"content-type", "x-signature"});
}

TEST_CASE("generic: a token is sent as a bearer token") {
    TargetConfig target = genericTarget();
    target.token = "hook-token";
    target.headers = {{"Authorization", "Basic eA=="}};
    const HttpRequest request = build(*makeGenericProvider(target), vectorEvent());
    CHECK(header(request, "Authorization") == "Bearer hook-token");
}

TEST_CASE("generic: a GitHub delivery is not a Flux event and fails permanently") {
    const std::vector<Delivery> batch{delivery(GitHubEvent{.event = "push"})};
    const BuildResult result = buildRequest(*makeGenericProvider(genericTarget()), batch);
    REQUIRE(std::holds_alternative<Outcome>(result));
    CHECK((std::get<Outcome>(result).kind == OutcomeKind::permanent));
}

TEST_CASE("generic: answers are classified as on every target") {
    const auto provider = makeGenericProvider(genericTarget());
    CHECK((provider->classify(HttpResponse{.status = 204}).kind == OutcomeKind::delivered));
    CHECK((provider->classify(HttpResponse{.status = 503}).kind == OutcomeKind::retry));
    CHECK((provider->classify(HttpResponse{.status = 401}).kind == OutcomeKind::permanent));
}

}  // namespace fluxrelay
