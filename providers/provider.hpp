// A target type: plans the requests that deliver a batch and classifies their responses.
// No sockets: the dispatcher does the I/O. Each provider lives in its own .cpp, reached through make*.
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

// A credential the provider needs before it can plan: an exchange with the peer (a GitHub App's
// installation token) or a file read off the io threads (a rotating service-account token).
struct CredentialsFetch {
    std::optional<HttpRequest> exchange;
    std::string file;  // read when there is no exchange
};

// What came of a CredentialsFetch: the exchange's response, or the file's content or error.
struct CredentialsAnswer {
    std::optional<HttpResponse> response;
    std::string content;
    std::string error;  // the file could not be read
};

// State a provider keeps between deliveries in storage (e.g. an object's firing alerts), by key;
// nullopt: nothing stored, or (in AttemptPlan::writes) erase.
using ProviderState = std::map<std::string, std::optional<std::string>>;

// One attempt, decided before anything is sent: what to send, in order, and what to remember once
// it is delivered. Pure, so the dispatcher runs exactly what `explain` prints.
struct AttemptPlan {
    // The attempt is delivered once every request is; the first that is not decides its outcome,
    // and a retry sends them all again.
    std::vector<HttpRequest> requests;
    // Set when nothing is sent: the outcome decided without a request (a permanent failure, a
    // retry, or delivered because the target already has this state).
    std::optional<Outcome> decided;
    // Written after every request was delivered, or at once when the plan decided "delivered"
    // (e.g. an alert that was not firing still records that its object recovered).
    ProviderState writes;

    static AttemptPlan decide(Outcome outcome) { return {.requests = {}, .decided = std::move(outcome), .writes = {}}; }
};

// How often a provider re-sends what keeps the target's view current (Alertmanager's firing
// alerts), and the state keys a round reads.
struct Refresh {
    Duration interval;
    std::vector<std::string> stateKeys;
};

// A target type. The dispatcher runs each attempt as: credentials (credentialsFetch, then
// acceptCredentials) → the state plan() reads (stateKeys) → plan() → send → classify → write.
class Provider {
public:
    virtual ~Provider() = default;

    // The keys of the stored state plan() reads for this batch.
    virtual std::vector<std::string> stateKeys(std::span<const Delivery> /*batch*/) const { return {}; }

    virtual AttemptPlan plan(std::span<const Delivery> batch, const ProviderState& state, TimePoint now) const = 0;

    // Default: 2xx delivered; 5xx, 408, 429 retry (honouring Retry-After); other statuses
    // permanent. Not const: a provider may drop cached credentials on a 401.
    virtual Outcome classify(const HttpResponse& response);

    // The credential to fetch before planning; nullopt while the one held is fresh.
    virtual std::optional<CredentialsFetch> credentialsFetch(TimePoint /*now*/) { return std::nullopt; }
    // Takes the answer to credentialsFetch(); anything but `delivered` fails the attempt with it.
    virtual Outcome acceptCredentials(const CredentialsAnswer& /*answer*/, TimePoint /*now*/) {
        return Outcome::delivered();
    }

    // One round of periodic re-sends (refresh() says how often); none: nothing to re-send. Runs
    // between deliveries, serialized with them.
    virtual std::vector<HttpRequest> refreshRequests(const ProviderState& /*state*/, TimePoint /*now*/) const {
        return {};
    }

    const TargetConfig& target() const { return target_; }
    // How many deliveries one request may carry (Alertmanager takes arrays; the others take 1).
    std::size_t maxBatch() const { return traits_.maxBatch; }
    const std::optional<Refresh>& refresh() const { return traits_.refresh; }
    // The target's configured headers that this provider sets itself and so never sends.
    std::vector<std::string> shadowedHeaders() const;

protected:
    struct Traits {
        std::size_t maxBatch = 1;
        std::optional<Refresh> refresh;
        // Headers the provider sets (content, signature, auth): a configured header of the same
        // name would contradict them, so it is left out.
        std::vector<std::string> ownHeaders;
    };

    Provider(TargetConfig target, Traits traits);

    // Every request's last step: the configured headers, except the provider's own.
    void addConfiguredHeaders(HttpRequest& request) const;
    // The target's Authorization: Bearer with a token, else Basic with a username and password.
    void addAuthorization(HttpRequest& request) const;
    static bool hasAuthorization(const TargetConfig& target);

    const TargetConfig target_;

private:
    bool ownHeader(std::string_view name) const;

    Traits traits_;
    std::vector<std::pair<std::string, std::string>> sentHeaders_;  // the configured ones not shadowed
};

// The one registration table: target type → provider.
std::unique_ptr<Provider> makeProvider(const TargetConfig& target);

// One warning per configured header a target's provider sets itself, so never sends.
std::vector<std::string> shadowedHeaderWarnings(const Config& config);

// Shared by providers: the response classification and Retry-After parsing (seconds or HTTP date).
Outcome classifyHttpStatus(const HttpResponse& response);
// The same at a given time, which an HTTP-date Retry-After is measured against.
Outcome classifyHttpStatus(const HttpResponse& response, TimePoint now);
std::optional<std::chrono::milliseconds> parseRetryAfter(std::string_view value, TimePoint now);

}  // namespace fluxrelay
