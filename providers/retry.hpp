// Retry schedule: exponential backoff with full jitter, honouring Retry-After.
#pragma once

#include <chrono>
#include <optional>
#include <random>

#include "config/config.hpp"
#include "core/time.hpp"

namespace fluxrelay {

// The cap for attempt n (1-based): min(maxInterval, initialInterval * 2^(n-1)).
Duration backoffCeiling(const RetryPolicy& policy, int attempt);

// Delay before the next attempt: uniform in [0, ceiling] ("full jitter"), or retryAfter when the
// peer asked for longer.
Duration nextRetryDelay(const RetryPolicy& policy, int attempt, std::optional<Duration> retryAfter,
                        std::mt19937_64& rng);

// Whether a delivery created at `created` and tried `attempts` times may try again at `next`.
bool mayRetry(const RetryPolicy& policy, int attempts, TimePoint created, TimePoint next);

}  // namespace fluxrelay
