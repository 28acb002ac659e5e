// Journal: bounded history, attempts attached to their event, failing objects.
#include <doctest/doctest.h>

#include "admin/journal.hpp"

namespace fluxrelay {

namespace {
Event fluxEvent(std::string id, std::string name, std::string severity) {
    FluxEvent flux;
    flux.involvedObject.kind = "Kustomization";
    flux.involvedObject.namespace_ = "flux-system";
    flux.involvedObject.name = std::move(name);
    flux.severity = std::move(severity);
    flux.reason = "ReconciliationFailed";
    return Event{.id = std::move(id), .source = "flux", .receivedAt = Clock::now(), .payload = flux};
}
}  // namespace

TEST_CASE("events are listed newest first with their routes and attempts") {
    Journal journal(10, 10);
    const std::vector<RouteFate> routes = {{"errors", Verdict::pass, "", {"am"}},
                                           {"github", Verdict::severity, "errors only", {}}};
    journal.accepted(fluxEvent("e1", "apps", "error"), routes);
    journal.rejected("flux", 401, "invalid X-Signature");
    journal.attempted({.eventId = "e1",
                       .route = "errors",
                       .target = "am",
                       .outcome = AttemptOutcome::retry,
                       .detail = "HTTP 503",
                       .attempt = 1});

    const auto events = journal.recentEvents(10);
    REQUIRE(events.size() == 2);
    CHECK(events[0]["status"] == "rejected");
    CHECK(events[0]["httpStatus"] == 401);
    CHECK(events[1]["id"] == "e1");
    CHECK(events[1]["routes"][1]["verdict"] == "severity");
    REQUIRE(events[1]["attempts"].size() == 1);
    CHECK(events[1]["attempts"][0]["detail"] == "HTTP 503");
}

TEST_CASE("the journal keeps only the newest events") {
    Journal journal(3, 10);
    for (int i = 0; i < 5; ++i) {
        journal.accepted(fluxEvent("e" + std::to_string(i), "apps", "info"), {});
    }
    const auto events = journal.recentEvents(10);
    REQUIRE(events.size() == 3);
    CHECK(events[0]["id"] == "e4");
    CHECK(events[2]["id"] == "e2");
    journal.attempted({.eventId = "e0", .target = "am", .outcome = AttemptOutcome::delivered});  // gone: ignored
    journal.attempted({.eventId = "e3", .target = "am", .outcome = AttemptOutcome::delivered});
    CHECK(journal.recentEvents(10)[1]["attempts"].size() == 1);
}

TEST_CASE("an object is failing while its latest event is an error") {
    Journal journal(10, 10);
    journal.accepted(fluxEvent("e1", "apps", "error"), {});
    journal.accepted(fluxEvent("e2", "infra", "error"), {});
    CHECK(journal.failingObjects().size() == 2);
    journal.accepted(fluxEvent("e3", "apps", "info"), {});
    const auto failing = journal.failingObjects();
    REQUIRE(failing.size() == 1);
    CHECK(failing[0]["name"] == "infra");
}

TEST_CASE("an object updated again is the last to be forgotten") {
    Journal journal(10, 2);
    journal.accepted(fluxEvent("e1", "apps", "error"), {});
    journal.accepted(fluxEvent("e2", "infra", "error"), {});
    journal.accepted(fluxEvent("e3", "apps", "error"), {});  // apps becomes the most recent
    journal.accepted(fluxEvent("e4", "crds", "error"), {});  // over the bound: infra goes
    const auto failing = journal.failingObjects();
    REQUIRE(failing.size() == 2);
    CHECK(failing[0]["name"] == "crds");
    CHECK(failing[1]["name"] == "apps");
    CHECK(failing[1]["id"] == "e3");
}

TEST_CASE("a GitHub event is summarized by its event, delivery and ref, and attempts stay bounded") {
    Journal journal(10, 10);
    journal.accepted(Event{.id = "g1",
                           .source = "github",
                           .receivedAt = Clock::now(),
                           .payload = GitHubEvent{.event = "push", .deliveryId = "d-1", .ref = "refs/heads/main"}},
                     {});
    for (int attempt = 1; attempt <= 25; ++attempt) {
        journal.attempted(
            {.eventId = "g1", .target = "receiver", .outcome = AttemptOutcome::retry, .attempt = attempt});
    }
    const auto events = journal.recentEvents(10);
    REQUIRE(events.size() == 1);
    CHECK(events[0]["githubEvent"] == "push");
    CHECK(events[0]["delivery"] == "d-1");
    CHECK(events[0]["ref"] == "refs/heads/main");
    CHECK_FALSE(events[0].contains("kind"));
    REQUIRE(events[0]["attempts"].size() == 20);
    CHECK(events[0]["attempts"][0]["attempt"] == 6);  // the oldest five made room
    CHECK(events[0]["attempts"][19]["attempt"] == 25);
    CHECK(journal.failingObjects().empty());
}

}  // namespace fluxrelay
