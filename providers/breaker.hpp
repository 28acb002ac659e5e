// Per-target circuit breaker: after consecutive failures the target rests, then one
// probe decides whether it is back. A dead target then costs one request per cooldown.
#pragma once

#include "core/duration.hpp"
#include "core/time.hpp"

namespace fluxrelay {

class CircuitBreaker {
public:
    enum class State { closed, open, halfOpen };

    CircuitBreaker(int failureThreshold, Duration initialCooldown, Duration maxCooldown);

    // Whether an attempt may start now. Past the cooldown the breaker lets exactly one probe
    // through (half-open) until that probe reports back.
    bool allow(TimePoint now);
    void onSuccess();
    void onFailure(TimePoint now);

    State state() const { return state_; }
    // When an open breaker lets the next probe through.
    TimePoint openUntil() const { return openUntil_; }

private:
    int failureThreshold_;
    Duration initialCooldown_;
    Duration maxCooldown_;
    Duration cooldown_;
    int consecutiveFailures_ = 0;
    State state_ = State::closed;
    bool probeInFlight_ = false;
    TimePoint openUntil_{};
};

std::string_view toString(CircuitBreaker::State state);

}  // namespace fluxrelay
