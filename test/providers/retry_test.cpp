// Retry schedule: backoff ceilings, full-jitter bounds, Retry-After, and when a delivery gives up.
#include "providers/retry.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <limits>

namespace fluxrelay {
namespace {

using namespace std::chrono_literals;

RetryPolicy defaults() { return RetryPolicy{}; }  // 1s initial, 5m max interval, 24h max age, no attempt limit

}  // namespace

TEST_CASE("backoff ceilings double from initialInterval and cap at maxInterval") {
    const RetryPolicy policy = defaults();
    CHECK(backoffCeiling(policy, 1) == 1s);
    CHECK(backoffCeiling(policy, 2) == 2s);
    CHECK(backoffCeiling(policy, 3) == 4s);
    CHECK(backoffCeiling(policy, 9) == 256s);
    CHECK(backoffCeiling(policy, 10) == 5min);  // 512s capped
    CHECK(backoffCeiling(policy, 11) == 5min);
    // Far past the cap: no overflow from 2^n.
    CHECK(backoffCeiling(policy, 1000) == 5min);
    CHECK(backoffCeiling(policy, std::numeric_limits<int>::max()) == 5min);
    // Attempt numbers start at 1; anything lower gets the first ceiling.
    CHECK(backoffCeiling(policy, 0) == 1s);
    CHECK(backoffCeiling(policy, -3) == 1s);
}

TEST_CASE("backoff ceilings follow the configured intervals") {
    RetryPolicy policy;
    policy.initialInterval = 300ms;
    policy.maxInterval = 1s;
    CHECK(backoffCeiling(policy, 1) == 300ms);
    CHECK(backoffCeiling(policy, 2) == 600ms);
    CHECK(backoffCeiling(policy, 3) == 1s);

    // maxInterval below initialInterval: the cap still holds.
    policy.initialInterval = 10s;
    policy.maxInterval = 3s;
    CHECK(backoffCeiling(policy, 1) == 3s);
    CHECK(backoffCeiling(policy, 5) == 3s);
}

TEST_CASE("full jitter stays within [0, ceiling] and uses the whole range") {
    const RetryPolicy policy = defaults();
    std::mt19937_64 rng{20240501};
    for (const int attempt : {1, 3, 6, 12}) {
        CAPTURE(attempt);
        const Duration ceiling = backoffCeiling(policy, attempt);
        Duration lowest = ceiling;
        Duration highest{0};
        Duration sum{0};
        constexpr int samples = 10'000;
        for (int i = 0; i < samples; ++i) {
            const Duration delay = nextRetryDelay(policy, attempt, std::nullopt, rng);
            REQUIRE(delay >= Duration{0});
            REQUIRE(delay <= ceiling);
            lowest = std::min(lowest, delay);
            highest = std::max(highest, delay);
            sum += delay;
        }
        // Uniform: the extremes are approached and the mean sits near the middle.
        CHECK(lowest < ceiling / 20);
        CHECK(highest > ceiling * 19 / 20);
        const Duration mean = sum / samples;
        CHECK(mean > ceiling * 45 / 100);
        CHECK(mean < ceiling * 55 / 100);
    }
}

TEST_CASE("the same seed gives the same schedule") {
    std::mt19937_64 first{7};
    std::mt19937_64 second{7};
    for (int attempt = 1; attempt <= 20; ++attempt) {
        CHECK(nextRetryDelay(defaults(), attempt, std::nullopt, first) ==
              nextRetryDelay(defaults(), attempt, std::nullopt, second));
    }
}

TEST_CASE("Retry-After wins when it is longer than the jittered delay") {
    const RetryPolicy policy = defaults();
    std::mt19937_64 rng{42};
    // Longer than any ceiling: always used as is, even beyond maxInterval.
    for (int i = 0; i < 100; ++i) {
        CHECK(nextRetryDelay(policy, 1, Duration{2s}, rng) == 2s);
        CHECK(nextRetryDelay(policy, 30, Duration{1h}, rng) == 1h);
    }
    // Shorter than the ceiling: the delay is never below it, and still jittered above it.
    bool sawLonger = false;
    for (int i = 0; i < 1000; ++i) {
        const Duration delay = nextRetryDelay(policy, 10, Duration{10s}, rng);
        CHECK(delay >= 10s);
        CHECK(delay <= 5min);
        sawLonger = sawLonger || delay > 10s;
    }
    CHECK(sawLonger);
    // Retry-After: 0 (or a date in the past) leaves the backoff alone.
    for (int i = 0; i < 100; ++i) CHECK(nextRetryDelay(policy, 1, Duration{0}, rng) <= 1s);
}

TEST_CASE("mayRetry stops at maxAge") {
    const RetryPolicy policy = defaults();
    const TimePoint created = Clock::now();
    CHECK(mayRetry(policy, 1, created, created + 1s));
    CHECK(mayRetry(policy, 500, created, created + 24h));
    CHECK_FALSE(mayRetry(policy, 500, created, created + 24h + 1ms));
    CHECK_FALSE(mayRetry(policy, 1, created, created + 48h));
}

TEST_CASE("mayRetry stops at maxAttempts when set") {
    RetryPolicy policy = defaults();
    const TimePoint created = Clock::now();
    // 0: no limit but the age.
    CHECK(mayRetry(policy, 100'000, created, created + 1s));

    policy.maxAttempts = 3;
    CHECK(mayRetry(policy, 1, created, created + 1s));
    CHECK(mayRetry(policy, 2, created, created + 1s));
    CHECK_FALSE(mayRetry(policy, 3, created, created + 1s));
    CHECK_FALSE(mayRetry(policy, 4, created, created + 1s));
    // Both limits apply.
    CHECK_FALSE(mayRetry(policy, 1, created, created + 25h));
}

}  // namespace fluxrelay
