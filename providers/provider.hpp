// A target type: turns deliveries into one HTTP request and classifies the response.
// Pure: no sockets. Each provider's class lives in its own .cpp, reached through make_*.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "config/config.hpp"
#include "storage/delivery.hpp"

namespace fluxrelay {

struct HttpRequest {
    std::string method = "POST";
    Url url;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
};

struct HttpResponse {
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    std::optional<std::string_view> header(std::string_view name) const;  // case-insensitive
};

enum class OutcomeKind { delivered, retry, permanent };

// What became of one attempt. retryAfter is set when the peer said when to come back.
struct Outcome {
    OutcomeKind kind = OutcomeKind::delivered;
    std::string detail;  // "HTTP 503: ...", "connect: connection refused", ...
    std::optional<std::chrono::milliseconds> retryAfter;
    // The whole target must wait retryAfter, not just this delivery (a rate limit).
    bool pauseTarget = false;

    static Outcome delivered(std::string detail = {}) { return {OutcomeKind::delivered, std::move(detail), {}}; }
    static Outcome retry(std::string detail, std::optional<std::chrono::milliseconds> after = {}) {
        return {OutcomeKind::retry, std::move(detail), after};
    }
    static Outcome permanent(std::string detail) { return {OutcomeKind::permanent, std::move(detail), {}}; }
};

// Either a request to send, or the reason no request can ever be built (a permanent failure).
using BuildResult = std::variant<HttpRequest, Outcome>;

class Provider {
public:
    virtual ~Provider() = default;

    // How many deliveries one request may carry (Alertmanager takes arrays; most take 1).
    virtual std::size_t maxBatch() const { return 1; }

    virtual BuildResult buildRequest(std::span<const Delivery> batch) const = 0;

    // Every request the batch needs, sent in this order; one for most providers. A kubernetes
    // target patches each listed object: the attempt is delivered once all are, the first that
    // is not decides its outcome, and a retry sends them all again.
    virtual std::vector<BuildResult> buildRequests(std::span<const Delivery> batch) const {
        return {buildRequest(batch)};
    }

    // State a provider keeps between deliveries in storage (e.g. an object's firing alerts):
    // the keys this batch needs, loaded before building; then the values to write once the batch
    // is delivered (nullopt erases). Serialized per target, so read-modify-write is safe.
    using State = std::map<std::string, std::optional<std::string>>;
    virtual std::vector<std::string> stateKeys(std::span<const Delivery> /*batch*/) const { return {}; }
    virtual std::vector<BuildResult> buildRequests(std::span<const Delivery> batch, const State& /*state*/,
                                                   TimePoint /*now*/) const {
        return buildRequests(batch);
    }
    virtual State stateAfterDelivery(std::span<const Delivery> /*batch*/, const State& /*state*/) const { return {}; }

    // Periodic re-sends that keep the target's view current (Alertmanager's firing alerts): how
    // often, which state keys a round reads, and its requests (none: nothing to re-send). Runs
    // between deliveries, serialized with them.
    virtual std::optional<Duration> refreshInterval() const { return std::nullopt; }
    virtual std::vector<std::string> refreshStateKeys() const { return {}; }
    virtual std::vector<BuildResult> buildRefresh(const State& /*state*/, TimePoint /*now*/) const { return {}; }

    // A request the provider needs answered before its next one, such as a GitHub App
    // installation-token exchange; nullopt when its credentials are fresh.
    virtual std::optional<HttpRequest> credentialsRequest(TimePoint /*now*/) { return std::nullopt; }
    // Takes the answer to credentialsRequest(); anything but `delivered` fails the attempt with it.
    virtual Outcome acceptCredentials(const HttpResponse& /*response*/, TimePoint /*now*/) {
        return Outcome::delivered();
    }

    // "The target already has this": when storage holds `value` under `key`, the batch is settled
    // as delivered without a request, and after a delivery the value is remembered. Spares the
    // GitHub API identical commit statuses.
    struct KnownState {
        std::string key;
        std::string value;
    };
    virtual std::optional<KnownState> knownState(std::span<const Delivery> /*batch*/) const { return std::nullopt; }

    // Default: 2xx delivered; 5xx, 408, 429 retry (honouring Retry-After);
    // other statuses permanent.
    // Not const: a provider may drop cached credentials on a 401.
    virtual Outcome classify(const HttpResponse& response);
};

// The one registration table: target type → provider.
std::unique_ptr<Provider> makeProvider(const TargetConfig& target);

// Shared by providers: the response classification and Retry-After parsing (seconds or HTTP date).
Outcome classifyHttpStatus(const HttpResponse& response);
// The same at a given time, which an HTTP-date Retry-After is measured against.
Outcome classifyHttpStatus(const HttpResponse& response, TimePoint now);
std::optional<std::chrono::milliseconds> parseRetryAfter(std::string_view value, TimePoint now);

// Headers every request of a target carries: configured headers, then auth (Bearer or Basic).
void addTargetHeaders(const TargetConfig& target, HttpRequest& request);

}  // namespace fluxrelay
