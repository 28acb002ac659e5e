// Circuit breaker state machine: closed → open (after N failures) → half-open (one probe) → ...
#include "providers/breaker.hpp"

#include <algorithm>

namespace fluxrelay {

CircuitBreaker::CircuitBreaker(int failureThreshold, Duration initialCooldown, Duration maxCooldown)
    : failureThreshold_(failureThreshold),
      initialCooldown_(initialCooldown),
      maxCooldown_(maxCooldown),
      cooldown_(initialCooldown) {}

bool CircuitBreaker::allow(TimePoint now) {
    switch (state_) {
        case State::closed:
            return true;
        case State::open:
            if (now < openUntil_) {
                return false;
            }
            state_ = State::halfOpen;
            probeInFlight_ = true;
            return true;
        case State::halfOpen:
            if (probeInFlight_) {
                return false;
            }
            probeInFlight_ = true;
            return true;
    }
    return false;
}

void CircuitBreaker::onSuccess() {
    state_ = State::closed;
    consecutiveFailures_ = 0;
    probeInFlight_ = false;
    cooldown_ = initialCooldown_;
}

void CircuitBreaker::onFailure(TimePoint now) {
    probeInFlight_ = false;
    if (state_ == State::halfOpen) {
        // The probe failed: rest longer before the next one.
        cooldown_ = std::min(cooldown_ * 2, maxCooldown_);
        state_ = State::open;
        openUntil_ = now + cooldown_;
        return;
    }
    if (++consecutiveFailures_ >= failureThreshold_ && state_ == State::closed) {
        state_ = State::open;
        openUntil_ = now + cooldown_;
    }
}

std::string_view toString(CircuitBreaker::State state) {
    switch (state) {
        case CircuitBreaker::State::closed:
            return "closed";
        case CircuitBreaker::State::open:
            return "open";
        case CircuitBreaker::State::halfOpen:
            return "half-open";
    }
    return "unknown";
}

}  // namespace fluxrelay
