// Test helpers over Provider::plan: a plan's requests, or the outcome it decided, as one value.
#pragma once

#include <span>
#include <variant>
#include <vector>

#include "providers/provider.hpp"

namespace fluxrelay {

using BuildResult = std::variant<HttpRequest, Outcome>;

// Every request of the plan, or its decided outcome alone.
inline std::vector<BuildResult> buildRequests(const Provider& provider, std::span<const Delivery> batch,
                                              const ProviderState& state = {}, TimePoint now = Clock::now()) {
    AttemptPlan plan = provider.plan(batch, state, now);
    if (plan.decided) return {std::move(*plan.decided)};
    return {plan.requests.begin(), plan.requests.end()};
}

// The first request of the plan, or its decided outcome.
inline BuildResult buildRequest(const Provider& provider, std::span<const Delivery> batch,
                                const ProviderState& state = {}, TimePoint now = Clock::now()) {
    return buildRequests(provider, batch, state, now).front();
}

// The state once the plan's requests were delivered.
inline ProviderState stateAfterDelivery(const Provider& provider, std::span<const Delivery> batch, ProviderState state,
                                        TimePoint now = Clock::now()) {
    for (auto& [key, value] : provider.plan(batch, state, now).writes) state[key] = value;
    return state;
}

// The credentials exchange the provider asks for, if any.
inline std::optional<HttpRequest> credentialsRequest(Provider& provider, TimePoint now) {
    Credentials* credentials = provider.credentials();
    std::optional<CredentialsFetch> fetch = credentials ? credentials->fetch(now) : std::nullopt;
    return fetch ? fetch->exchange : std::nullopt;
}

inline Outcome acceptCredentials(Provider& provider, HttpResponse response, TimePoint now) {
    Credentials* credentials = provider.credentials();
    if (credentials == nullptr) return Outcome::permanent("the provider renews no credentials");
    return credentials->accept({.response = std::move(response), .content = {}, .error = {}}, now);
}

}  // namespace fluxrelay
