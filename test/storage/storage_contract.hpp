// The Storage contract, written once and run against every spool: dedup, due order, retry, dead
// letters, values, debounce. A test file runs it with FLUXRELAY_STORAGE_CONTRACT(Fixture), where
// Fixture(maxQueuedDeliveries) holds a fresh spool in its member `storage`.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/use_future.hpp>

#include "storage/storage.hpp"

namespace fluxrelay::contract {

namespace asio = boost::asio;

inline EventPtr makeEvent(std::string id) {
    return std::make_shared<const Event>(
        Event{.id = std::move(id), .source = "flux", .receivedAt = Clock::now(), .payload = FluxEvent{}});
}

// A window gate (mode flux) over `dedupKey` when it is not empty.
inline std::vector<DedupGate> windowGate(std::string dedupKey, Duration window = std::chrono::minutes(5)) {
    if (dedupKey.empty()) return {};
    return {{.kind = DedupGate::Kind::window,
             .label = "dedup mode flux",
             .key = std::move(dedupKey),
             .window = window,
             .renotify = {},
             .threshold = 0,
             .observation = {}}};
}

inline AcceptRequest request(std::string id, std::string dedupKey = {}, std::vector<std::string> targets = {"am"}) {
    auto event = makeEvent(std::move(id));
    return AcceptRequest{.event = event,
                         .routes = {{.name = "errors",
                                     .dedup = windowGate(std::move(dedupKey)),
                                     .event = event,
                                     .targets = std::move(targets)}},
                         .idempotencyKey = {},
                         .idempotencyWindow = {},
                         .objectHealth = {}};
}

// The routes an accept suppressed, by name.
inline std::vector<std::string> suppressedRoutes(const AcceptResult& result) {
    std::vector<std::string> routes;
    for (const auto& suppressed : result.suppressed) routes.push_back(suppressed.route);
    return routes;
}

// Each runs one storage operation to completion (use_future completes on the system executor).
inline AcceptResult accept(Storage& storage, AcceptRequest req) {
    return asyncAccept(storage, std::move(req), asio::use_future).get();
}

inline Claim claim(Storage& storage, std::string target, std::size_t max, TimePoint now = Clock::now()) {
    return asyncClaim(storage, std::move(target), max, now, asio::use_future).get();
}

inline void settle(Storage& storage, std::vector<Settlement> settlements) {
    asyncSettle(storage, std::move(settlements), asio::use_future).get();
}

inline std::vector<DeadLetter> deadLetters(Storage& storage, std::size_t limit = 10) {
    return asyncDeadLetters(storage, limit, asio::use_future).get();
}

inline bool replay(Storage& storage, std::uint64_t id) { return asyncReplay(storage, id, asio::use_future).get(); }

inline std::optional<std::string> getValue(Storage& storage, std::string key) {
    return asyncGetValue(storage, std::move(key), asio::use_future).get();
}

inline bool putValue(Storage& storage, std::string key, std::string value, Duration ttl) {
    return asyncPutValue(storage, std::move(key), std::move(value), ttl, asio::use_future).get();
}

inline void eraseValue(Storage& storage, std::string key) {
    asyncEraseValue(storage, std::move(key), asio::use_future).get();
}

inline std::optional<std::string> tryLease(Storage& storage, std::string name, Duration ttl) {
    return asyncTryLease(storage, std::move(name), ttl, asio::use_future).get();
}

inline void releaseLease(Storage& storage, std::string name, std::string token) {
    asyncReleaseLease(storage, std::move(name), std::move(token), asio::use_future).get();
}

inline std::vector<ObjectHealth> failingObjects(Storage& storage, TimePoint now = Clock::now()) {
    return asyncFailingObjects(storage, now, asio::use_future).get();
}

// An accept of a Flux event about Kustomization apps/`name`, routed nowhere, that records its
// object's health: failing with `reason`, healthy when `reason` is empty; heard of at `at`.
inline AcceptRequest healthOf(std::string name, std::string reason, TimePoint at,
                              Duration forgetAfter = std::chrono::hours(24)) {
    FluxEvent flux;
    flux.involvedObject.kind = "Kustomization";
    flux.involvedObject.namespace_ = "apps";
    flux.involvedObject.name = std::move(name);
    flux.severity = reason.empty() ? "info" : "error";
    flux.reason = reason.empty() ? "ReconciliationSucceeded" : std::move(reason);
    auto event = std::make_shared<const Event>(
        Event{.id = "health-" + flux.involvedObject.name, .source = "flux", .receivedAt = at, .payload = flux});
    return AcceptRequest{.event = event,
                         .routes = {},
                         .idempotencyKey = {},
                         .idempotencyWindow = {},
                         .objectHealth = objectHealthOf(*event, forgetAfter)};
}

// "name reason" of each failing object, in the order the spool lists them.
inline std::vector<std::string> failingNames(const std::vector<ObjectHealth>& objects) {
    std::vector<std::string> names;
    for (const auto& object : objects) names.push_back(object.name + " " + object.reason);
    return names;
}

}  // namespace fluxrelay::contract

namespace fluxrelay {

TEST_CASE_TEMPLATE_DEFINE("accepted deliveries are claimed once, per target", F, contract_claimed_once) {
    using namespace contract;
    F fixture(100);
    Storage& storage = *fixture.storage;
    std::vector<std::string> woken;
    storage.onWork([&](const std::string& target) { woken.push_back(target); });

    const auto result = accept(storage, request("e1", "", {"am", "github"}));
    CHECK(result.stored);
    CHECK(woken == std::vector<std::string>{"am", "github"});

    auto first = claim(storage, "am", 10);
    REQUIRE(first.deliveries.size() == 1);
    CHECK(first.deliveries[0].event->id == "e1");
    CHECK(first.deliveries[0].target == "am");
    CHECK(claim(storage, "am", 10).deliveries.empty());  // leased, not handed out twice
    CHECK(claim(storage, "github", 10).deliveries.size() == 1);
    storage.onWork({});
}

TEST_CASE_TEMPLATE_DEFINE("a held dedup key suppresses the route, not the event", F, contract_dedup) {
    using namespace contract;
    F fixture(100);
    Storage& storage = *fixture.storage;
    CHECK(accept(storage, request("e1", "errors:k")).suppressed.empty());
    const auto second = accept(storage, request("e2", "errors:k"));
    CHECK(second.stored);
    CHECK(suppressedRoutes(second) == std::vector<std::string>{"errors"});
    // The reason names the mode and the event that holds the key.
    REQUIRE(second.suppressed.size() == 1);
    CHECK((second.suppressed[0].why.verdict == Verdict::duplicate));
    CHECK(second.suppressed[0].why.reason.starts_with("dedup mode flux: same dedup key as event e1"));
    CHECK(claim(storage, "am", 10).deliveries.size() == 1);
}

TEST_CASE_TEMPLATE_DEFINE("a retried delivery comes back when due, with its attempt counted", F, contract_retry) {
    using namespace contract;
    F fixture(100);
    Storage& storage = *fixture.storage;
    accept(storage, request("e1"));
    const auto now = Clock::now();
    auto claimed = claim(storage, "am", 10, now);
    REQUIRE(claimed.deliveries.size() == 1);
    settle(storage, {{.deliveryId = claimed.deliveries[0].id,
                      .kind = SettleKind::retry,
                      .nextAttemptAt = now + std::chrono::seconds(30),
                      .error = "HTTP 503"}});

    const auto early = claim(storage, "am", 10, now + std::chrono::seconds(29));
    CHECK(early.deliveries.empty());
    REQUIRE(early.nextDue.has_value());
    CHECK(*early.nextDue == now + std::chrono::seconds(30));

    const auto due = claim(storage, "am", 10, now + std::chrono::seconds(30));
    REQUIRE(due.deliveries.size() == 1);
    CHECK(due.deliveries[0].attempts == 1);
    CHECK(due.deliveries[0].lastError == "HTTP 503");
}

TEST_CASE_TEMPLATE_DEFINE("a released delivery is queued again without an attempt counted", F, contract_release) {
    using namespace contract;
    F fixture(100);
    Storage& storage = *fixture.storage;
    accept(storage, request("e1"));
    auto claimed = claim(storage, "am", 10);
    REQUIRE(claimed.deliveries.size() == 1);
    const Delivery& delivery = claimed.deliveries[0];
    settle(storage, {{.deliveryId = delivery.id,
                      .kind = SettleKind::release,
                      .nextAttemptAt = delivery.nextAttemptAt,
                      .error = delivery.lastError}});
    const auto again = claim(storage, "am", 10);
    REQUIRE(again.deliveries.size() == 1);
    CHECK(again.deliveries[0].id == delivery.id);
    CHECK(again.deliveries[0].attempts == 0);
}

TEST_CASE_TEMPLATE_DEFINE("dead letters are listed and replayable", F, contract_dead_letters) {
    using namespace contract;
    F fixture(100);
    Storage& storage = *fixture.storage;
    accept(storage, request("e1"));
    auto claimed = claim(storage, "am", 10);
    REQUIRE(claimed.deliveries.size() == 1);
    const auto id = claimed.deliveries[0].id;
    settle(storage, {{.deliveryId = id, .kind = SettleKind::dead, .nextAttemptAt = {}, .error = "HTTP 400: bad"}});

    auto letters = deadLetters(storage);
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].reason == "HTTP 400: bad");
    CHECK(letters[0].delivery.id == id);
    REQUIRE(letters[0].delivery.event != nullptr);
    CHECK(letters[0].delivery.event->id == "e1");
    CHECK(claim(storage, "am", 10).deliveries.empty());

    CHECK(replay(storage, id));
    CHECK_FALSE(replay(storage, id));  // no longer a dead letter
    CHECK(deadLetters(storage).empty());
    const auto replayed = claim(storage, "am", 10);
    REQUIRE(replayed.deliveries.size() == 1);
    CHECK(replayed.deliveries[0].attempts == 0);
}

TEST_CASE_TEMPLATE_DEFINE("replaying an unknown dead letter says so", F, contract_replay_unknown) {
    using namespace contract;
    F fixture(100);
    CHECK_FALSE(replay(*fixture.storage, 12345));
}

TEST_CASE_TEMPLATE_DEFINE("past its bound the spool refuses, so ingest can answer 503", F, contract_bound) {
    using namespace contract;
    F fixture(2);
    Storage& storage = *fixture.storage;
    CHECK(accept(storage, request("e1", "", {"a", "b"})).stored);
    const auto refused = accept(storage, request("e2"));
    CHECK_FALSE(refused.stored);
    CHECK(refused.error.find("queue full") != std::string::npos);
}

TEST_CASE_TEMPLATE_DEFINE("an idempotency key makes a second accept a duplicate that stores nothing", F,
                          contract_idempotency) {
    using namespace contract;
    F fixture(100);
    Storage& storage = *fixture.storage;
    auto first = request("e1");
    first.idempotencyKey = "github-delivery:abc";
    first.idempotencyWindow = std::chrono::hours(24);
    auto second = first;
    CHECK_FALSE(accept(storage, std::move(first)).duplicateEvent);
    const auto again = accept(storage, std::move(second));
    CHECK(again.stored);
    CHECK(again.duplicateEvent);
    CHECK(claim(storage, "am", 10).deliveries.size() == 1);
}

TEST_CASE_TEMPLATE_DEFINE("a redelivery refused while the queue was full is accepted later, not a duplicate", F,
                          contract_redelivery_after_full) {
    using namespace contract;
    F fixture(1);
    Storage& storage = *fixture.storage;
    CHECK(accept(storage, request("fills-the-queue")).stored);
    const auto redelivery = [] {
        auto push = request("push", "", {"reconcile"});
        push.idempotencyKey = "github-delivery:full";
        push.idempotencyWindow = std::chrono::hours(24);
        return push;
    };
    const auto refused = accept(storage, redelivery());
    CHECK_FALSE(refused.stored);
    CHECK(refused.error.find("queue full") != std::string::npos);

    const auto claimed = claim(storage, "am", 10);
    REQUIRE(claimed.deliveries.size() == 1);
    settle(storage, {{.deliveryId = claimed.deliveries[0].id, .kind = SettleKind::delivered}});
    // GitHub delivers again after the 503: stored and queued, as the first time should have been.
    const auto again = accept(storage, redelivery());
    CHECK(again.stored);
    CHECK_FALSE(again.duplicateEvent);
    CHECK(claim(storage, "reconcile", 10).deliveries.size() == 1);
    CHECK(accept(storage, redelivery()).duplicateEvent);
}

TEST_CASE_TEMPLATE_DEFINE("accepts sent together are decided one after another: one key, one delivery", F,
                          contract_concurrent_accepts) {
    using namespace contract;
    F fixture(1000);
    Storage& storage = *fixture.storage;
    // Each key twice in a row, all sent without waiting: a spool that batches decides many pairs
    // inside one transaction, where the second of a pair must see what the first took.
    constexpr int kKeys = 40;
    std::vector<std::future<AcceptResult>> deliveries;
    std::vector<std::future<AcceptResult>> gated;
    for (int i = 0; i < 2 * kKeys; ++i) {
        const std::string key = std::to_string(i / 2);
        auto push = request("push-" + std::to_string(i), "", {"reconcile"});
        push.idempotencyKey = "github-delivery:" + key;
        push.idempotencyWindow = std::chrono::hours(1);
        deliveries.push_back(asyncAccept(storage, std::move(push), asio::use_future));
        gated.push_back(asyncAccept(storage, request("fail-" + std::to_string(i), "errors:" + key), asio::use_future));
    }
    int firstDeliveries = 0;
    int forwarded = 0;
    for (int i = 0; i < 2 * kKeys; ++i) {
        const auto delivery = deliveries[static_cast<std::size_t>(i)].get();
        CHECK(delivery.stored);
        firstDeliveries += delivery.duplicateEvent ? 0 : 1;
        const auto gate = gated[static_cast<std::size_t>(i)].get();
        CHECK(gate.stored);
        forwarded += gate.suppressed.empty() ? 1 : 0;
    }
    CHECK(firstDeliveries == kKeys);
    CHECK(forwarded == kKeys);
    CHECK(claim(storage, "reconcile", 1000).deliveries.size() == kKeys);
    CHECK(claim(storage, "am", 1000).deliveries.size() == kKeys);
}

TEST_CASE_TEMPLATE_DEFINE("values are kept, overwritten, expired and erased", F, contract_values) {
    using namespace contract;
    F fixture(100);
    Storage& storage = *fixture.storage;
    CHECK_FALSE(getValue(storage, "k").has_value());
    CHECK(putValue(storage, "k", "v1", Duration{0}));
    CHECK(getValue(storage, "k") == std::optional<std::string>("v1"));
    putValue(storage, "k", "v2", std::chrono::hours(1));
    CHECK(getValue(storage, "k") == std::optional<std::string>("v2"));
    eraseValue(storage, "k");
    CHECK_FALSE(getValue(storage, "k").has_value());

    putValue(storage, "short", "v", std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK_FALSE(getValue(storage, "short").has_value());
}

TEST_CASE_TEMPLATE_DEFINE("a lease has one holder until released or expired", F, contract_lease) {
    using namespace contract;
    F fixture(100);
    Storage& storage = *fixture.storage;
    const auto first = tryLease(storage, "state", std::chrono::minutes(1));
    REQUIRE(first.has_value());
    CHECK_FALSE(tryLease(storage, "state", std::chrono::minutes(1)).has_value());
    CHECK(tryLease(storage, "other", std::chrono::minutes(1)).has_value());  // leases are by name

    releaseLease(storage, "state", *first + "-not-mine");  // only its holder's token releases it
    CHECK_FALSE(tryLease(storage, "state", std::chrono::minutes(1)).has_value());
    releaseLease(storage, "state", *first);
    const auto second = tryLease(storage, "state", std::chrono::milliseconds(1));
    REQUIRE(second.has_value());
    CHECK(*second != *first);

    // A holder that never releases (it died) blocks the others only until its lease expires; its
    // late release then leaves the new holder's lease alone.
    std::optional<std::string> third;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!(third = tryLease(storage, "state", std::chrono::minutes(1))) &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    REQUIRE(third.has_value());
    releaseLease(storage, "state", *second);
    CHECK_FALSE(tryLease(storage, "state", std::chrono::minutes(1)).has_value());
}

TEST_CASE_TEMPLATE_DEFINE("a debounced burst becomes one delivery of the latest event, due after the delay", F,
                          contract_debounce) {
    using namespace contract;
    F fixture(100);
    Storage& storage = *fixture.storage;
    const auto start = Clock::now();
    for (const auto* id : {"push-1", "push-2", "push-3"}) {
        auto req = request(id);
        req.routes[0].delay = std::chrono::seconds(10);
        req.routes[0].coalesceKey = "reconcile-on-push";
        CHECK(accept(storage, std::move(req)).stored);
    }
    CHECK(claim(storage, "am", 10, start).deliveries.empty());
    const auto due = claim(storage, "am", 10, start + std::chrono::seconds(11));
    REQUIRE(due.deliveries.size() == 1);
    CHECK(due.deliveries[0].event->id == "push-3");

    // Once claimed, the next push starts a new burst rather than joining a delivery in flight.
    auto next = request("push-4");
    next.routes[0].coalesceKey = "reconcile-on-push";
    accept(storage, std::move(next));
    const auto after = claim(storage, "am", 10, start + std::chrono::seconds(11));
    REQUIRE(after.deliveries.size() == 1);
    CHECK(after.deliveries[0].event->id == "push-4");
}

TEST_CASE_TEMPLATE_DEFINE("each route delivers its own form of the event", F, contract_route_event) {
    using namespace contract;
    F fixture(100);
    Storage& storage = *fixture.storage;
    auto req = request("e1");
    auto routed = std::make_shared<Event>(*req.event);
    FluxEvent flux;
    flux.metadata["cluster"] = "home";
    routed->payload = flux;
    req.routes[0].event = routed;
    CHECK(accept(storage, std::move(req)).stored);
    const auto claimed = claim(storage, "am", 10);
    REQUIRE(claimed.deliveries.size() == 1);
    REQUIRE(claimed.deliveries[0].event->flux() != nullptr);
    CHECK(claimed.deliveries[0].event->flux()->metadata.at("cluster") == "home");
}

TEST_CASE_TEMPLATE_DEFINE("a Flux object is failing from an error event until an info event, whatever the routes", F,
                          contract_object_health) {
    using namespace contract;
    using std::chrono::minutes;
    F fixture(100);
    Storage& storage = *fixture.storage;
    const TimePoint start = Clock::now();
    CHECK(failingObjects(storage).empty());

    REQUIRE(accept(storage, healthOf("podinfo", "BuildFailed", start)).stored);
    REQUIRE(accept(storage, healthOf("redis", "InstallFailed", start + minutes(1))).stored);
    CHECK(failingNames(failingObjects(storage)) ==
          std::vector<std::string>{"redis InstallFailed", "podinfo BuildFailed"});
    const auto listed = failingObjects(storage);
    REQUIRE(listed.size() == 2);
    CHECK(listed[1].kind == "Kustomization");
    CHECK(listed[1].namespace_ == "apps");
    CHECK(listed[1].failing);
    CHECK(listed[1].at == start);
    CHECK(listed[1].expiry == start + std::chrono::hours(24));

    // Another reason replaces the object's record: one per object, the latest first.
    REQUIRE(accept(storage, healthOf("podinfo", "HealthCheckFailed", start + minutes(2))).stored);
    CHECK(failingNames(failingObjects(storage)) ==
          std::vector<std::string>{"podinfo HealthCheckFailed", "redis InstallFailed"});

    // An info event ends it; a routed event records it as well.
    REQUIRE(accept(storage, healthOf("podinfo", "", start + minutes(3))).stored);
    CHECK(failingNames(failingObjects(storage)) == std::vector<std::string>{"redis InstallFailed"});
    auto routed = healthOf("podinfo", "ArtifactFailed", start + minutes(4));
    routed.routes = request("routed").routes;
    REQUIRE(accept(storage, std::move(routed)).stored);
    CHECK(failingNames(failingObjects(storage)) ==
          std::vector<std::string>{"podinfo ArtifactFailed", "redis InstallFailed"});

    // Past its window an object is not listed any more.
    REQUIRE(accept(storage, healthOf("flaky", "BuildFailed", start, minutes(10))).stored);
    CHECK(failingObjects(storage, start + minutes(9)).size() == 3);
    CHECK(failingNames(failingObjects(storage, start + minutes(10))) ==
          std::vector<std::string>{"podinfo ArtifactFailed", "redis InstallFailed"});
}

}  // namespace fluxrelay

// Runs every contract case above on one spool.
#define FLUXRELAY_STORAGE_CONTRACT(Fixture)                             \
    TEST_CASE_TEMPLATE_INVOKE(contract_claimed_once, Fixture);          \
    TEST_CASE_TEMPLATE_INVOKE(contract_dedup, Fixture);                 \
    TEST_CASE_TEMPLATE_INVOKE(contract_retry, Fixture);                 \
    TEST_CASE_TEMPLATE_INVOKE(contract_release, Fixture);               \
    TEST_CASE_TEMPLATE_INVOKE(contract_dead_letters, Fixture);          \
    TEST_CASE_TEMPLATE_INVOKE(contract_replay_unknown, Fixture);        \
    TEST_CASE_TEMPLATE_INVOKE(contract_bound, Fixture);                 \
    TEST_CASE_TEMPLATE_INVOKE(contract_idempotency, Fixture);           \
    TEST_CASE_TEMPLATE_INVOKE(contract_redelivery_after_full, Fixture); \
    TEST_CASE_TEMPLATE_INVOKE(contract_concurrent_accepts, Fixture);    \
    TEST_CASE_TEMPLATE_INVOKE(contract_values, Fixture);                \
    TEST_CASE_TEMPLATE_INVOKE(contract_lease, Fixture);                 \
    TEST_CASE_TEMPLATE_INVOKE(contract_debounce, Fixture);              \
    TEST_CASE_TEMPLATE_INVOKE(contract_route_event, Fixture);           \
    TEST_CASE_TEMPLATE_INVOKE(contract_object_health, Fixture)
