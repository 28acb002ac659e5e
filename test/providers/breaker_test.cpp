// Circuit breaker transitions with a hand-driven clock.
#include <doctest/doctest.h>

#include "providers/breaker.hpp"

namespace fluxrelay {

namespace {
std::string stateOf(const CircuitBreaker& breaker) { return std::string(toString(breaker.state())); }
}  // namespace

TEST_CASE("the breaker opens after consecutive failures and probes once after the cooldown") {
    using std::chrono::seconds;
    CircuitBreaker breaker(3, seconds(1), seconds(8));
    const TimePoint t0{};

    CHECK(breaker.allow(t0));
    breaker.onFailure(t0);
    breaker.onFailure(t0);
    CHECK(stateOf(breaker) == "closed");
    breaker.onSuccess();  // a success in between resets the count
    breaker.onFailure(t0);
    breaker.onFailure(t0);
    CHECK(stateOf(breaker) == "closed");
    breaker.onFailure(t0);
    CHECK(stateOf(breaker) == "open");
    CHECK(breaker.openUntil() == t0 + seconds(1));

    CHECK_FALSE(breaker.allow(t0 + std::chrono::milliseconds(999)));
    CHECK(breaker.allow(t0 + seconds(1)));  // the probe
    CHECK(stateOf(breaker) == "half-open");
    CHECK_FALSE(breaker.allow(t0 + seconds(1)));  // only one probe at a time

    breaker.onFailure(t0 + seconds(1));  // probe failed: cooldown doubles
    CHECK(stateOf(breaker) == "open");
    CHECK(breaker.openUntil() == t0 + seconds(3));

    CHECK(breaker.allow(t0 + seconds(3)));
    breaker.onSuccess();  // probe succeeded: closed, cooldown reset
    CHECK(stateOf(breaker) == "closed");
    CHECK(breaker.allow(t0 + seconds(3)));
}

TEST_CASE("the cooldown doubles up to its maximum") {
    using std::chrono::seconds;
    CircuitBreaker breaker(1, seconds(1), seconds(4));
    TimePoint now{};
    breaker.onFailure(now);
    for (int i = 0; i < 5; ++i) {
        now = breaker.openUntil();
        REQUIRE(breaker.allow(now));
        breaker.onFailure(now);
    }
    CHECK(breaker.openUntil() - now == seconds(4));
}

}  // namespace fluxrelay
