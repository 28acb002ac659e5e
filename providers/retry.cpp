// Retry schedule: exponential backoff ceilings, full jitter, and when to give up.
#include "providers/retry.hpp"

#include <algorithm>

namespace fluxrelay {

Duration backoffCeiling(const RetryPolicy& policy, int attempt) {
    const Duration cap = std::max(policy.maxInterval, Duration{0});
    Duration ceiling = std::clamp(policy.initialInterval, Duration{0}, cap);
    // Doubling step by step stops at the cap, so a large attempt count cannot overflow.
    for (int n = 1; n < attempt && ceiling < cap && ceiling > Duration{0}; ++n) {
        ceiling = ceiling > cap / 2 ? cap : ceiling * 2;
    }
    return ceiling;
}

Duration nextRetryDelay(const RetryPolicy& policy, int attempt, std::optional<Duration> retryAfter,
                        std::mt19937_64& rng) {
    // Full jitter: spreads the retries of many deliveries that failed together over the whole
    // interval, so a recovering peer is not hit by all of them at once.
    const Duration ceiling = backoffCeiling(policy, attempt);
    std::uniform_int_distribution<Duration::rep> jitter{0, ceiling.count()};
    const Duration delay{jitter(rng)};
    // The peer knows best when it can take work again; the backoff only ever waits longer.
    if (retryAfter && *retryAfter > delay) return *retryAfter;
    return delay;
}

bool mayRetry(const RetryPolicy& policy, int attempts, TimePoint created, TimePoint next) {
    if (policy.maxAttempts > 0 && attempts >= policy.maxAttempts) return false;
    return next - created <= policy.maxAge;
}

}  // namespace fluxrelay
