// Unit tests for route matching and target rules against realistic Flux and GitHub events.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <re2/re2.h>

#include "filters/route.hpp"

using namespace fluxrelay;

namespace {

std::shared_ptr<const re2::RE2> compile(std::string_view text) {
    auto regex = std::make_shared<const re2::RE2>(text);
    REQUIRE(regex->ok());
    return regex;
}

Pattern pattern(std::string text) {
    auto regex = compile(text);
    return {std::move(text), std::move(regex)};
}

FieldMatcher matcher(MatchField field, std::string pattern, std::string metadataKey = "") {
    auto regex = compile(pattern);
    return {field, std::move(metadataKey), std::move(pattern), std::move(regex)};
}

Event fluxEvent(std::string kind, std::string ns, std::string name, std::string severity, std::string reason,
                std::string message, std::map<std::string, std::string> metadata = {}) {
    FluxEvent flux;
    flux.involvedObject.kind = std::move(kind);
    flux.involvedObject.namespace_ = std::move(ns);
    flux.involvedObject.name = std::move(name);
    flux.severity = std::move(severity);
    flux.reason = std::move(reason);
    flux.message = std::move(message);
    flux.metadata = std::move(metadata);
    flux.reportingController = "kustomize-controller";
    Event event;
    event.source = "flux";
    event.payload = std::move(flux);
    return event;
}

Event githubEvent(std::string type, std::string ref = "", bool deleted = false) {
    GitHubEvent github;
    github.event = std::move(type);
    github.deliveryId = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    github.ref = std::move(ref);
    github.deleted = deleted;
    github.body = "{}";
    Event event;
    event.source = "github";
    event.payload = std::move(github);
    return event;
}

// The Alert home-ops clusters use to page on Flux errors, minus the network noise of a home link.
RouteConfig homeOpsRoute() {
    RouteConfig route;
    route.name = "errors-to-alertmanager";
    route.source = "flux";
    route.eventSeverity = Severity::error;
    for (const char* kind :
         {"FluxInstance", "GitRepository", "HelmRelease", "HelmRepository", "Kustomization", "OCIRepository"}) {
        route.eventSources.push_back({kind, "*", "*"});
    }
    for (const char* text :
         {"error.*lookup.*github", "dial.*tcp.*timeout", "dial.*tcp.*unreachable", "waiting.*socket"}) {
        route.exclusionList.push_back(pattern(text));
    }
    route.targets = {"alertmanager"};
    return route;
}

RouteConfig pushRoute(std::vector<std::string> branches) {
    RouteConfig route;
    route.name = "reconcile-on-push";
    route.source = "github";
    route.events = {"push"};
    route.branches = std::move(branches);
    route.targets = {"reconcile"};
    return route;
}

const Event healthCheckFailed =
    fluxEvent("Kustomization", "flux-system", "cluster-apps", "error", "HealthCheckFailed",
              "Health check failed after 5m0.033s: timeout waiting for: [Deployment/default/echo-server status: "
              "'InProgress']",
              {{"revision", "refs/heads/main@sha1:5f4c8a2b3e1d0f9a8b7c6d5e4f3a2b1c0d9e8f7a"}});

// Verdicts compared by name: doctest would stringify the enum through fluxrelay::toString, which
// returns a string_view it cannot print; names also make failures readable.
std::string verdictOf(const Decision& decision) { return std::string(toString(decision.verdict)); }

}  // namespace

TEST_CASE("verdict names are stable snake_case metric labels") {
    const std::vector<std::pair<Verdict, std::string_view>> names = {
        {Verdict::pass, "pass"},
        {Verdict::sourceMismatch, "source_mismatch"},
        {Verdict::eventType, "event_type"},
        {Verdict::branch, "branch"},
        {Verdict::eventSource, "event_source"},
        {Verdict::severity, "severity"},
        {Verdict::inclusion, "inclusion"},
        {Verdict::exclusion, "exclusion"},
        {Verdict::match, "match"},
        {Verdict::targetRule, "target_rule"},
        {Verdict::duplicate, "duplicate"},
    };
    for (const auto& [verdict, name] : names) {
        CHECK(std::string(toString(verdict)) == std::string(name));
    }
}

TEST_CASE("step 1: an event from another source never matches") {
    const Decision decision = matchRoute(homeOpsRoute(), githubEvent("push", "refs/heads/main"));
    CHECK(verdictOf(decision) == "source_mismatch");
    CHECK(decision.reason == R"(event came in on source "github", route reads "flux")");
}

TEST_CASE("home-ops Alert: a failed health check pages") {
    const Decision decision = matchRoute(homeOpsRoute(), healthCheckFailed);
    CHECK(decision.passed());
    CHECK(decision.reason.empty());
}

TEST_CASE("home-ops Alert: every listed kind passes, by any name in any namespace") {
    const RouteConfig route = homeOpsRoute();
    CHECK(matchRoute(route, fluxEvent("HelmRelease", "observability", "kube-prometheus-stack", "error", "InstallFailed",
                                      "Helm install failed for release observability/kube-prometheus-stack with "
                                      "chart kube-prometheus-stack@65.1.0: context deadline exceeded"))
              .passed());
    CHECK(matchRoute(route, fluxEvent("FluxInstance", "flux-system", "flux", "error", "ReconciliationFailed",
                                      "Reconciliation failed after 1.5s: distribution version 2.9.x not found"))
              .passed());
    CHECK(matchRoute(route, fluxEvent("OCIRepository", "flux-system", "flux-operator", "error", "OCIArtifactPullFailed",
                                      "failed to pull artifact from 'oci://ghcr.io/controlplaneio-fluxcd/charts/"
                                      "flux-operator': MANIFEST_UNKNOWN: manifest unknown"))
              .passed());
}

TEST_CASE("home-ops Alert: network noise is excluded by the pattern that matched") {
    const RouteConfig route = homeOpsRoute();
    struct Case {
        const char* kind;
        const char* message;
        const char* pattern;
    };
    const Case cases[] = {
        {"GitRepository",
         "failed to checkout and determine revision: unable to clone 'https://github.com/onedr0p/home-ops': Get "
         "\"https://github.com/onedr0p/home-ops/info/refs?service=git-upload-pack\": dial tcp: lookup github.com: i/o "
         "timeout",
         "dial.*tcp.*timeout"},
        {"GitRepository",
         "failed to checkout and determine revision: unable to list remote for 'https://github.com/onedr0p/home-ops': "
         "error: Get \"https://github.com/onedr0p/home-ops/info/refs\": dial tcp: lookup github.com on "
         "10.43.0.10:53: server misbehaving",
         "error.*lookup.*github"},
        {"HelmRepository",
         "failed to fetch Helm repository index: failed to cache index to temporary file: Get "
         "\"https://prometheus-community.github.io/helm-charts/index.yaml\": dial tcp 185.199.108.153:443: connect: "
         "network is unreachable",
         "dial.*tcp.*unreachable"},
        {"OCIRepository",
         "failed to pull artifact from 'oci://ghcr.io/onedr0p/manifests': waiting for an idle socket to ghcr.io:443",
         "waiting.*socket"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.message);
        const Decision decision = matchRoute(
            route, fluxEvent(c.kind, "flux-system", "flux-system", "error", "GitOperationFailed", c.message));
        CHECK(verdictOf(decision) == "exclusion");
        CHECK(decision.reason == "exclusionList pattern \"" + std::string(c.pattern) + "\" matched the message");
    }
}

TEST_CASE("home-ops Alert: info events stop at eventSeverity") {
    const Decision decision = matchRoute(
        homeOpsRoute(), fluxEvent("Kustomization", "flux-system", "cluster-apps", "info", "ReconciliationSucceeded",
                                  "Reconciliation finished in 2.31s, next run in 30m0s"));
    CHECK(verdictOf(decision) == "severity");
    CHECK(decision.reason == "route takes error events only; event severity is info");

    const Decision trace = matchRoute(
        homeOpsRoute(), fluxEvent("Kustomization", "flux-system", "cluster-apps", "trace", "Progressing", "..."));
    CHECK(verdictOf(trace) == "severity");
    CHECK(trace.reason == "route takes error events only; event severity is trace");
}

TEST_CASE("home-ops Alert: unlisted kinds stop at eventSources") {
    const Decision decision =
        matchRoute(homeOpsRoute(), fluxEvent("ImageRepository", "flux-system", "podinfo", "error",
                                             "ReconciliationFailed", "failed to scan image repository"));
    CHECK(verdictOf(decision) == "event_source");
    CHECK(decision.reason == "no eventSources entry matches ImageRepository/flux-system/podinfo");

    // Kind is exact and case-sensitive, as Flux compares it.
    CHECK(verdictOf(matchRoute(homeOpsRoute(), fluxEvent("kustomization", "flux-system", "apps", "error", "x", "y"))) ==
          "event_source");
}

TEST_CASE("step 2: eventSources globs on name and namespace; empty list selects every object") {
    RouteConfig route;
    route.source = "flux";
    route.eventSources = {{"HelmRelease", "*", "apps-*"}, {"Kustomization", "apps", "flux-system"}};

    CHECK(matchRoute(route, fluxEvent("HelmRelease", "apps-media", "plex", "info", "UpgradeSucceeded", "ok")).passed());
    CHECK(matchRoute(route, fluxEvent("Kustomization", "flux-system", "apps", "info", "x", "ok")).passed());

    const Decision wrongNamespace = matchRoute(route, fluxEvent("HelmRelease", "media", "plex", "info", "x", "ok"));
    CHECK(verdictOf(wrongNamespace) == "event_source");
    CHECK(wrongNamespace.reason == "no eventSources entry matches HelmRelease/media/plex");

    const Decision wrongName = matchRoute(route, fluxEvent("Kustomization", "flux-system", "apps2", "info", "x", "ok"));
    CHECK(verdictOf(wrongName) == "event_source");
    CHECK(wrongName.reason == "no eventSources entry matches Kustomization/flux-system/apps2");

    route.eventSources.clear();
    CHECK(matchRoute(route, fluxEvent("Bucket", "anywhere", "any", "trace", "x", "ok")).passed());
}

TEST_CASE("step 3: an info route takes every severity, as Flux") {
    RouteConfig route;
    route.source = "flux";
    for (const char* severity : {"trace", "info", "error"}) {
        CHECK(matchRoute(route, fluxEvent("Kustomization", "flux-system", "apps", severity, "x", "ok")).passed());
    }
}

TEST_CASE("step 4: inclusionList needs one match, then exclusionList drops") {
    RouteConfig route;
    route.source = "flux";
    route.inclusionList = {pattern("^Health check failed"), pattern("InstallFailed|UpgradeFailed")};
    route.exclusionList = {pattern("echo-server")};

    const Decision included = matchRoute(route, healthCheckFailed);
    CHECK(verdictOf(included) == "exclusion");  // included first, then excluded
    CHECK(included.reason == "exclusionList pattern \"echo-server\" matched the message");

    const Decision notIncluded = matchRoute(
        route, fluxEvent("Kustomization", "flux-system", "apps", "error", "BuildFailed", "kustomize build failed"));
    CHECK(verdictOf(notIncluded) == "inclusion");
    CHECK(notIncluded.reason ==
          R"(no inclusionList pattern matched the message ("^Health check failed", "InstallFailed|UpgradeFailed"))");

    // Unanchored search: a pattern may match anywhere in the message.
    route.exclusionList.clear();
    CHECK(matchRoute(route, fluxEvent("HelmRelease", "apps", "plex", "error", "x", "release plex: UpgradeFailed"))
              .passed());
}

TEST_CASE("step 5: match requires every field matcher to find its pattern") {
    RouteConfig route;
    route.source = "flux";
    route.match = {matcher(MatchField::reason, "Failed$"), matcher(MatchField::metadata, "^home$", "cluster"),
                   matcher(MatchField::reportingController, "^kustomize-")};

    const Event failed = fluxEvent("Kustomization", "flux-system", "apps", "error", "ReconciliationFailed", "boom",
                                   {{"cluster", "home"}});
    CHECK(matchRoute(route, failed).passed());

    const Decision wrongReason = matchRoute(route, fluxEvent("Kustomization", "flux-system", "apps", "info",
                                                             "ReconciliationSucceeded", "ok", {{"cluster", "home"}}));
    CHECK(verdictOf(wrongReason) == "match");
    CHECK(wrongReason.reason == R"(match reason: "ReconciliationSucceeded" does not match "Failed$")");

    const Decision missingKey =
        matchRoute(route, fluxEvent("Kustomization", "flux-system", "apps", "error", "ReconciliationFailed", "boom"));
    CHECK(verdictOf(missingKey) == "match");
    CHECK(missingKey.reason == R"(match metadata.cluster: event has no metadata key "cluster")");

    const Decision otherCluster =
        matchRoute(route, fluxEvent("Kustomization", "flux-system", "apps", "error", "ReconciliationFailed", "boom",
                                    {{"cluster", "homelab"}}));
    CHECK(verdictOf(otherCluster) == "match");
    CHECK(otherCluster.reason == R"(match metadata.cluster: "homelab" does not match "^home$")");
}

TEST_CASE("step 5: match reads kind, name and namespace of the involved object") {
    RouteConfig route;
    route.source = "flux";
    route.match = {matcher(MatchField::kind, "^(Kustomization|HelmRelease)$"), matcher(MatchField::name, "^cluster-"),
                   matcher(MatchField::namespace_, "^flux-system$")};
    CHECK(matchRoute(route, healthCheckFailed).passed());
    const Decision decision = matchRoute(route, fluxEvent("Kustomization", "flux-system", "apps", "error", "x", "y"));
    CHECK(verdictOf(decision) == "match");
    CHECK(decision.reason == R"(match name: "apps" does not match "^cluster-")");
}

TEST_CASE("GitHub: events filter by X-GitHub-Event, case-insensitively as Flux's Receiver") {
    RouteConfig route = pushRoute({});
    const Decision decision = matchRoute(route, githubEvent("issues"));
    CHECK(verdictOf(decision) == "event_type");
    CHECK(decision.reason == R"(GitHub event "issues" is not in events ("push"))");

    route.events = {"Push"};
    CHECK(matchRoute(route, githubEvent("push", "refs/heads/main")).passed());

    route.events.clear();  // empty: every event
    CHECK(matchRoute(route, githubEvent("pull_request")).passed());
}

TEST_CASE("GitHub: branches glob on the branch name; empty list takes every branch") {
    const RouteConfig route = pushRoute({"main", "release-*"});
    CHECK(matchRoute(route, githubEvent("push", "refs/heads/main")).passed());
    CHECK(matchRoute(route, githubEvent("push", "refs/heads/release-1.2")).passed());

    const Decision feature = matchRoute(route, githubEvent("push", "refs/heads/feature/renovate"));
    CHECK(verdictOf(feature) == "branch");
    CHECK(feature.reason == R"(branch "feature/renovate" matches no branches entry ("main", "release-*"))");

    CHECK(matchRoute(pushRoute({}), githubEvent("push", "refs/heads/anything/goes")).passed());
    CHECK(
        matchRoute(pushRoute({"refs/heads/renovate/*"}), githubEvent("push", "refs/heads/renovate/flux-2.x")).passed());
}

TEST_CASE("GitHub: tags pass only when listed as refs/tags/ globs") {
    const Decision unlisted = matchRoute(pushRoute({}), githubEvent("push", "refs/tags/v1.2.3"));
    CHECK(verdictOf(unlisted) == "branch");
    CHECK(unlisted.reason ==
          R"(tag push refs/tags/v1.2.3 is ignored unless a branches entry "refs/tags/..." matches it)");

    // A bare entry never matches a tag, even when the tag's name would glob.
    CHECK(verdictOf(matchRoute(pushRoute({"v*"}), githubEvent("push", "refs/tags/v1.2.3"))) == "branch");

    const RouteConfig route = pushRoute({"main", "refs/tags/v*"});
    CHECK(matchRoute(route, githubEvent("push", "refs/tags/v1.2.3")).passed());
    CHECK(verdictOf(matchRoute(route, githubEvent("push", "refs/tags/nightly"))) == "branch");
}

TEST_CASE("GitHub: branch deletions are dropped") {
    const Decision decision = matchRoute(pushRoute({"main"}), githubEvent("push", "refs/heads/main", true));
    CHECK(verdictOf(decision) == "branch");
    CHECK(decision.reason == "push deletes refs/heads/main (branch deletion): nothing to reconcile");
    CHECK(verdictOf(matchRoute(pushRoute({}), githubEvent("push", "refs/heads/old", true))) == "branch");
}

TEST_CASE("GitHub: branches only filter pushes") {
    RouteConfig route = pushRoute({"main"});
    route.events = {"push", "release"};
    CHECK(matchRoute(route, githubEvent("release")).passed());
}

TEST_CASE("step 6: alertmanager targets never take commit status updates") {
    const Event update = fluxEvent("Kustomization", "flux-system", "apps", "info", "ReconciliationSucceeded",
                                   "Reconciliation finished in 2.31s", {{"commit_status", "update"}});
    const Decision decision = targetAccepts(TargetType::alertmanager, update);
    CHECK(verdictOf(decision) == "target_rule");
    CHECK(decision.reason == "commit status updates (metadata commit_status=update) never go to alertmanager targets");

    CHECK(targetAccepts(TargetType::alertmanager, healthCheckFailed).passed());
    const Event other = fluxEvent("Kustomization", "flux-system", "apps", "info", "x", "y", {{"commit_status", "no"}});
    CHECK(targetAccepts(TargetType::alertmanager, other).passed());
}

TEST_CASE("step 6: github targets take updates, commit metadata or errors, and skip Progressing") {
    const Event update = fluxEvent("Kustomization", "flux-system", "apps", "info", "ReconciliationSucceeded",
                                   "Reconciliation finished in 2.31s", {{"commit_status", "update"}});
    CHECK(targetAccepts(TargetType::github, update).passed());
    CHECK(targetAccepts(TargetType::github, healthCheckFailed).passed());  // error, no commit metadata
    const Event withCommit = fluxEvent("Kustomization", "flux-system", "apps", "info", "ReconciliationSucceeded", "ok",
                                       {{"commit", "5f4c8a2b3e1d0f9a8b7c6d5e4f3a2b1c0d9e8f7a"}});
    CHECK(targetAccepts(TargetType::github, withCommit).passed());

    const Decision plainInfo = targetAccepts(
        TargetType::github, fluxEvent("Kustomization", "flux-system", "apps", "info", "ReconciliationSucceeded", "ok",
                                      {{"revision", "main@sha1:5f4c8a2b3e1d0f9a8b7c6d5e4f3a2b1c0d9e8f7a"}}));
    CHECK(verdictOf(plainInfo) == "target_rule");
    CHECK(plainInfo.reason ==
          "github targets take only commit status updates, events with commit metadata, or errors; this info event "
          "is none of them");

    // Flux tests the value: an empty commit is no commit.
    const Event emptyCommit = fluxEvent("Kustomization", "flux-system", "apps", "info", "x", "ok", {{"commit", ""}});
    CHECK(verdictOf(targetAccepts(TargetType::github, emptyCommit)) == "target_rule");

    const Event progressing = fluxEvent("Kustomization", "flux-system", "apps", "info", "Progressing",
                                        "Reconciliation in progress", {{"commit_status", "update"}});
    const Decision skipped = targetAccepts(TargetType::github, progressing);
    CHECK(verdictOf(skipped) == "target_rule");
    CHECK(skipped.reason == "github targets skip reason Progressing");
    // The reason is compared exactly, as Flux's HasReason does.
    const Event progressingWithRetry = fluxEvent("Kustomization", "flux-system", "apps", "info", "ProgressingWithRetry",
                                                 "retrying", {{"commit_status", "update"}});
    CHECK(targetAccepts(TargetType::github, progressingWithRetry).passed());
}

TEST_CASE("step 6: github-deployment targets take Kustomization events with a revision, Progressing included") {
    const Event progressing = fluxEvent("Kustomization", "flux-system", "apps", "info", "Progressing",
                                        "Deployment/default/podinfo configured",
                                        {{"revision", "main@sha1:5f4c8a2b3e1d0f9a8b7c6d5e4f3a2b1c0d9e8f7a"}});
    CHECK(targetAccepts(TargetType::githubDeployment, progressing).passed());

    const Decision helm = targetAccepts(TargetType::githubDeployment,
                                        fluxEvent("HelmRelease", "default", "podinfo", "info", "UpgradeSucceeded",
                                                  "Helm upgrade succeeded", {{"revision", "6.1.0"}}));
    CHECK(verdictOf(helm) == "target_rule");
    CHECK(helm.reason ==
          "github-deployment targets take Kustomization events only; this is a HelmRelease event: "
          "nothing to deploy");

    const Decision noRevision = targetAccepts(
        TargetType::githubDeployment, fluxEvent("Kustomization", "flux-system", "apps", "error", "ArtifactFailed",
                                                "Source artifact not found, retrying in 30s", {}));
    CHECK(verdictOf(noRevision) == "target_rule");
    CHECK(noRevision.reason.find("has none: nothing to deploy") != std::string::npos);
}

TEST_CASE("step 6: GitHub events go to receivers, Flux events to alertmanager and github") {
    const Event push = githubEvent("push", "refs/heads/main");
    CHECK(targetAccepts(TargetType::fluxReceiver, push).passed());
    CHECK(targetAccepts(TargetType::kubernetes, push).passed());

    const Decision receiver = targetAccepts(TargetType::fluxReceiver, healthCheckFailed);
    CHECK(verdictOf(receiver) == "target_rule");
    CHECK(receiver.reason == "flux-receiver targets take GitHub events only; this is a Flux event");
    const Decision kubernetes = targetAccepts(TargetType::kubernetes, healthCheckFailed);
    CHECK(verdictOf(kubernetes) == "target_rule");
    CHECK(kubernetes.reason == "kubernetes targets take GitHub events only; this is a Flux event");

    const Decision alertmanager = targetAccepts(TargetType::alertmanager, push);
    CHECK(verdictOf(alertmanager) == "target_rule");
    CHECK(alertmanager.reason == "alertmanager targets take Flux events only; this is a GitHub push event");
    const Decision github = targetAccepts(TargetType::github, push);
    CHECK(verdictOf(github) == "target_rule");
    CHECK(github.reason == "github targets take Flux events only; this is a GitHub push event");
}

TEST_CASE("route eventMetadata is merged into a copy; the event's own keys win") {
    RouteConfig route = homeOpsRoute();
    route.eventMetadata = {{"cluster", "home"}, {"revision", "from-alert"}, {"summary", "home cluster"}};

    const Event merged = withRouteMetadata(route, healthCheckFailed);
    const auto& metadata = merged.flux()->metadata;
    CHECK(metadata.at("cluster") == "home");
    CHECK(metadata.at("summary") == "home cluster");
    CHECK(metadata.at("revision") == "refs/heads/main@sha1:5f4c8a2b3e1d0f9a8b7c6d5e4f3a2b1c0d9e8f7a");
    CHECK(metadata.size() == 3);
    CHECK(healthCheckFailed.flux()->metadata.size() == 1);  // the input is untouched
    CHECK(merged.flux()->message == healthCheckFailed.flux()->message);

    const Event push = githubEvent("push", "refs/heads/main");
    const Event unchanged = withRouteMetadata(route, push);
    REQUIRE(unchanged.github() != nullptr);
    CHECK(unchanged.github()->ref == "refs/heads/main");
}
