// planRoutes: every route of the event's source, its decision, its targets' rules, its dedup gates
// and its form of the event.
#include "filters/plan.hpp"

#include <doctest/doctest.h>

#include "config/loader.hpp"

namespace fluxrelay {

namespace {

ConfigPtr planConfig() {
    return loadConfigText(R"(
sources:
  - {name: flux, type: flux, path: /flux/events}
  - {name: github, type: github, path: /github/webhook}
targets:
  - {name: am, type: alertmanager, address: "http://am:9093/api/v2/alerts", resolve: true}
  - {name: plain, type: alertmanager, address: "http://am2:9093/api/v2/alerts"}
  - {name: statuses, type: github, address: "https://github.com/o/r", token: t}
  - {name: reconcile, type: flux-receiver, address: "http://nc/", receiver: {name: r, namespace: flux-system}, token: t}
routes:
  - name: errors
    source: flux
    eventSeverity: error
    eventMetadata: {cluster: home}
    targets: [am, plain]
  - {name: everything, source: flux, dedup: {mode: none}, targets: [statuses]}
  - {name: pushes, source: github, debounce: 2s, targets: [reconcile]}
)",
                          "test.yaml");
}

EventPtr fluxEvent(std::string severity, std::string reason) {
    FluxEvent flux;
    flux.involvedObject.kind = "Kustomization";
    flux.involvedObject.namespace_ = "flux-system";
    flux.involvedObject.name = "apps";
    flux.severity = std::move(severity);
    flux.reason = std::move(reason);
    flux.message = "message";
    flux.reportingController = "kustomize-controller";
    return std::make_shared<const Event>(Event{.id = "e1", .source = "flux", .receivedAt = {}, .payload = flux});
}

}  // namespace

TEST_CASE("planRoutes: an error takes the error route with its metadata and dedup, in config order") {
    const ConfigPtr config = planConfig();
    const auto plans = planRoutes(*config, fluxEvent("error", "HealthCheckFailed"));
    REQUIRE(plans.size() == 2);  // the github source's route is not asked
    CHECK(plans[0].route == "errors");
    CHECK(plans[0].decision.passed());
    CHECK(plans[0].event->flux()->metadata.at("cluster") == "home");
    CHECK_FALSE(plans[0].dedup.empty());  // mode flux by default
    REQUIRE(plans[0].targets.size() == 2);
    CHECK(plans[0].targets[0].decision.passed());
    CHECK(plans[0].delivers());
    CHECK(plans[1].route == "everything");
    CHECK(plans[1].dedup.empty());                 // mode none
    CHECK(plans[1].targets[0].decision.passed());  // GitHub statuses take errors
}

TEST_CASE("planRoutes: an info event on an errors-only route resolves, on resolve targets only, never deduped") {
    const ConfigPtr config = planConfig();
    const auto plans = planRoutes(*config, fluxEvent("info", "ReconciliationSucceeded"));
    REQUIRE(plans.size() == 2);
    const RoutePlan& errors = plans[0];
    CHECK(errors.decision.passed());
    CHECK(errors.event->flux()->resolveOnly);
    CHECK(errors.dedup.empty());
    CHECK(errors.targets[0].decision.passed());                        // am: resolve: true
    CHECK((errors.targets[1].decision.verdict == Verdict::severity));  // plain: Flux's rule stands
    // A GitHub status takes commit status updates, not every info event.
    CHECK((plans[1].targets[0].decision.verdict == Verdict::targetRule));
    CHECK_FALSE(plans[1].delivers());
}

TEST_CASE("planRoutes: a GitHub route's debounce delays and coalesces its deliveries") {
    const ConfigPtr config = planConfig();
    GitHubEvent push{.event = "push", .deliveryId = "d1", .ref = "refs/heads/main", .deleted = false, .body = "{}"};
    const auto plans = planRoutes(*config, std::make_shared<const Event>(Event{
                                               .id = "e2", .source = "github", .receivedAt = {}, .payload = push}));
    REQUIRE(plans.size() == 1);
    CHECK(plans[0].delivers());
    CHECK(plans[0].delay == std::chrono::seconds(2));
    CHECK(plans[0].coalesceKey == "pushes");
}

}  // namespace fluxrelay
