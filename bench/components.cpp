// Each stage of ingest timed alone over bench/run.sh's event pool, so a missed target can be
// explained with measurements: the signature check, the parse, routing's dedup key, the storage
// record, and the spool's accept (with its group commit) with and without a dedup gate, and with
// the object health record a flux source's events add.
//
//   fluxrelay-bench-components POOL HMAC_KEY_FILE SPOOL_FOLDER [IN_FLIGHT [REDIS_PORT]]
//
// POOL is bench/run.sh's "signature<TAB>body" file. With REDIS_PORT, the accepts are also timed
// into the Redis spool at 127.0.0.1:REDIS_PORT (its server's CPU is not counted). Prints one line per stage: CPU µs per
// event (the whole process, so the spool's writer thread counts) and events/s on the wall clock.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio/use_future.hpp>

#include "config/config.hpp"
#include "core/event.hpp"
#include "filters/dedup.hpp"
#include "gateway/flux_source.hpp"
#include "storage/sqlite_storage.hpp"

namespace {

using namespace fluxrelay;

double processSeconds() {
    timespec now{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

// Runs `stage` over `count` events and prints its cost per event.
template <class Stage>
void measure(const char* name, std::size_t count, Stage stage) {
    const double cpu0 = processSeconds();
    const auto wall0 = std::chrono::steady_clock::now();
    stage();
    const double cpu = processSeconds() - cpu0;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    std::printf("%-28s %8.2f µs CPU/event %10.0f events/s\n", name, cpu * 1e6 / static_cast<double>(count),
                static_cast<double>(count) / wall);
}

// Accepts every event into a fresh spool with `inFlight` accepts outstanding at a time, as that
// many connections would; with `gate`, each route holds a mode-flux dedup key as the bench's do.
// With `health`, each accept also records its object's health, as ingest does for a flux source.
void acceptAll(std::unique_ptr<Storage> storage, const std::vector<EventPtr>& events, std::size_t inFlight, bool gate,
               bool health = false) {
    std::deque<std::future<AcceptResult>> pending;
    std::size_t refused = 0;
    const auto collect = [&] {
        refused += pending.front().get().stored ? 0 : 1;
        pending.pop_front();
    };
    for (const auto& event : events) {
        std::vector<DedupGate> gates;
        if (gate) {
            gates.push_back({.kind = DedupGate::Kind::window,
                             .label = "dedup mode flux",
                             .key = "route:flux:" + fluxDedupKey(*event->flux()),
                             .window = std::chrono::seconds(1),
                             .renotify = {},
                             .threshold = 0,
                             .observation = {}});
        }
        AcceptRequest request{
            .event = event,
            .routes = {{.name = "route",
                        .dedup = std::move(gates),
                        .event = event,
                        .targets = {"alertmanager"},
                        .delay = {},
                        .coalesceKey = {}}},
            .idempotencyKey = {},
            .idempotencyWindow = {},
            .objectHealth = health ? objectHealthOf(*event, std::chrono::hours(24)) : std::optional<ObjectHealth>()};
        pending.push_back(asyncAccept(*storage, std::move(request), boost::asio::use_future));
        if (pending.size() >= inFlight) collect();
    }
    while (!pending.empty()) collect();
    if (refused > 0) std::fprintf(stderr, "components: %zu accepts refused\n", refused);
}

std::unique_ptr<Storage> freshSqlite(const std::filesystem::path& folder) {
    std::filesystem::remove_all(folder);
    return makeSqliteStorage(
        StorageConfig{.path = folder.string(), .sync = SyncMode::normal, .maxQueuedDeliveries = 10'000'000}, {});
}

// A Redis spool under a key prefix of its own, ready (connected) before it is timed.
std::unique_ptr<Storage> freshRedis(std::uint16_t port, const std::string& prefix) {
    StorageConfig config{.path = {}, .sync = SyncMode::normal, .maxQueuedDeliveries = 10'000'000};
    config.redis = RedisConfig{};
    config.redis->port = port;
    config.redis->keyPrefix = prefix;
    auto storage = makeRedisStorage(config);
    for (int i = 0; i < 500 && !storage->healthy(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return storage;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s POOL HMAC_KEY_FILE SPOOL_FOLDER [IN_FLIGHT]\n", argv[0]);
        return 2;
    }
    std::vector<std::pair<std::string, std::string>> pool;  // signature header, body
    {
        std::ifstream in(argv[1]);
        for (std::string line; std::getline(in, line);) {
            const auto tab = line.find('\t');
            pool.emplace_back("sha256=" + line.substr(0, tab), line.substr(tab + 1));
        }
    }
    std::string key;
    std::getline(std::ifstream(argv[2]), key);
    const std::size_t inFlight = argc > 4 ? std::stoul(argv[4]) : 32;
    spdlog::set_level(spdlog::level::warn);  // the spools' start-up lines are not results
    const std::size_t count = pool.size();
    if (count == 0) return 2;

    std::size_t failures = 0;
    measure("verify X-Signature", count, [&] {
        for (const auto& [signature, body] : pool) failures += verifyFluxSignature(key, signature, body) ? 0 : 1;
    });
    std::vector<EventPtr> events;
    events.reserve(count);
    measure("parse body (SAX)", count, [&] {
        for (const auto& [signature, body] : pool) {
            auto parsed = parseFluxEvent(body);
            auto* flux = std::get_if<FluxEvent>(&parsed);
            if (!flux) {
                ++failures;
                continue;
            }
            events.push_back(std::make_shared<const Event>(
                Event{.id = newEventId(), .source = "flux", .receivedAt = Clock::now(), .payload = std::move(*flux)}));
        }
    });
    std::size_t bytes = 0;
    measure("dedup key (mode flux)", count, [&] {
        for (const auto& event : events) bytes += fluxDedupKey(*event->flux()).size();
    });
    measure("storage record (text)", count, [&] {
        for (const auto& event : events) bytes += toStorageText(*event).size();
    });
    measure("spool accept, no dedup", count, [&] { acceptAll(freshSqlite(argv[3]), events, inFlight, false); });
    measure("spool accept, dedup gate", count, [&] { acceptAll(freshSqlite(argv[3]), events, inFlight, true); });
    measure("spool accept, gate + health", count,
            [&] { acceptAll(freshSqlite(argv[3]), events, inFlight, true, true); });
    if (argc > 5) {
        const auto port = static_cast<std::uint16_t>(std::stoul(argv[5]));
        auto plain = freshRedis(port, "components-plain:");
        auto gated = freshRedis(port, "components-gated:");
        measure("redis accept, no dedup", count, [&] { acceptAll(std::move(plain), events, inFlight, false); });
        measure("redis accept, dedup gate", count, [&] { acceptAll(std::move(gated), events, inFlight, true); });
    }
    std::filesystem::remove_all(argv[3]);
    if (failures > 0 || bytes == 0) {
        std::fprintf(stderr, "components: %zu events failed to verify or parse\n", failures);
        return 1;
    }
    return 0;
}
