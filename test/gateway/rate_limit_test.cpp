// Token bucket of a source's rateLimit, on a clock the test moves by hand.
#include "gateway/rate_limit.hpp"

#include <doctest/doctest.h>

using namespace std::chrono_literals;
using fluxrelay::RateClock;
using fluxrelay::RateLimit;
using fluxrelay::takeToken;
using fluxrelay::TokenBucket;

namespace {

// Counts the requests allowed at one instant.
int allowedAt(TokenBucket& bucket, const RateLimit& limit, RateClock::time_point now, int tries) {
    int allowed = 0;
    for (int i = 0; i < tries; ++i) allowed += takeToken(bucket, limit, now).allowed ? 1 : 0;
    return allowed;
}

}  // namespace

TEST_CASE("a new bucket allows a burst, then refuses with the wait for the next token") {
    const RateLimit limit{.requestsPerSecond = 10, .burst = 5};
    TokenBucket bucket;
    const RateClock::time_point start{};
    CHECK(allowedAt(bucket, limit, start, 5) == 5);
    const auto refused = takeToken(bucket, limit, start);
    CHECK_FALSE(refused.allowed);
    CHECK(refused.retryAfter == 100ms);

    // 40 ms later, 0.4 of a token is back: still refused, and the wait shrinks accordingly.
    const auto early = takeToken(bucket, limit, start + 40ms);
    CHECK_FALSE(early.allowed);
    CHECK(early.retryAfter == 60ms);
    CHECK(takeToken(bucket, limit, start + 100ms).allowed);
    CHECK_FALSE(takeToken(bucket, limit, start + 100ms).allowed);
}

TEST_CASE("the bucket refills at the rate and never beyond the burst") {
    const RateLimit limit{.requestsPerSecond = 2, .burst = 3};
    TokenBucket bucket;
    const RateClock::time_point start{};
    CHECK(allowedAt(bucket, limit, start, 10) == 3);
    CHECK(allowedAt(bucket, limit, start + 1s, 10) == 2);
    // A long quiet spell fills it up to the burst only.
    CHECK(allowedAt(bucket, limit, start + 1h, 10) == 3);
}

TEST_CASE("a steady sender at the rate is never refused") {
    const RateLimit limit{.requestsPerSecond = 5, .burst = 1};
    TokenBucket bucket;
    RateClock::time_point now{};
    for (int i = 0; i < 100; ++i, now += 200ms) {
        CHECK(takeToken(bucket, limit, now).allowed);
    }
    CHECK_FALSE(takeToken(bucket, limit, now - 100ms).allowed);
}

TEST_CASE("a clock that goes back refills nothing") {
    const RateLimit limit{.requestsPerSecond = 1, .burst = 1};
    TokenBucket bucket;
    const RateClock::time_point start = RateClock::time_point{} + 10s;
    CHECK(takeToken(bucket, limit, start).allowed);
    CHECK_FALSE(takeToken(bucket, limit, start - 5s).allowed);
    CHECK(takeToken(bucket, limit, start + 1s).allowed);
}

TEST_CASE("a lower burst after a reload caps what the bucket holds") {
    TokenBucket bucket;
    const RateClock::time_point start{};
    CHECK(allowedAt(bucket, RateLimit{.requestsPerSecond = 1, .burst = 100}, start, 1) == 1);
    CHECK(allowedAt(bucket, RateLimit{.requestsPerSecond = 1, .burst = 2}, start, 10) == 2);
}
