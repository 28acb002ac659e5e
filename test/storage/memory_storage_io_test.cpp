// The Storage contract, checked on the in-memory spool; and the object health decisions every spool shares.
#include <doctest/doctest.h>

#include "storage/accept.hpp"
#include "storage/storage.hpp"
#include "storage_contract.hpp"

namespace fluxrelay {

struct MemoryStorageFixture {
    explicit MemoryStorageFixture(std::size_t maxQueuedDeliveries) : storage(makeMemoryStorage(maxQueuedDeliveries)) {}
    std::unique_ptr<Storage> storage;
};

}  // namespace fluxrelay

TYPE_TO_STRING(fluxrelay::MemoryStorageFixture);

namespace fluxrelay {

FLUXRELAY_STORAGE_CONTRACT(MemoryStorageFixture);

TEST_CASE("only error and info events tell a Flux object's health") {
    const TimePoint at = Clock::now();
    FluxEvent flux;
    flux.involvedObject = {.kind = "HelmRelease", .namespace_ = "apps", .name = "redis"};
    flux.reason = "InstallFailed";
    const auto of = [&](std::string severity) {
        flux.severity = std::move(severity);
        return objectHealthOf(Event{.id = "e", .source = "flux", .receivedAt = at, .payload = flux},
                              std::chrono::hours(1));
    };
    const auto failing = of("error");
    REQUIRE(failing);
    CHECK(*failing == ObjectHealth{.kind = "HelmRelease",
                                   .namespace_ = "apps",
                                   .name = "redis",
                                   .failing = true,
                                   .reason = "InstallFailed",
                                   .at = at,
                                   .expiry = at + std::chrono::hours(1)});
    const auto healthy = of("info");
    REQUIRE(healthy);
    CHECK_FALSE(healthy->failing);
    CHECK(healthy->reason.empty());
    CHECK_FALSE(of("trace"));
    CHECK_FALSE(objectHealthOf(Event{.id = "g", .source = "github", .receivedAt = at, .payload = GitHubEvent{}},
                               std::chrono::hours(1)));
}

TEST_CASE("a spool lists at most kFailingObjectsHeld failing objects, the most recently heard of") {
    const TimePoint now = Clock::now();
    std::vector<ObjectHealth> held;
    for (std::size_t i = 0; i < kFailingObjectsHeld + 2; ++i) {
        held.push_back({.kind = "Kustomization",
                        .namespace_ = "apps",
                        .name = "app-" + std::to_string(i),
                        .failing = true,
                        .reason = "BuildFailed",
                        .at = now - std::chrono::seconds(i),
                        .expiry = now + std::chrono::hours(1)});
    }
    held[0].expiry = now;  // the newest, but expired
    const FailingObjects sorted = sortFailingObjects(held, now);
    REQUIRE(sorted.kept.size() == kFailingObjectsHeld);
    CHECK(sorted.kept.front().name == "app-1");
    CHECK(sorted.kept.back().name == "app-" + std::to_string(kFailingObjectsHeld));
    REQUIRE(sorted.forgotten.size() == 2);
    CHECK(sorted.forgotten[0].name == "app-0");
    CHECK(sorted.forgotten[1].name == "app-" + std::to_string(kFailingObjectsHeld + 1));
}

}  // namespace fluxrelay
