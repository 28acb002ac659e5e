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
                                     .targets = std::move(targets)}}};
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
