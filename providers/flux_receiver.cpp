// Flux Receiver target: the GitHub body byte for byte, re-signed with the Receiver's token, so the
// Receiver validates it exactly as if GitHub had sent it.
#include "providers/flux_receiver.hpp"

#include <cassert>
#include <utility>

#include "core/crypto.hpp"
#include "core/text.hpp"

namespace fluxrelay {

namespace {

constexpr std::string_view kHookSegment = "/hook/";

class FluxReceiverProvider final : public Provider {
public:
    explicit FluxReceiverProvider(const TargetConfig& target)
        : Provider(
              target,
              Traits{.maxBatch = 1,  // the Receiver takes one GitHub event per request
                     .refresh = {},
                     .ownHeaders = {"Content-Type", "X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature-256"}}),
          url_(receiverUrl(target_)) {}

    AttemptPlan plan(std::span<const Delivery> batch, const ProviderState& /*state*/,
                     TimePoint /*now*/) const override {
        assert(batch.size() == 1);
        const Delivery& delivery = batch.front();
        const GitHubEvent* github = delivery.event ? delivery.event->github() : nullptr;
        if (github == nullptr) {
            return AttemptPlan::decide(Outcome::permanent("flux-receiver targets take only GitHub events"));
        }

        HttpRequest request;
        request.method = "POST";
        request.url = url_;
        // What the Receiver's GitHub validation reads: the event name against its spec.events, the
        // signature over the body with its token (the token itself is never sent).
        request.headers.emplace_back("Content-Type", "application/json");
        request.headers.emplace_back("X-GitHub-Event", github->event);
        request.headers.emplace_back("X-GitHub-Delivery", github->deliveryId);
        request.headers.emplace_back("X-Hub-Signature-256",
                                     "sha256=" + toHex(hmac(HashAlgorithm::sha256, target_.token, github->body)));
        request.body = github->body;
        addConfiguredHeaders(request);
        return {.requests = {std::move(request)}, .decided = {}, .writes = {}};
    }

    // notification-controller answers 200 once it has annotated every resource; 404 when no Receiver
    // has this path (wrong name, namespace or token, or its token Secret is missing, which clears the
    // path); 400 when the signature or the event is refused;
    // 503 while the Receiver is suspended or not ready; 500 when annotating failed. The shared
    // classification retries 5xx and fails the rest; the details below say what to fix.
    Outcome classify(const HttpResponse& response) override {
        Outcome outcome = classifyHttpStatus(response);
        if (response.status == 404) {
            // Details end up on the status page: the path is shortened, since for some Receiver
            // types knowing it is enough to trigger them.
            const std::size_t hook = url_.target.find(kHookSegment);
            const std::string shown = url_.target.substr(0, hook + kHookSegment.size() + 8) + "...";
            outcome.detail += " (no Receiver has the path " + shown +
                              ": check receiver name and namespace, and that the token is the Receiver's)";
        } else if (response.status == 400) {
            outcome.detail +=
                " (the Receiver refused the request: its token differs from this target's, or its spec.events "
                "do not list the event)";
        } else if (response.status == 503) {
            outcome.detail += " (the Receiver is suspended or not ready yet)";
        }
        return outcome;
    }

private:
    Url url_;
};

}  // namespace

std::unique_ptr<Provider> makeFluxReceiverProvider(const TargetConfig& target) {
    return std::make_unique<FluxReceiverProvider>(target);
}

std::string receiverWebhookPath(std::string_view token, std::string_view name, std::string_view namespace_) {
    std::string material;
    material.reserve(token.size() + name.size() + namespace_.size());
    material.append(token).append(name).append(namespace_);
    return std::string(kHookSegment) + toHex(sha256(material));
}

Url receiverUrl(const TargetConfig& target) {
    Url url = target.address;
    if (url.target.find(kHookSegment) != std::string::npos) return url;
    // The Receiver is found by the request path alone, so the path is joined without a doubled '/'
    // and any query stays at the end.
    const std::size_t queryStart = url.target.find('?');
    std::string path = url.target.substr(0, queryStart);
    const std::string query = queryStart == std::string::npos ? "" : url.target.substr(queryStart);
    while (!path.empty() && path.back() == '/') path.pop_back();
    url.target = path + receiverWebhookPath(target.token, target.receiverName, target.receiverNamespace) + query;
    return url;
}

}  // namespace fluxrelay
