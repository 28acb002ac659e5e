// A source's rateLimit as a token bucket: a pure function of the bucket, the limit and the time,
// so that tests drive the clock.
#pragma once

#include <chrono>
#include <cstdint>

#include "config/config.hpp"

namespace fluxrelay {

using RateClock = std::chrono::steady_clock;

struct TokenBucket {
    // In billionths of a token, so that refilling at any whole rate is exact integer arithmetic.
    std::int64_t nanoTokens = 0;
    RateClock::time_point updated{};
    bool started = false;  // a bucket starts full at its first request
};

struct RateDecision {
    bool allowed = false;
    Duration retryAfter{0};  // when refused: until the next whole token, rounded up
};

// Refills `bucket` for the time since its last request (up to `limit.burst` tokens), then takes
// one token if there is a whole one.
RateDecision takeToken(TokenBucket& bucket, const RateLimit& limit, RateClock::time_point now);

}  // namespace fluxrelay
