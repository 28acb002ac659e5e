// The Redis spool against a real redis-server: the Storage contract, plus what only a shared
// spool promises — two replicas deciding dedup as one, a stopped replica's leases taken over,
// Redis going away and coming back.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>
#include <nlohmann/json.hpp>

#include "admin/shared_journal.hpp"
#include "config/config.hpp"
#include "storage/redis_storage.hpp"
#include "storage_contract.hpp"
#include "test/support/redis_server.hpp"

namespace fluxrelay {
namespace {

using namespace std::chrono_literals;
using test::RedisServer;

bool redisMissing() {
    const bool missing = !RedisServer::binary();
    if (missing) {
        std::fprintf(stderr,
                     "redis-server not found on PATH or in /usr/bin: the Redis spool tests are SKIPPED "
                     "(scripts/install-deps.sh installs it)\n");
    }
    return missing;
}

const bool kRedisMissing = redisMissing();

// One server for the whole binary; each spool gets a key prefix of its own.
RedisServer& sharedServer() {
    static RedisServer server;
    return server;
}

std::string freshPrefix() {
    static std::atomic<int> next{0};
    return "test" + std::to_string(getpid()) + "-" + std::to_string(++next) + ":";
}

StorageConfig redisConfig(std::uint16_t port, std::string prefix, std::size_t maxQueued = 1'000'000,
                          Duration claimIdle = 30s) {
    RedisConfig redis;
    redis.port = port;
    redis.keyPrefix = std::move(prefix);
    redis.claimIdle = claimIdle;
    redis.timeout = 2s;
    return StorageConfig{.path = {},
                         .sync = SyncMode::normal,
                         .retention = std::chrono::hours(24),
                         .maxQueuedDeliveries = maxQueued,
                         .redis = redis};
}

RedisTuning fastTuning(std::string consumer = {}) {
    return RedisTuning{.pollInterval = 50ms,
                       .pruneInterval = std::chrono::minutes(5),
                       .reconnectMin = 20ms,
                       .reconnectMax = 200ms,
                       .maxTransactionAttempts = 50,
                       .consumer = std::move(consumer)};
}

// No upkeep during a contract case: its onWork calls would be extra to the ones the contract counts.
RedisTuning quietTuning() {
    RedisTuning tuning = fastTuning();
    tuning.pollInterval = std::chrono::hours(1);
    return tuning;
}

// Polls `condition` every 10 ms for up to `limit`.
template <class Condition>
bool eventually(Condition condition, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

std::unique_ptr<Storage> connectedStorage(const StorageConfig& config, RedisTuning tuning = fastTuning()) {
    auto storage = makeRedisStorage(config, std::move(tuning));
    REQUIRE(eventually([&] { return storage->healthy(); }));
    return storage;
}

}  // namespace

struct RedisStorageFixture {
    explicit RedisStorageFixture(std::size_t maxQueuedDeliveries)
        : storage(connectedStorage(redisConfig(sharedServer().port(), freshPrefix(), maxQueuedDeliveries),
                                   quietTuning())) {}
    std::unique_ptr<Storage> storage;
};

}  // namespace fluxrelay

TYPE_TO_STRING(fluxrelay::RedisStorageFixture);

namespace fluxrelay {

TEST_SUITE_BEGIN("redis storage" * doctest::skip(kRedisMissing));

FLUXRELAY_STORAGE_CONTRACT(RedisStorageFixture);

using namespace contract;

TEST_CASE("two replicas on one Redis apply one dedup state: the same event is accepted once") {
    const std::string prefix = freshPrefix();
    auto a = connectedStorage(redisConfig(sharedServer().port(), prefix), fastTuning("a"));
    auto b = connectedStorage(redisConfig(sharedServer().port(), prefix), fastTuning("b"));
    // Both replicas race for the same keys from many threads; exactly one accept of each key wins.
    constexpr int kKeys = 20;
    std::atomic<int> forwarded{0};
    std::atomic<int> suppressed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            Storage& storage = t % 2 == 0 ? *a : *b;
            for (int k = 0; k < kKeys; ++k) {
                const auto result = accept(storage, request("e" + std::to_string(t) + "-" + std::to_string(k),
                                                            "errors:k" + std::to_string(k)));
                REQUIRE(result.stored);
                (result.suppressed.empty() ? forwarded : suppressed) += 1;
            }
        });
    }
    for (auto& thread : threads) thread.join();
    CHECK(forwarded == kKeys);
    CHECK(suppressed == 3 * kKeys);

    // And each delivery goes to one replica only.
    const auto fromA = claim(*a, "am", 100);
    const auto fromB = claim(*b, "am", 100);
    CHECK(fromA.deliveries.size() + fromB.deliveries.size() == kKeys);
}

TEST_CASE("stateful gates (transitions) see what the other replica forwarded") {
    const std::string prefix = freshPrefix();
    auto a = connectedStorage(redisConfig(sharedServer().port(), prefix), quietTuning());
    auto b = connectedStorage(redisConfig(sharedServer().port(), prefix), quietTuning());
    const auto observed = [](std::string id, std::string observation) {
        auto req = request(std::move(id));
        req.routes[0].dedup = {{.kind = DedupGate::Kind::transitions,
                                .label = "dedup mode transitions",
                                .key = "errors:Kustomization/flux-system/apps",
                                .window = {},
                                .renotify = {},
                                .threshold = 0,
                                .observation = std::move(observation)}};
        return req;
    };
    CHECK(accept(*a, observed("e1", "error/HealthCheckFailed")).suppressed.empty());
    const auto unchanged = accept(*b, observed("e2", "error/HealthCheckFailed"));
    REQUIRE(unchanged.suppressed.size() == 1);
    CHECK((unchanged.suppressed[0].why.verdict == Verdict::unchanged));
    CHECK(accept(*b, observed("e3", "info/ReconciliationSucceeded")).suppressed.empty());
    CHECK(accept(*a, observed("e4", "info/ReconciliationSucceeded")).suppressed.size() == 1);
    CHECK(accept(*a, observed("e5", "error/HealthCheckFailed")).suppressed.empty());
}

TEST_CASE("an idempotency key held by one replica makes the other's accept a duplicate") {
    const std::string prefix = freshPrefix();
    auto a = connectedStorage(redisConfig(sharedServer().port(), prefix), fastTuning("a"));
    auto b = connectedStorage(redisConfig(sharedServer().port(), prefix), fastTuning("b"));
    auto first = request("push-1");
    first.idempotencyKey = "github-delivery:1234";
    first.idempotencyWindow = 24h;
    auto second = first;
    CHECK_FALSE(accept(*a, std::move(first)).duplicateEvent);
    CHECK(accept(*b, std::move(second)).duplicateEvent);
}

TEST_CASE("a stopped replica's leases are taken over after claimIdle, a live one's never") {
    const std::string prefix = freshPrefix();
    const Duration claimIdle = 1s;  // renewed every 50 ms while its holder lives
    const auto config = redisConfig(sharedServer().port(), prefix, 1'000'000, claimIdle);
    auto survivor = connectedStorage(config, fastTuning("survivor"));
    {
        auto doomed = connectedStorage(config, fastTuning("doomed"));
        CHECK(accept(*doomed, request("e1")).stored);
        CHECK(accept(*doomed, request("e2")).stored);
        REQUIRE(claim(*doomed, "am", 1).deliveries.size() == 1);  // leased, never settled
        // While the holder lives (and renews its lease), nobody else gets it, however long it holds it.
        std::vector<Delivery> others;
        const auto until = std::chrono::steady_clock::now() + 2 * claimIdle;
        while (std::chrono::steady_clock::now() < until) {
            auto claimed = claim(*survivor, "am", 10);
            others.insert(others.end(), claimed.deliveries.begin(), claimed.deliveries.end());
            std::this_thread::sleep_for(50ms);
        }
        REQUIRE(others.size() == 1);
        CHECK(others[0].event->id == "e2");
        settle(*survivor, {{.deliveryId = others[0].id, .kind = SettleKind::delivered}});
    }  // gone without settling, as a process killed with -9 would be
    std::vector<Delivery> taken;
    CHECK(eventually([&] {
        auto claimed = claim(*survivor, "am", 10);
        taken.insert(taken.end(), claimed.deliveries.begin(), claimed.deliveries.end());
        return !taken.empty();
    }));
    REQUIRE(taken.size() == 1);
    CHECK(taken[0].event->id == "e1");
    settle(*survivor, {{.deliveryId = taken[0].id, .kind = SettleKind::delivered}});
    const auto counts = asyncCounts(*survivor, asio::use_future).get();
    REQUIRE(counts.size() == 1);
    CHECK(counts[0].waiting == 0);
}

TEST_CASE("counts per target: waiting and dead") {
    auto fixture = RedisStorageFixture(100);
    Storage& storage = *fixture.storage;
    accept(storage, request("e1", "", {"am", "github"}));
    accept(storage, request("e2", "", {"am"}));
    auto claimed = claim(storage, "am", 1);
    REQUIRE(claimed.deliveries.size() == 1);
    settle(storage, {{.deliveryId = claimed.deliveries[0].id, .kind = SettleKind::dead, .error = "HTTP 400"}});
    const auto counts = asyncCounts(storage, asio::use_future).get();
    REQUIRE(counts.size() == 2);
    CHECK(counts[0].target == "am");
    CHECK(counts[0].waiting == 1);
    CHECK(counts[0].dead == 1);
    CHECK(counts[1].target == "github");
    CHECK(counts[1].waiting == 1);
    CHECK(counts[1].dead == 0);
}

TEST_CASE("while Redis is down accepts are refused and the spool is unhealthy; it recovers by itself") {
    RedisServer server(true);
    auto storage = connectedStorage(redisConfig(server.port(), freshPrefix()));
    REQUIRE(accept(*storage, request("before")).stored);
    server.kill();
    CHECK(eventually([&] { return !storage->healthy(); }));
    const auto refused = accept(*storage, request("during"));
    CHECK_FALSE(refused.stored);
    CHECK(refused.error.find("storage unavailable") != std::string::npos);
    const auto nothing = claim(*storage, "am", 10);
    CHECK(nothing.deliveries.empty());
    CHECK(nothing.nextDue.has_value());  // asks again soon, rather than waiting for new work

    server.start();  // appendonly yes: what was acknowledged is still there
    CHECK(eventually([&] { return storage->healthy(); }));
    REQUIRE(accept(*storage, request("after")).stored);
    std::vector<std::string> ids;
    for (const auto& delivery : claim(*storage, "am", 10).deliveries) ids.push_back(delivery.event->id);
    std::sort(ids.begin(), ids.end());
    CHECK(ids == std::vector<std::string>{"after", "before"});
}

TEST_CASE("a settlement made while Redis is down is applied once it is back") {
    RedisServer server(true);
    auto storage = connectedStorage(redisConfig(server.port(), freshPrefix()));
    REQUIRE(accept(*storage, request("e1")).stored);
    auto claimed = claim(*storage, "am", 10);
    REQUIRE(claimed.deliveries.size() == 1);
    server.kill();
    CHECK(eventually([&] { return !storage->healthy(); }));
    settle(*storage, {{.deliveryId = claimed.deliveries[0].id, .kind = SettleKind::delivered}});
    server.start();
    CHECK(eventually([&] {
        const auto counts = asyncCounts(*storage, asio::use_future).get();
        return counts.size() == 1 && counts[0].waiting == 0;
    }));
}

TEST_SUITE_END();

}  // namespace fluxrelay

namespace fluxrelay {

namespace {

Event journalEvent(std::string id, std::string name, std::string severity) {
    FluxEvent flux;
    flux.involvedObject.kind = "HelmRelease";
    flux.involvedObject.namespace_ = "apps";
    flux.involvedObject.name = std::move(name);
    flux.severity = std::move(severity);
    flux.reason = flux.severity == "error" ? "UpgradeFailed" : "UpgradeSucceeded";
    return Event{.id = std::move(id), .source = "flux", .receivedAt = Clock::now(), .payload = flux};
}

// What the status page shows, less the times a journal stamps when it is told (each has its own).
nlohmann::json withoutTimes(nlohmann::json entries) {
    for (auto& entry : entries) {
        if (!entry.contains("id")) entry.erase("time");  // a rejection: stamped when seen
        if (!entry.contains("attempts")) continue;
        for (auto& attempt : entry["attempts"]) attempt.erase("time");
    }
    return entries;
}

}  // namespace

TEST_CASE("replicas share one journal: each lists what either saw, as one journal in memory lists it") {
    const std::string prefix = freshPrefix();
    auto a = connectedStorage(redisConfig(sharedServer().port(), prefix), quietTuning());
    auto b = connectedStorage(redisConfig(sharedServer().port(), prefix), quietTuning());
    Journal onA(kJournalEvents, kJournalObjects);
    Journal onB(kJournalEvents, kJournalObjects);
    Journal inMemory(kJournalEvents, kJournalObjects);
    SpoolJournalRecords recordsOfA(*a);
    SpoolJournalRecords recordsOfB(*b);
    onA.shareThrough(recordsOfA);
    onB.shareThrough(recordsOfB);
    asio::thread_pool pool(1);
    const auto spoolOf = [&](const Journal& journal) -> Storage& { return &journal == &onA ? *a : *b; };
    const auto recent = [&](const Journal& journal) {
        return asio::co_spawn(pool, recentEvents(journal, spoolOf(journal), 10), asio::use_future).get();
    };
    const auto failing = [&](const Journal& journal) {
        return asio::co_spawn(pool, failingObjects(journal, spoolOf(journal)), asio::use_future).get();
    };
    // Records from one replica keep their order; across replicas, the order Redis got them in.
    std::size_t seen = 0;
    const auto onBoth = [&](Journal& replica, const auto& tell) {
        tell(replica);
        tell(inMemory);
        ++seen;
        REQUIRE(eventually([&] { return recent(replica).size() == seen; }));
    };
    const std::vector<RouteFate> routes = {{"errors", Verdict::pass, "", {"am"}}};
    const Event failed = journalEvent("e1", "podinfo", "error");
    onBoth(onA, [&](Journal& journal) { journal.accepted(failed, routes); });
    onBoth(onB, [&](Journal& journal) { journal.rejected("flux", 401, "invalid X-Signature"); });
    const Event otherFailed = journalEvent("e2", "redis", "error");
    onBoth(onB, [&](Journal& journal) { journal.accepted(otherFailed, routes); });
    const AttemptReport retried{.eventId = "e1",
                                .route = "errors",
                                .target = "am",
                                .outcome = AttemptOutcome::retry,
                                .detail = "HTTP 503",
                                .attempt = 1};
    onA.attempted(retried);
    inMemory.attempted(retried);
    REQUIRE(eventually([&] { return recent(onB)[2]["attempts"].size() == 1; }));
    AttemptReport delivered = retried;
    delivered.outcome = AttemptOutcome::delivered;
    delivered.attempt = 2;
    onB.attempted(delivered);  // the other replica took the retry over
    inMemory.attempted(delivered);
    const Event recovered = journalEvent("e3", "podinfo", "info");
    onBoth(onA, [&](Journal& journal) { journal.accepted(recovered, routes); });
    REQUIRE(eventually([&] { return recent(onB)[3]["attempts"].size() == 2; }));

    const nlohmann::json expected = withoutTimes(inMemory.recentEvents(10));
    REQUIRE(expected.size() == 4);
    CHECK(withoutTimes(recent(onA)) == expected);
    CHECK(withoutTimes(recent(onB)) == expected);
    CHECK(recent(onB)[3]["attempts"][1]["outcome"] == "delivered");
    CHECK(failing(onA) == inMemory.failingObjects());
    CHECK(failing(onB) == inMemory.failingObjects());
    REQUIRE(failing(onB).size() == 1);
    CHECK(failing(onB)[0]["name"] == "redis");  // podinfo recovered
}

TEST_CASE("the shared journal keeps the newest events only") {
    const std::string prefix = freshPrefix();
    auto storage = connectedStorage(redisConfig(sharedServer().port(), prefix), quietTuning());
    Journal journal(kJournalEvents, kJournalObjects);
    SpoolJournalRecords records(*storage);
    journal.shareThrough(records);
    asio::thread_pool pool(1);
    const std::size_t posted = kJournalEvents + 200;
    for (std::size_t i = 0; i < posted; ++i) {
        journal.accepted(journalEvent("e" + std::to_string(i), "app-" + std::to_string(i % 7), "info"), {});
    }
    const auto newest = [&] {
        return asio::co_spawn(pool, recentEvents(journal, *storage, kJournalEvents), asio::use_future).get();
    };
    REQUIRE(eventually([&] {
        const auto events = newest();
        return !events.empty() && events[0]["id"] == "e" + std::to_string(posted - 1);
    }));
    const auto events = newest();
    CHECK(events.size() == kJournalEvents);
    CHECK(events.back()["id"] == "e" + std::to_string(posted - kJournalEvents));
}

}  // namespace fluxrelay
