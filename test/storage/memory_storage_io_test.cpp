// The Storage contract, checked on the in-memory spool: dedup, due order, retry, dead letters.
#include <doctest/doctest.h>

#include <boost/asio/use_future.hpp>

#include "storage/storage.hpp"

namespace fluxrelay {
namespace {

namespace asio = boost::asio;

// Runs one storage operation to completion (use_future completes on the system executor).
template <class Start>
auto run(Start start) {
    return start().get();
}

EventPtr makeEvent(std::string id) {
    return std::make_shared<const Event>(Event{.id = std::move(id), .source = "flux", .receivedAt = Clock::now(),
                                               .payload = FluxEvent{}});
}

AcceptRequest request(std::string id, std::string dedupKey = {}, std::vector<std::string> targets = {"am"}) {
    auto event = makeEvent(std::move(id));
    return AcceptRequest{.event = event,
                         .routes = {{.name = "errors",
                                     .dedupKey = std::move(dedupKey),
                                     .dedupWindow = std::chrono::minutes(5),
                                     .event = event,
                                     .targets = std::move(targets)}},
                         .idempotencyKey = {},
                         .idempotencyWindow = {}};
}

AcceptResult accept(Storage& storage, AcceptRequest req) {
    return run([&]() { return asyncAccept(storage, std::move(req), asio::use_future); });
}

Claim claim(Storage& storage, std::string target, std::size_t max, TimePoint now = Clock::now()) {
    return run([&]() { return asyncClaim(storage, std::move(target), max, now, asio::use_future); });
}

void settle(Storage& storage, std::vector<Settlement> settlements) {
    run([&]() { return asyncSettle(storage, std::move(settlements), asio::use_future); });
}

}  // namespace

TEST_CASE("accepted deliveries are claimed once, per target") {
    auto storage = makeMemoryStorage(100);
    std::vector<std::string> woken;
    storage->onWork([&](const std::string& target) { woken.push_back(target); });

    const auto result = accept(*storage, request("e1", "", {"am", "github"}));
    CHECK(result.stored);
    CHECK(woken == std::vector<std::string>{"am", "github"});

    auto first = claim(*storage, "am", 10);
    REQUIRE(first.deliveries.size() == 1);
    CHECK(first.deliveries[0].event->id == "e1");
    CHECK(first.deliveries[0].target == "am");
    CHECK(claim(*storage, "am", 10).deliveries.empty());  // leased, not handed out twice
    CHECK(claim(*storage, "github", 10).deliveries.size() == 1);
}

TEST_CASE("a held dedup key suppresses the route, not the event") {
    auto storage = makeMemoryStorage(100);
    CHECK(accept(*storage, request("e1", "errors:k")).duplicateRoutes.empty());
    const auto second = accept(*storage, request("e2", "errors:k"));
    CHECK(second.stored);
    CHECK(second.duplicateRoutes == std::vector<std::string>{"errors"});
    CHECK(claim(*storage, "am", 10).deliveries.size() == 1);
}

TEST_CASE("a retried delivery comes back when due, with its attempt counted") {
    auto storage = makeMemoryStorage(100);
    accept(*storage, request("e1"));
    const auto now = Clock::now();
    auto claimed = claim(*storage, "am", 10, now);
    REQUIRE(claimed.deliveries.size() == 1);
    settle(*storage, {{.deliveryId = claimed.deliveries[0].id,
                       .kind = SettleKind::retry,
                       .nextAttemptAt = now + std::chrono::seconds(30),
                       .error = "HTTP 503"}});

    const auto early = claim(*storage, "am", 10, now + std::chrono::seconds(29));
    CHECK(early.deliveries.empty());
    REQUIRE(early.nextDue.has_value());
    CHECK(*early.nextDue == now + std::chrono::seconds(30));

    const auto due = claim(*storage, "am", 10, now + std::chrono::seconds(30));
    REQUIRE(due.deliveries.size() == 1);
    CHECK(due.deliveries[0].attempts == 1);
    CHECK(due.deliveries[0].lastError == "HTTP 503");
}

TEST_CASE("dead letters are listed and replayable") {
    auto storage = makeMemoryStorage(100);
    accept(*storage, request("e1"));
    auto claimed = claim(*storage, "am", 10);
    REQUIRE(claimed.deliveries.size() == 1);
    const auto id = claimed.deliveries[0].id;
    settle(*storage, {{.deliveryId = id, .kind = SettleKind::dead, .nextAttemptAt = {}, .error = "HTTP 400: bad"}});

    auto letters = run([&]() {
        return asio::async_initiate<decltype(asio::use_future), void(std::vector<DeadLetter>)>(
            [&](auto handler) { storage->deadLetters(10, std::move(handler)); }, asio::use_future);
    });
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].reason == "HTTP 400: bad");
    CHECK(claim(*storage, "am", 10).deliveries.empty());

    auto replayed = run([&]() {
        return asio::async_initiate<decltype(asio::use_future), void(bool)>(
            [&](auto handler) { storage->replay(id, std::move(handler)); }, asio::use_future);
    });
    CHECK(replayed);
    CHECK(claim(*storage, "am", 10).deliveries.size() == 1);
}

TEST_CASE("past its bound the spool refuses, so ingest can answer 503") {
    auto storage = makeMemoryStorage(2);
    CHECK(accept(*storage, request("e1", "", {"a", "b"})).stored);
    const auto refused = accept(*storage, request("e2"));
    CHECK_FALSE(refused.stored);
    CHECK(refused.error.find("queue full") != std::string::npos);
}

}  // namespace fluxrelay

namespace fluxrelay {

TEST_CASE("an idempotency key makes a second accept a duplicate that stores nothing") {
    auto storage = makeMemoryStorage(100);
    auto first = request("e1");
    first.idempotencyKey = "github-delivery:abc";
    first.idempotencyWindow = std::chrono::hours(24);
    auto second = first;
    CHECK_FALSE(accept(*storage, std::move(first)).duplicateEvent);
    const auto again = accept(*storage, std::move(second));
    CHECK(again.stored);
    CHECK(again.duplicateEvent);
    CHECK(claim(*storage, "am", 10).deliveries.size() == 1);
}

TEST_CASE("values are kept, overwritten and erased") {
    auto storage = makeMemoryStorage(100);
    auto get = [&](std::string key) {
        return asyncGetValue(*storage, std::move(key), boost::asio::use_future).get();
    };
    CHECK_FALSE(get("k").has_value());
    CHECK(asyncPutValue(*storage, "k", "v1", Duration{0}, boost::asio::use_future).get());
    CHECK(get("k") == std::optional<std::string>("v1"));
    asyncPutValue(*storage, "k", "v2", std::chrono::hours(1), boost::asio::use_future).get();
    CHECK(get("k") == std::optional<std::string>("v2"));
    asyncEraseValue(*storage, "k", boost::asio::use_future).get();
    CHECK_FALSE(get("k").has_value());
}

}  // namespace fluxrelay

namespace fluxrelay {

TEST_CASE("a debounced burst becomes one delivery of the latest event, due after the delay") {
    auto storage = makeMemoryStorage(100);
    const auto start = Clock::now();
    for (const auto* id : {"push-1", "push-2", "push-3"}) {
        auto req = request(id);
        req.routes[0].delay = std::chrono::seconds(10);
        req.routes[0].coalesceKey = "reconcile-on-push";
        CHECK(accept(*storage, std::move(req)).stored);
    }
    CHECK(claim(*storage, "am", 10, start).deliveries.empty());
    const auto due = claim(*storage, "am", 10, start + std::chrono::seconds(11));
    REQUIRE(due.deliveries.size() == 1);
    CHECK(due.deliveries[0].event->id == "push-3");

    // Once claimed, the next push starts a new burst rather than joining a delivery in flight.
    auto next = request("push-4");
    next.routes[0].coalesceKey = "reconcile-on-push";
    accept(*storage, std::move(next));
    const auto after = claim(*storage, "am", 10, start + std::chrono::seconds(11));
    REQUIRE(after.deliveries.size() == 1);
    CHECK(after.deliveries[0].event->id == "push-4");
}

}  // namespace fluxrelay
