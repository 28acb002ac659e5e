// Flux Receiver target: the webhook path Flux computes, the forwarded request, the classification.
#include "providers/flux_receiver.hpp"
#include "test/providers/plans.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "core/crypto.hpp"

namespace fluxrelay {
namespace {

constexpr std::string_view token = "receiver-token";
// printf '%s' "receiver-tokengithub-webhookflux-system" | sha256sum
constexpr std::string_view expectedDigest = "36969ae2dc09837df2e2ab3bb76fea721436825dcba0fd7690452425737b4dfe";
// The body of a push, with a byte no re-serialisation would keep (the escaped slash).
constexpr std::string_view pushBody = "{\"ref\":\"refs/heads/main\",\"compare\":\"https:\\/\\/x\" }";

TargetConfig receiverTarget(std::string address = "http://webhook-receiver.flux-system.svc") {
    TargetConfig target;
    target.name = "reconcile";
    target.type = TargetType::fluxReceiver;
    target.address = *parseUrl(address);
    target.addressText = address;
    target.token = std::string(token);
    target.receiverName = "github-webhook";
    target.receiverNamespace = "flux-system";
    return target;
}

Delivery pushDelivery(std::string body = std::string(pushBody)) {
    GitHubEvent github{.event = "push",
                       .deliveryId = "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                       .ref = "refs/heads/main",
                       .deleted = false,
                       .body = std::move(body)};
    Event event{.id = "0123456789abcdef", .source = "github", .receivedAt = {}, .payload = std::move(github)};
    Delivery delivery;
    delivery.id = 1;
    delivery.route = "reconcile-on-push";
    delivery.target = "reconcile";
    delivery.event = std::make_shared<const Event>(std::move(event));
    return delivery;
}

HttpRequest build(const Provider& provider, const Delivery& delivery) {
    const std::vector<Delivery> batch{delivery};
    BuildResult result = buildRequest(provider, batch);
    REQUIRE(std::holds_alternative<HttpRequest>(result));
    return std::get<HttpRequest>(result);
}

std::vector<std::string> headerValues(const HttpRequest& request, std::string_view name) {
    std::vector<std::string> values;
    for (const auto& [key, value] : request.headers) {
        if (key == name) values.push_back(value);
    }
    return values;
}

std::string header(const HttpRequest& request, std::string_view name) {
    const auto values = headerValues(request, name);
    REQUIRE(values.size() == 1);
    return values.front();
}

}  // namespace

TEST_CASE("the webhook path is Flux's: /hook/ + sha256(token + name + namespace)") {
    CHECK(receiverWebhookPath(token, "github-webhook", "flux-system") == "/hook/" + std::string(expectedDigest));
    CHECK(receiverWebhookPath("", "", "") == "/hook/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("the URL: address + webhook path, unless the address already has /hook/") {
    CHECK(receiverUrl(receiverTarget()).toString() ==
          "http://webhook-receiver.flux-system.svc/hook/" + std::string(expectedDigest));
    // No doubled slash: the Receiver is found by the exact request path.
    CHECK(receiverUrl(receiverTarget("http://webhook-receiver.flux-system.svc/")).target ==
          "/hook/" + std::string(expectedDigest));
    CHECK(receiverUrl(receiverTarget("https://flux.example.org/prefix/")).target ==
          "/prefix/hook/" + std::string(expectedDigest));
    const std::string given = "https://flux.example.org/hook/0123abcd";
    CHECK(receiverUrl(receiverTarget(given)).toString() == given);
}

TEST_CASE("the request: the body byte for byte, GitHub's headers, a fresh signature with the receiver token") {
    const auto provider = makeFluxReceiverProvider(receiverTarget());
    CHECK(provider->maxBatch() == 1);
    const HttpRequest request = build(*provider, pushDelivery());
    CHECK(request.method == "POST");
    CHECK(request.url.toString() == "http://webhook-receiver.flux-system.svc/hook/" + std::string(expectedDigest));
    CHECK(request.body == pushBody);
    CHECK(header(request, "Content-Type") == "application/json");
    CHECK(header(request, "X-GitHub-Event") == "push");
    CHECK(header(request, "X-GitHub-Delivery") == "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    // printf '%s' '{"ref":"refs/heads/main"}' | openssl dgst -sha256 -hmac receiver-token
    const HttpRequest small = build(*provider, pushDelivery(R"({"ref":"refs/heads/main"})"));
    CHECK(header(small, "X-Hub-Signature-256") ==
          "sha256=37950b22add1d157ec2ebec812884130ac4afc69a5ce352252f62b06ebdf32fe");
    CHECK(header(request, "X-Hub-Signature-256") == "sha256=" + toHex(hmac(HashAlgorithm::sha256, token, pushBody)));
    // The token only keys the signature; it is never sent.
    CHECK(headerValues(request, "Authorization").empty());
}

TEST_CASE("configured headers are sent, but never in place of the ones the Receiver checks") {
    TargetConfig target = receiverTarget();
    target.headers = {{"X-Team", "platform"}, {"x-github-event", "ping"}, {"Content-Type", "text/plain"}};
    const HttpRequest request = build(*makeFluxReceiverProvider(target), pushDelivery());
    CHECK(header(request, "X-Team") == "platform");
    CHECK(header(request, "X-GitHub-Event") == "push");
    CHECK(header(request, "Content-Type") == "application/json");
    CHECK(headerValues(request, "x-github-event").empty());
}

TEST_CASE("a Flux event cannot be forwarded to a Receiver") {
    Delivery delivery = pushDelivery();
    delivery.event =
        std::make_shared<const Event>(Event{.id = "x", .source = "flux", .receivedAt = {}, .payload = FluxEvent{}});
    const std::vector<Delivery> batch{delivery};
    const BuildResult result = buildRequest(*makeFluxReceiverProvider(receiverTarget()), batch);
    REQUIRE(std::holds_alternative<Outcome>(result));
    CHECK((std::get<Outcome>(result).kind == OutcomeKind::permanent));
}

TEST_CASE("classification of notification-controller's answers") {
    const auto provider = makeFluxReceiverProvider(receiverTarget());
    const auto classify = [&](int status) { return provider->classify(HttpResponse{.status = status}); };
    CHECK((classify(200).kind == OutcomeKind::delivered));
    // Suspended or not ready yet, or annotating failed: it may work later.
    CHECK((classify(503).kind == OutcomeKind::retry));
    CHECK(classify(503).detail.find("not ready") != std::string::npos);
    CHECK((classify(500).kind == OutcomeKind::retry));
    // No Receiver at this path, or signature/event refused: a configuration to fix, not to retry.
    const Outcome missing = classify(404);
    CHECK((missing.kind == OutcomeKind::permanent));
    // The path, shortened: for some Receiver types it is all it takes to trigger them.
    CHECK(missing.detail.find("/hook/" + std::string(expectedDigest.substr(0, 8)) + "...") != std::string::npos);
    CHECK(missing.detail.find(std::string(expectedDigest)) == std::string::npos);
    const Outcome refused = classify(400);
    CHECK((refused.kind == OutcomeKind::permanent));
    CHECK(refused.detail.find("token") != std::string::npos);
    // Retry-After is honoured, as for every target.
    const Outcome later = provider->classify(HttpResponse{.status = 503, .headers = {{"Retry-After", "7"}}});
    REQUIRE(later.retryAfter);
    CHECK(later.retryAfter->count() == 7000);
}

}  // namespace fluxrelay
