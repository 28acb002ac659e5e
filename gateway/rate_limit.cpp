// Token bucket for sources' rateLimit (see rate_limit.hpp).
#include "gateway/rate_limit.hpp"

#include <algorithm>
#include <cassert>

namespace fluxrelay {

namespace {

constexpr std::int64_t kToken = 1'000'000'000;  // nanoTokens per token

}  // namespace

RateDecision takeToken(TokenBucket& bucket, const RateLimit& limit, RateClock::time_point now) {
    assert(limit.requestsPerSecond > 0 && limit.burst > 0);
    const std::int64_t rate = limit.requestsPerSecond;  // nanoTokens per nanosecond
    const std::int64_t capacity = limit.burst * kToken;
    if (!bucket.started) {
        bucket = TokenBucket{.nanoTokens = capacity, .updated = now, .started = true};
    } else if (now > bucket.updated) {
        // Capped first: past the time to fill the bucket more makes no difference, and the
        // product stays far from overflowing.
        const std::int64_t elapsed =
            std::min<std::int64_t>(std::chrono::nanoseconds(now - bucket.updated).count(), capacity / rate + 1);
        bucket.nanoTokens += elapsed * rate;
        bucket.updated = now;
    }
    // Also when a reload lowered the burst below what the bucket holds.
    bucket.nanoTokens = std::min(bucket.nanoTokens, capacity);
    if (bucket.nanoTokens >= kToken) {
        bucket.nanoTokens -= kToken;
        return RateDecision{.allowed = true};
    }
    const std::int64_t waitNanos = (kToken - bucket.nanoTokens + rate - 1) / rate;
    return RateDecision{.allowed = false, .retryAfter = Duration((waitNanos + 999'999) / 1'000'000)};
}

}  // namespace fluxrelay
