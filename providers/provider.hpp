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
#include "providers/credentials.hpp"
#include "providers/exchange.hpp"
#include "storage/delivery.hpp"

namespace fluxrelay {

// State a provider keeps between deliveries in storage (e.g. an object's firing alerts), by key;
// nullopt: nothing stored, or (in AttemptPlan::writes) erase.
using ProviderState = std::map<std::string, std::optional<std::string>>;

// An attempt's step that needs what the peer answered to the one before (a created object's id).
struct NextStep {
    // The key under which the step's last response body joins the state the next plan() reads;
    // empty: the step sends nothing, and the next plan() reads only its writes. Never stored.
    std::string responseAs;
    // The body `explain` answers in the peer's place, since it sends nothing.
    std::string example;
};

// The steps one attempt may take at most: a plan that keeps asking for another is a provider bug.
inline constexpr int kMaxAttemptSteps = 4;

// One step of an attempt, decided before anything is sent: what to send, in order, and what to
// remember once it is delivered. Pure, so the dispatcher runs exactly what `explain` prints.
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
    // Set: once this step is delivered and its writes are stored, plan() runs again on the state
    // with them (and the response, see NextStep), up to kMaxAttemptSteps steps. The leases taken on
    // stateKeys() cover every step, so each writes only those keys.
    std::optional<NextStep> then;

    static AttemptPlan decide(Outcome outcome) {
        return {.requests = {}, .decided = std::move(outcome), .writes = {}, .then = {}};
    }
};

// Readies the state for the step after `step`: its writes, and the last response's body under the
// key it names. false: the attempt ends with `step`.
bool advanceAttempt(const AttemptPlan& step, std::string lastResponseBody, ProviderState& state);

// How often a provider re-sends what keeps the target's view current (Alertmanager's firing
// alerts), and the state keys a round reads.
struct Refresh {
    Duration interval;
    std::vector<std::string> stateKeys;
};

// A target type. The dispatcher runs each attempt as: credentials (credentials()->fetch, then
// accept) → the state plan() reads (stateKeys) → plan() → send → classify → write, and again from
// plan() for as long as a step asks for another (AttemptPlan::then).
class Provider {
public:
    virtual ~Provider() = default;

    // The keys of the stored state plan() reads for this batch.
    virtual std::vector<std::string> stateKeys(std::span<const Delivery> /*batch*/) const { return {}; }

    virtual AttemptPlan plan(std::span<const Delivery> batch, const ProviderState& state, TimePoint now) const = 0;

    // Default: 2xx delivered; 5xx, 408, 429 retry (honouring Retry-After); other statuses
    // permanent. Not const: a provider may drop its credential on a 401.
    virtual Outcome classify(const HttpResponse& response);

    // One round of periodic re-sends (refresh() says how often); none: nothing to re-send. Runs
    // between deliveries, serialized with them.
    virtual std::vector<HttpRequest> refreshRequests(const ProviderState& /*state*/, TimePoint /*now*/) const {
        return {};
    }

    // The credential to renew before planning; null when the target's credentials are static.
    Credentials* credentials() const { return credentials_; }
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
    Provider(const Provider&) = delete;  // credentials() may point into the provider itself
    Provider& operator=(const Provider&) = delete;

    // A provider whose credential must be renewed names it once, in its constructor.
    void renewsCredentials(Credentials& credentials) { credentials_ = &credentials; }

    // Every request's last step: the configured headers, except the provider's own.
    void addConfiguredHeaders(HttpRequest& request) const;
    const std::vector<std::pair<std::string, std::string>>& configuredHeaders() const { return sentHeaders_; }
    // The target's Authorization: Bearer with a token, else Basic with a username and password.
    void addAuthorization(HttpRequest& request) const;
    static bool hasAuthorization(const TargetConfig& target);

    const TargetConfig target_;

private:
    bool ownHeader(std::string_view name) const;

    Traits traits_;
    std::vector<std::pair<std::string, std::string>> sentHeaders_;  // the configured ones not shadowed
    Credentials* credentials_ = nullptr;
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
