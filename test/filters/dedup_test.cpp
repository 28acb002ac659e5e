// Unit tests for dedup keys: notification-controller's key and the normalized mode's message masking.
#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "core/crypto.hpp"
#include "filters/dedup.hpp"

using namespace fluxrelay;

namespace {

const std::string healthMessage =
    "Health check failed after 5m0.033s: timeout waiting for: [Deployment/default/echo-server status: 'InProgress']";
const std::string sha = "5f4c8a2b3e1d0f9a8b7c6d5e4f3a2b1c0d9e8f7a";

FluxEvent kustomization(std::string message, std::map<std::string, std::string> metadata = {}) {
    FluxEvent flux;
    flux.involvedObject = {"Kustomization", "flux-system", "cluster-apps", "6f1d2c3b-uid",
                           "kustomize.toolkit.fluxcd.io/v1"};
    flux.severity = "error";
    flux.reason = "HealthCheckFailed";
    flux.message = std::move(message);
    flux.metadata = std::move(metadata);
    flux.reportingController = "kustomize-controller";
    flux.timestamp = "2024-05-01T10:00:00Z";
    return flux;
}

Event asEvent(FluxEvent flux) {
    Event event;
    event.source = "flux";
    event.payload = std::move(flux);
    return event;
}

RouteConfig route(DedupMode mode) {
    RouteConfig r;
    r.name = "errors-to-alertmanager";
    r.source = "flux";
    r.dedup.mode = mode;
    return r;
}

std::string hexSha256(const std::string& text) { return toHex(sha256(text)); }

}  // namespace

TEST_CASE("fluxDedupKey is notification-controller's eventKeyFunc") {
    const FluxEvent event =
        kustomization(healthMessage, {{"originRevision", "sha1:0c5e6f2a1b3d4c5e6f708192a3b4c5d6e7f80912"},
                                      {"revision", "refs/heads/main@sha1:" + sha},
                                      {"summary", "not part of the key"}});
    const std::string joined =
        "event/name=cluster-apps/namespace=flux-system/kind=Kustomization/message=" + healthMessage +
        "/originRevision=sha1:0c5e6f2a1b3d4c5e6f708192a3b4c5d6e7f80912/revision=refs/heads/main@sha1:" + sha;
    CHECK(fluxDedupKey(event) == hexSha256(joined));
    // Computed once outside the code under test, over the same joined string.
    CHECK(fluxDedupKey(event) == "b646da4141dabd3594dc2a6080ddffc88431c30efe361f4ab09b18b3e9e87be8");
}

TEST_CASE("fluxDedupKey without revisions has only the object and message") {
    const FluxEvent event = kustomization("Reconciliation finished in 2.31s, next run in 30m0s");
    CHECK(fluxDedupKey(event) == "9c88302067835cc3f7392710b640ba3fbadc3d5e0d532021c63d45ecefd9571e");
}

TEST_CASE("fluxDedupKey ends with the token, as helm-controller's events carry one") {
    FluxEvent event;
    event.involvedObject = {"HelmRelease", "apps", "plex", "", "helm.toolkit.fluxcd.io/v2"};
    event.severity = "info";
    event.reason = "UpgradeSucceeded";
    event.message = "Helm upgrade succeeded for release apps/plex.v7 with chart plex@6.5.4";
    event.metadata = {{"revision", "6.5.4"}};
    event.dedupToken = "1a2b3c4d5e6f7a8b";
    CHECK(fluxDedupKey(event) == hexSha256("event/name=plex/namespace=apps/kind=HelmRelease/message=" + event.message +
                                           "/revision=6.5.4/token=1a2b3c4d5e6f7a8b"));
    CHECK(fluxDedupKey(event) == "cce034e3b902409516880d68d79a089a8e8b2aae077c4f01cbc8e2c1638e02b6");

    FluxEvent otherValues = event;
    otherValues.dedupToken = "9f8e7d6c5b4a3921";
    CHECK(fluxDedupKey(event) != fluxDedupKey(otherValues));
}

TEST_CASE("fluxDedupKey: severity, reason, timestamp and other metadata do not change the key") {
    FluxEvent a = kustomization(healthMessage, {{"revision", "main@sha1:" + sha}});
    FluxEvent b = a;
    b.severity = "info";
    b.reason = "Other";
    b.timestamp = "2024-05-01T11:00:00Z";
    b.reportingInstance = "kustomize-controller-7d9f8b6c5-x2x4z";
    b.metadata["summary"] = "cluster home";
    CHECK(fluxDedupKey(a) == fluxDedupKey(b));

    FluxEvent newRevision = a;
    newRevision.metadata["revision"] = "main@sha1:0000000000000000000000000000000000000001";
    CHECK(fluxDedupKey(a) != fluxDedupKey(newRevision));

    // Present but empty still adds the component, as Flux checks presence.
    FluxEvent emptyRevision = a;
    emptyRevision.metadata["revision"] = "";
    FluxEvent noRevision = a;
    noRevision.metadata.clear();
    CHECK(fluxDedupKey(emptyRevision) != fluxDedupKey(noRevision));
}

TEST_CASE("dedupKey: none and GitHub events have no key") {
    CHECK(dedupKey(route(DedupMode::none), asEvent(kustomization(healthMessage))).empty());

    Event push;
    push.source = "github";
    push.payload = GitHubEvent{"push", "72d3162e", "refs/heads/main", false, "{}"};
    CHECK(dedupKey(route(DedupMode::flux), push).empty());
}

TEST_CASE("dedupKey: flux mode is the route name and Flux's key") {
    const FluxEvent flux = kustomization(healthMessage, {{"revision", "main@sha1:" + sha}});
    CHECK(dedupKey(route(DedupMode::flux), asEvent(flux)) == "errors-to-alertmanager:" + fluxDedupKey(flux));

    RouteConfig other = route(DedupMode::flux);
    other.name = "errors-to-github";
    CHECK(dedupKey(other, asEvent(flux)) != dedupKey(route(DedupMode::flux), asEvent(flux)));

    // Flux mode keeps volatile messages apart: this is what normalized mode is for.
    CHECK(dedupKey(route(DedupMode::flux), asEvent(kustomization("Reconciliation finished in 2.31s"))) !=
          dedupKey(route(DedupMode::flux), asEvent(kustomization("Reconciliation finished in 1.07s"))));
}

TEST_CASE("dedupKey: normalized mode hashes the masked message") {
    const RouteConfig normalized = route(DedupMode::normalized);
    const Event first = asEvent(kustomization("Reconciliation finished in 2.31s, next run in 5m0s"));
    const Event second = asEvent(kustomization("Reconciliation finished in 1.07s, next run in 5m0s"));
    CHECK(dedupKey(normalized, first) == dedupKey(normalized, second));

    FluxEvent masked = kustomization("Reconciliation finished in <duration>, next run in <duration>");
    CHECK(dedupKey(normalized, first) == "errors-to-alertmanager:" + fluxDedupKey(masked));

    // A new revision is a new event, in the message and in the metadata.
    const Event applied = asEvent(kustomization("Applied revision: main@sha1:" + sha));
    const Event appliedNext =
        asEvent(kustomization("Applied revision: main@sha1:9e8f7a5f4c8a2b3e1d0f9a8b7c6d5e4f3a2b1c0d"));
    CHECK(dedupKey(normalized, applied) != dedupKey(normalized, appliedNext));
    const Event sameMessageNewRevision = asEvent(kustomization(healthMessage, {{"revision", "main@sha1:" + sha}}));
    const Event sameMessageOldRevision =
        asEvent(kustomization(healthMessage, {{"revision", "main@sha1:9e8f7a5f4c8a2b3e1d0f9a8b7c6d5e4f3a2b1c0d"}}));
    CHECK(dedupKey(normalized, sameMessageNewRevision) != dedupKey(normalized, sameMessageOldRevision));
}

TEST_CASE("dedupKey: transitions keys the object, not the message") {
    CHECK(dedupKey(route(DedupMode::transitions), asEvent(kustomization(healthMessage))) ==
          "errors-to-alertmanager:transitions:Kustomization/flux-system/cluster-apps");
    CHECK(dedupKey(route(DedupMode::transitions), asEvent(kustomization("another message"))) ==
          dedupKey(route(DedupMode::transitions), asEvent(kustomization(healthMessage))));
}

// Gate state in a map, with the clock in the test's hands.
struct MapStateStore final : DedupStateStore {
    std::optional<std::string> read(const std::string& key, TimePoint now) override {
        const auto it = values.find(key);
        if (it == values.end() || it->second.second <= now) return std::nullopt;
        return it->second.first;
    }
    void put(const std::string& key, const std::string& value, TimePoint expiry) override {
        values[key] = {value, expiry};
    }
    void erase(const std::string& key) override { values.erase(key); }
    std::map<std::string, std::pair<std::string, TimePoint>> values;
};

const TimePoint t0 = TimePoint(std::chrono::hours(24 * 365 * 55));

FluxEvent withSeverity(std::string severity, std::string reason, std::string message = healthMessage) {
    FluxEvent flux = kustomization(std::move(message));
    flux.severity = std::move(severity);
    flux.reason = std::move(reason);
    return flux;
}

// Runs the route's gates for one event at `at`: the suppression, or nullopt when forwarded.
std::optional<DedupSuppression> offer(const RouteConfig& r, MapStateStore& store, const FluxEvent& flux, TimePoint at,
                                      std::string id = "e") {
    return applyDedupGates(dedupGates(r, asEvent(flux)), store, at, id);
}

TEST_CASE("window gate: the first event of a key passes, the rest of the window names it") {
    MapStateStore store;
    const RouteConfig r = route(DedupMode::flux);
    const FluxEvent flux = kustomization(healthMessage);
    CHECK_FALSE(offer(r, store, flux, t0, "first"));
    const auto again = offer(r, store, flux, t0 + std::chrono::minutes(4), "second");
    REQUIRE(again);
    CHECK((again->verdict == Verdict::duplicate));
    CHECK(again->reason.starts_with("dedup mode flux: same dedup key as event first, forwarded at "));
    CHECK_FALSE(offer(r, store, flux, t0 + std::chrono::minutes(5), "third"));
}

TEST_CASE("transitions: forwards changes of severity or reason only") {
    MapStateStore store;
    const RouteConfig r = route(DedupMode::transitions);
    const auto failing = withSeverity("error", "HealthCheckFailed");
    CHECK_FALSE(offer(r, store, failing, t0, "fail-1"));
    // The same failure with another message (a new timeout value) is no transition.
    const auto unchanged = offer(r, store, withSeverity("error", "HealthCheckFailed", "timed out after 3m"),
                                 t0 + std::chrono::minutes(10), "fail-2");
    REQUIRE(unchanged);
    CHECK((unchanged->verdict == Verdict::unchanged));
    CHECK(
        unchanged->reason.starts_with("dedup mode transitions: unchanged error/HealthCheckFailed since event fail-1"));
    // Another reason, then recovery, then the first failure again: each is a transition.
    CHECK_FALSE(offer(r, store, withSeverity("error", "ReconciliationFailed"), t0 + std::chrono::minutes(20)));
    CHECK_FALSE(offer(r, store, withSeverity("info", "ReconciliationSucceeded"), t0 + std::chrono::minutes(30)));
    CHECK(offer(r, store, withSeverity("info", "ReconciliationSucceeded"), t0 + std::chrono::minutes(40)));
    CHECK_FALSE(offer(r, store, failing, t0 + std::chrono::minutes(50)));
    // Another object has its own state.
    FluxEvent other = failing;
    other.involvedObject.name = "apps";
    CHECK_FALSE(offer(r, store, other, t0 + std::chrono::minutes(51)));
}

TEST_CASE("transitions: renotify re-sends an unchanged failure at most that often") {
    MapStateStore store;
    RouteConfig r = route(DedupMode::transitions);
    r.dedup.renotify = std::chrono::hours(4);
    const auto failing = withSeverity("error", "HealthCheckFailed");
    CHECK_FALSE(offer(r, store, failing, t0, "fail-1"));
    const auto early = offer(r, store, failing, t0 + std::chrono::hours(4) - std::chrono::seconds(1));
    REQUIRE(early);
    CHECK(early->reason.find("renotify after ") != std::string::npos);
    CHECK_FALSE(offer(r, store, failing, t0 + std::chrono::hours(4), "fail-renotified"));
    // The next renotify counts from the re-send, not from the first failure.
    CHECK(offer(r, store, failing, t0 + std::chrono::hours(7)));
    CHECK_FALSE(offer(r, store, failing, t0 + std::chrono::hours(8)));
    // An unchanged success is never re-sent.
    const auto healthy = withSeverity("info", "ReconciliationSucceeded");
    CHECK_FALSE(offer(r, store, healthy, t0 + std::chrono::hours(9)));
    CHECK(offer(r, store, healthy, t0 + std::chrono::hours(20)));
}

TEST_CASE("threshold: errors pass once N fell inside the window; anything else restarts the count") {
    MapStateStore store;
    RouteConfig r = route(DedupMode::none);
    r.dedup.threshold = 3;
    r.dedup.window = std::chrono::minutes(10);
    const auto failing = withSeverity("error", "HealthCheckFailed");
    const auto first = offer(r, store, failing, t0);
    REQUIRE(first);
    CHECK((first->verdict == Verdict::belowThreshold));
    CHECK(first->reason == "dedup threshold 3: failure 1 of 3 within 10m0s");
    CHECK(offer(r, store, failing, t0 + std::chrono::minutes(4)));
    CHECK_FALSE(offer(r, store, failing, t0 + std::chrono::minutes(8)));
    CHECK_FALSE(offer(r, store, failing, t0 + std::chrono::minutes(9)));  // still failing: keeps passing

    // Failures further apart than the window never add up.
    MapStateStore sparse;
    for (int i = 0; i < 5; ++i) CHECK(offer(r, sparse, failing, t0 + std::chrono::minutes(6) * i));

    // A success restarts the count (and passes itself).
    CHECK_FALSE(offer(r, store, withSeverity("info", "ReconciliationSucceeded"), t0 + std::chrono::minutes(10)));
    CHECK(offer(r, store, failing, t0 + std::chrono::minutes(11)));
}

TEST_CASE("threshold then mode: a failure below the threshold holds no dedup key") {
    MapStateStore store;
    RouteConfig r = route(DedupMode::flux);
    r.dedup.threshold = 2;
    const auto failing = withSeverity("error", "HealthCheckFailed");
    const auto below = offer(r, store, failing, t0);
    REQUIRE(below);
    CHECK((below->verdict == Verdict::belowThreshold));
    CHECK_FALSE(offer(r, store, failing, t0 + std::chrono::minutes(1)));  // second failure: forwarded once
    const auto repeat = offer(r, store, failing, t0 + std::chrono::minutes(2));
    REQUIRE(repeat);
    CHECK((repeat->verdict == Verdict::duplicate));  // then flux's window applies
}

TEST_CASE("decideDedup: unreadable state counts as none") {
    const DedupGate gate{.kind = DedupGate::Kind::transitions,
                         .label = "dedup mode transitions",
                         .key = "k",
                         .window = {},
                         .renotify = {},
                         .threshold = 0,
                         .observation = "error/Failed"};
    for (const char* held : {"", "[]", "{", "{\"state\": 3}", "null"}) {
        CAPTURE(held);
        CHECK(decideDedup(gate, std::string(held), t0, "e").forward);
    }
    // A field of the wrong type reads as absent; it does not throw.
    const auto wrongType =
        decideDedup(gate, std::string(R"({"state": "error/Failed", "event": 7, "at": "x"})"), t0, "e");
    CHECK_FALSE(wrongType.forward);
    CHECK(wrongType.reason.find("since event ,") != std::string::npos);
    // Times far outside a TimePoint's range are clamped, not overflowed.
    const std::string farFuture = R"({"state": "error/Failed", "event": "e0", "at": 9223372036854775807})";
    CHECK_FALSE(decideDedup(gate, farFuture, t0, "e").forward);
    const DedupGate window{
        .kind = DedupGate::Kind::window, .label = "dedup mode flux", .key = "k", .window = std::chrono::minutes(5)};
    CHECK_FALSE(decideDedup(window, std::string(R"({"event": "e0", "at": -9223372036854775807})"), t0, "e").forward);
}

TEST_CASE("normalizeMessage masks Go durations") {
    CHECK(normalizeMessage("Reconciliation finished in 2.31s, next run in 5m0s") ==
          "Reconciliation finished in <duration>, next run in <duration>");
    CHECK(normalizeMessage("Health check failed after 5m0.033s: timeout waiting for: [Deployment/default/echo-server "
                           "status: 'InProgress']") ==
          "Health check failed after <duration>: timeout waiting for: [Deployment/default/echo-server status: "
          "'InProgress']");
    CHECK(normalizeMessage("next run in 1h0m0s") == "next run in <duration>");
    CHECK(normalizeMessage("took 150ms.") == "took <duration>.");
    CHECK(normalizeMessage("took 12\xC2\xB5s") == "took <duration>");
}

TEST_CASE("normalizeMessage masks standalone numbers") {
    CHECK(normalizeMessage("retries exhausted after 3 attempts") == "retries exhausted after <num> attempts");
    CHECK(normalizeMessage("dial tcp 140.82.112.3:443: i/o timeout") == "dial tcp <num>:<num>: i/o timeout");
    CHECK(normalizeMessage("observed generation 12 != 13") == "observed generation <num> != <num>");
    CHECK(normalizeMessage("Helm upgrade failed for release apps/plex with chart plex@6.5.4: timed out") ==
          "Helm upgrade failed for release apps/plex with chart plex@<num>: timed out");
}

TEST_CASE("normalizeMessage masks byte counts") {
    CHECK(normalizeMessage("artifact is 1.2MB, limit 50MiB") == "artifact is <size>, limit <size>");
    CHECK(normalizeMessage("fetched 2048 bytes") == "fetched <num> bytes");
    CHECK(normalizeMessage("wrote 512B") == "wrote <size>");
    // A unit that is not a byte unit, and a word that only starts with digits, stay.
    CHECK(normalizeMessage("node 3Bx and 4xB") == "node 3Bx and 4xB");
}

TEST_CASE("normalizeMessage: volatile variants of one message collapse, different messages do not") {
    CHECK(normalizeMessage("Reconciliation finished in 2.31s, next run in 1h0m0s") ==
          normalizeMessage("Reconciliation finished in 12.7s, next run in 1h0m0s"));
    CHECK(normalizeMessage("Reconciliation finished in 2.31s, next run in 5m0s") ==
          normalizeMessage("Reconciliation finished in 870ms, next run in 5m0s"));
    CHECK(normalizeMessage("Health check failed after 5m0.033s") ==
          normalizeMessage("Health check failed after 5m0.107s"));
    // What happened differs: these must stay apart.
    CHECK(normalizeMessage("Reconciliation finished in 2.31s") !=
          normalizeMessage("Reconciliation failed after 2.31s"));
    CHECK(normalizeMessage("Applied revision: main@sha1:" + sha) !=
          normalizeMessage("Applied revision: main@sha1:9e8f7a5f4c8a2b3e1d0f9a8b7c6d5e4f3a2b1c0d"));
    CHECK(normalizeMessage("Deployment/apps/plex configured") != normalizeMessage("Deployment/apps/sonarr configured"));
}

TEST_CASE("normalizeMessage keeps revisions and digits inside words") {
    const std::string applied = "Applied revision: main@sha1:" + sha;
    CHECK(normalizeMessage(applied) == applied);
    const std::string oci = "stored artifact with revision 'v1.2.3@sha256:0123456789abcdef0123456789abcdef'";
    CHECK(normalizeMessage(oci) == oci);
    const std::string helm = "release podinfo.v12 on k3s-node01, pod podinfo-7d9f8b6c5-x2x4z";
    CHECK(normalizeMessage(helm) == helm);
    CHECK(normalizeMessage("") == "");
    CHECK(normalizeMessage("no numbers here.") == "no numbers here.");
}
