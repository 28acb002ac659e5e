// Alertmanager payloads: Flux's alert shape, alertname casing, batching, auth headers, the target's
// templated labels and annotations, resolving.
#include "providers/alertmanager.hpp"
#include "test/providers/plans.hpp"

#include <doctest/doctest.h>

#include <initializer_list>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace fluxrelay {
namespace {

Event makeFluxEvent(FluxEvent flux, TimePoint receivedAt = {}) {
    Event event;
    event.id = "0123456789abcdef";
    event.source = "flux";
    event.receivedAt = receivedAt;
    event.payload = std::move(flux);
    return event;
}

FluxEvent kustomizationFailure() {
    FluxEvent flux;
    flux.involvedObject.kind = "Kustomization";
    flux.involvedObject.namespace_ = "flux-system";
    flux.involvedObject.name = "apps";
    flux.involvedObject.apiVersion = "kustomize.toolkit.fluxcd.io/v1";
    flux.severity = "error";
    flux.timestamp = "2022-09-30T06:40:29Z";
    flux.message = "Deployment/default/web dry-run failed";
    flux.reason = "ReconciliationFailed";
    flux.metadata = {{"revision", "main@sha1:0123456789abcdef0123456789abcdef01234567"}};
    flux.reportingController = "kustomize-controller";
    flux.reportingInstance = "kustomize-controller-7f5d6c9b8-x2x7q";
    return flux;
}

Delivery makeDelivery(FluxEvent flux, std::uint64_t id = 1) {
    Delivery delivery;
    delivery.id = id;
    delivery.route = "errors";
    delivery.target = "alertmanager";
    delivery.event = std::make_shared<const Event>(makeFluxEvent(std::move(flux)));
    return delivery;
}

TargetConfig alertmanagerTarget() {
    TargetConfig target;
    target.name = "alertmanager";
    target.type = TargetType::alertmanager;
    target.address = Url{"http", "alertmanager-operated.o11y", 9093, "/api/v2/alerts"};
    target.addressText = "http://alertmanager-operated.o11y:9093/api/v2/alerts";
    return target;
}

HttpRequest build(const Provider& provider, const std::vector<Delivery>& batch) {
    BuildResult result = buildRequest(provider, batch);
    REQUIRE(std::holds_alternative<HttpRequest>(result));
    return std::get<HttpRequest>(std::move(result));
}

std::vector<std::string> headerValues(const HttpRequest& request, std::string_view name) {
    std::vector<std::string> values;
    for (const auto& [key, value] : request.headers) {
        if (key == name) values.push_back(value);
    }
    return values;
}

}  // namespace

TEST_CASE("goTitle upper-cases the first letter of each word and lower-cases the rest, as Go") {
    CHECK(goTitle("ReconciliationFailed") == "Reconciliationfailed");
    CHECK(goTitle("HealthCheckFailed") == "Healthcheckfailed");
    CHECK(goTitle("dependency not ready") == "Dependency Not Ready");
    CHECK(goTitle("Progressing") == "Progressing");
    CHECK(goTitle("ARTIFACT_FAILED") == "Artifact_failed");
    CHECK(goTitle("") == "");
    // Digits belong to the word but are not its first letter.
    CHECK(goTitle("v2beta1 upgrade") == "V2beta1 Upgrade");
    CHECK(goTitle("1abc") == "1Abc");
    // Hyphens and slashes break words; one apostrophe, dot or colon between letters does not.
    CHECK(goTitle("install-failed/RETRY") == "Install-Failed/Retry");
    CHECK(goTitle("don't STOP") == "Don't Stop");
    CHECK(goTitle("example.COM") == "Example.com");
    CHECK(goTitle("key:VALUE") == "Key:value");
    // Two in a row do.
    CHECK(goTitle("a..b") == "A..B");
    CHECK(goTitle("a.'b") == "A.'B");
    // The ASCII vectors of Go's own title-casing tests.
    CHECK(goTitle("FOO CASE TEST") == "Foo Case Test");
    CHECK(goTitle("DON'T DO THiS") == "Don't Do This");
    CHECK(goTitle("with-hyphens") == "With-Hyphens");
    CHECK(goTitle("49ers 49ers") == "49Ers 49Ers");
    CHECK(goTitle("\"capitalize a^a -hyphen 0X _u a_u:a") == "\"Capitalize A^A -Hyphen 0X _U A_u:a");
    CHECK(goTitle("MidNum a,b;c") == "Midnum A,B;C");
    CHECK(goTitle("a'.a a.a a4,a") == "A'.A A.a A4,A");
    // Non-ASCII letters are kept as written and still start their word.
    CHECK(goTitle("\xC3\xA9TAT ok") == "\xC3\xA9tat Ok");
}

TEST_CASE("fluxAlert builds exactly Flux's labels, annotations and startsAt") {
    const nlohmann::json alert = fluxAlert(makeFluxEvent(kustomizationFailure()));
    const nlohmann::json expected = {
        {"status", "firing"},
        {"labels",
         {{"alertname", "FluxKustomizationReconciliationfailed"},
          {"severity", "error"},
          {"reason", "ReconciliationFailed"},
          {"kind", "Kustomization"},
          {"name", "apps"},
          {"namespace", "flux-system"},
          {"reportingcontroller", "kustomize-controller"},
          {"revision", "main@sha1:0123456789abcdef0123456789abcdef01234567"}}},
        {"annotations", {{"message", "Deployment/default/web dry-run failed"}}},
        {"startsAt", "2022-09-30T06:40:29Z"},
    };
    CHECK(alert == expected);
    CHECK_FALSE(alert.contains("endsAt"));
}

TEST_CASE("fluxAlert moves summary to the annotations and keeps other metadata as labels") {
    FluxEvent flux = kustomizationFailure();
    flux.metadata = {{"summary", "Cluster home is failing"}, {"cluster", "home"}, {"env", "prod"}};
    const nlohmann::json alert = fluxAlert(makeFluxEvent(flux));
    CHECK(alert["annotations"] == nlohmann::json{{"message", flux.message}, {"summary", "Cluster home is failing"}});
    CHECK_FALSE(alert["labels"].contains("summary"));
    CHECK(alert["labels"]["cluster"] == "home");
    CHECK(alert["labels"]["env"] == "prod");
    CHECK(alert["labels"].size() == 9);
}

TEST_CASE("fluxAlert lets its own labels win over metadata of the same name") {
    FluxEvent flux = kustomizationFailure();
    flux.metadata = {{"severity", "critical"}, {"alertname", "Custom"}, {"name", "other"}};
    const nlohmann::json labels = fluxAlert(makeFluxEvent(flux))["labels"];
    CHECK(labels["severity"] == "error");
    CHECK(labels["alertname"] == "FluxKustomizationReconciliationfailed");
    CHECK(labels["name"] == "apps");
}

TEST_CASE("fluxAlert formats startsAt in UTC without fractions, falling back to the receive time") {
    FluxEvent flux = kustomizationFailure();
    flux.timestamp = "2022-09-30T08:40:29.75+02:00";
    CHECK(fluxAlert(makeFluxEvent(flux))["startsAt"] == "2022-09-30T06:40:29Z");

    flux.timestamp.clear();
    TimePoint received;
    REQUIRE(parseRfc3339("2024-01-02T03:04:05Z", received));
    CHECK(fluxAlert(makeFluxEvent(flux, received))["startsAt"] == "2024-01-02T03:04:05Z");
}

TEST_CASE("alertmanager provider posts a JSON array, one alert per delivery, to the address as given") {
    const TargetConfig target = alertmanagerTarget();
    const auto provider = makeProvider(target);
    REQUIRE(provider != nullptr);
    CHECK(provider->maxBatch() == 64);

    FluxEvent second = kustomizationFailure();
    second.involvedObject.name = "infra";
    FluxEvent third = kustomizationFailure();
    third.involvedObject.kind = "HelmRelease";
    third.reason = "HealthCheckFailed";
    const std::vector<Delivery> batch = {makeDelivery(kustomizationFailure(), 1), makeDelivery(second, 2),
                                         makeDelivery(third, 3)};
    const HttpRequest request = build(*provider, batch);

    CHECK(request.method == "POST");
    CHECK(request.url.scheme == "http");
    CHECK(request.url.host == "alertmanager-operated.o11y");
    CHECK(request.url.port == 9093);
    CHECK(request.url.target == "/api/v2/alerts");
    CHECK(headerValues(request, "Content-Type") == std::vector<std::string>{"application/json"});
    CHECK(headerValues(request, "Authorization").empty());

    const nlohmann::json body = nlohmann::json::parse(request.body);
    REQUIRE(body.is_array());
    REQUIRE(body.size() == 3);
    CHECK(body[0] == fluxAlert(*batch[0].event));
    CHECK(body[1]["labels"]["name"] == "infra");
    CHECK(body[2]["labels"]["alertname"] == "FluxHelmReleaseHealthcheckfailed");
}

TEST_CASE("alertmanager provider sends no path of its own") {
    TargetConfig target = alertmanagerTarget();
    target.address = Url{"https", "am.example.com", 443, "/"};
    const HttpRequest request = build(*makeProvider(target), {makeDelivery(kustomizationFailure())});
    CHECK(request.url.target == "/");
    CHECK(request.url.host == "am.example.com");
    CHECK(request.url.tls());
}

TEST_CASE("alertmanager provider takes maxBatch from the target") {
    TargetConfig target = alertmanagerTarget();
    target.maxBatch = 5;
    CHECK(makeProvider(target)->maxBatch() == 5);
}

TEST_CASE("alertmanager provider authenticates with Bearer, or Basic when both username and password are set") {
    TargetConfig target = alertmanagerTarget();
    const std::vector<Delivery> batch = {makeDelivery(kustomizationFailure())};

    SUBCASE("bearer") {
        target.token = "s3cr3t";
        const HttpRequest request = build(*makeProvider(target), batch);
        CHECK(headerValues(request, "Authorization") == std::vector<std::string>{"Bearer s3cr3t"});
    }
    SUBCASE("basic") {
        target.username = "flux";
        target.password = "p@ss:word";
        const HttpRequest request = build(*makeProvider(target), batch);
        CHECK(headerValues(request, "Authorization") == std::vector<std::string>{"Basic Zmx1eDpwQHNzOndvcmQ="});
    }
    SUBCASE("username alone sends nothing") {
        target.username = "flux";
        const HttpRequest request = build(*makeProvider(target), batch);
        CHECK(headerValues(request, "Authorization").empty());
    }
    SUBCASE("configured headers come after the provider's own, and cannot replace them") {
        target.headers = {{"X-Scope-OrgID", "home"}, {"Content-Type", "text/plain"}};
        target.token = "s3cr3t";
        const HttpRequest request = build(*makeProvider(target), batch);
        REQUIRE(request.headers.size() == 3);
        CHECK(request.headers[0] == std::pair<std::string, std::string>{"Content-Type", "application/json"});
        CHECK(request.headers[1] == std::pair<std::string, std::string>{"Authorization", "Bearer s3cr3t"});
        CHECK(request.headers[2] == std::pair<std::string, std::string>{"X-Scope-OrgID", "home"});
    }
}

TEST_CASE("alertmanager provider refuses a batch with a non-Flux event, permanently") {
    Delivery github;
    github.event = std::make_shared<const Event>(Event{"id", "github", {}, GitHubEvent{"push", "d1", "", false, "{}"}});
    const std::vector<Delivery> batch = {makeDelivery(kustomizationFailure()), github};
    const BuildResult result = buildRequest(*makeProvider(alertmanagerTarget()), batch);
    REQUIRE(std::holds_alternative<Outcome>(result));
    CHECK(std::get<Outcome>(result).kind == OutcomeKind::permanent);
    CHECK(std::get<Outcome>(result).detail == "alertmanager targets take only Flux events");
}

TEST_CASE("alertmanager responses: 200 with an empty body is delivered, 400 is permanent") {
    const auto provider = makeProvider(alertmanagerTarget());
    CHECK(provider->classify(HttpResponse{200, {}, ""}).kind == OutcomeKind::delivered);
    const Outcome invalid =
        provider->classify(HttpResponse{400, {}, "{\"code\":400,\"message\":\"invalid label set\"}\n"});
    CHECK(invalid.kind == OutcomeKind::permanent);
    CHECK(invalid.detail == "HTTP 400: {\"code\":400,\"message\":\"invalid label set\"}");
}

}  // namespace fluxrelay

namespace fluxrelay {

TEST_CASE("resolve: an object's info event ends the alerts it has firing, and the state follows") {
    TargetConfig target = alertmanagerTarget();
    target.resolve = true;
    const auto provider = makeAlertmanagerProvider(target);
    const TimePoint now = Clock::now();

    const Delivery failure = makeDelivery(kustomizationFailure(), 1);
    const auto keys = provider->stateKeys(std::vector{failure});
    REQUIRE(keys.size() == 1);
    CHECK(keys[0] == "alertmanager-firing:" + target.name);

    // Nothing firing yet: the error fires, valid for three re-send intervals, and is remembered.
    ProviderState state{{keys[0], std::nullopt}};
    auto built = buildRequests(*provider, std::vector{failure}, state, now);
    REQUIRE(built.size() == 1);
    auto fired = nlohmann::json::parse(std::get<HttpRequest>(built[0]).body);
    REQUIRE(fired.size() == 1);
    CHECK(fired[0]["endsAt"] == formatRfc3339Nano(now + std::chrono::minutes(15)));
    state = stateAfterDelivery(*provider, std::vector{failure}, state);
    REQUIRE(state.at(keys[0]).has_value());

    // The recovery: the remembered alert again, same labels, endsAt now; not an alert of its own.
    FluxEvent recovered = kustomizationFailure();
    recovered.severity = "info";
    recovered.reason = "ReconciliationSucceeded";
    recovered.resolveOnly = true;
    const Delivery recovery = makeDelivery(recovered, 2);
    built = buildRequests(*provider, std::vector{recovery}, state, now);
    auto resolved = nlohmann::json::parse(std::get<HttpRequest>(built[0]).body);
    REQUIRE(resolved.size() == 1);
    CHECK(resolved[0]["labels"] == fired[0]["labels"]);
    CHECK(resolved[0]["endsAt"] == formatRfc3339Nano(now));
    state = stateAfterDelivery(*provider, std::vector{recovery}, state);
    REQUIRE(state.at(keys[0]).has_value());  // the object stays known, with nothing firing
    CHECK(provider->refreshRequests(state, now).empty());

    // Another info event finds nothing to resolve and sends nothing.
    const Delivery again = makeDelivery(recovered, 3);
    built = buildRequests(*provider, std::vector{again}, state, now);
    REQUIRE(built.size() == 1);
    const auto* outcome = std::get_if<Outcome>(&built[0]);
    REQUIRE(outcome != nullptr);
    CHECK((outcome->kind == OutcomeKind::delivered));
    CHECK(outcome->detail == "nothing firing to resolve");
}

TEST_CASE("resolve: whatever order deliveries are sent in, the object's last accepted event decides") {
    TargetConfig target = alertmanagerTarget();
    target.resolve = true;
    const auto provider = makeAlertmanagerProvider(target);
    const TimePoint now = Clock::now();
    FluxEvent recovered = kustomizationFailure();
    recovered.severity = "info";
    recovered.reason = "ReconciliationSucceeded";
    recovered.resolveOnly = true;
    const Delivery failure = makeDelivery(kustomizationFailure(), 7);
    const Delivery recovery = makeDelivery(recovered, 8);
    const auto firingAfter = [&](const ProviderState& state) {
        std::size_t alerts = 0;
        for (const auto& request : provider->refreshRequests(state, now))
            alerts += nlohmann::json::parse(request.body).size();
        return alerts;
    };

    SUBCASE("in order: fired, then resolved") {
        ProviderState state = stateAfterDelivery(*provider, std::vector{failure}, {}, now);
        CHECK(firingAfter(state) == 1);
        state = stateAfterDelivery(*provider, std::vector{recovery}, state, now);
        CHECK(firingAfter(state) == 0);
    }
    SUBCASE("the recovery first (the failure was retried, or sent by the other replica): it never fires") {
        ProviderState state = stateAfterDelivery(*provider, std::vector{recovery}, {}, now);
        const auto built = buildRequests(*provider, std::vector{failure}, state, now);
        REQUIRE(built.size() == 1);
        const auto* outcome = std::get_if<Outcome>(&built[0]);
        REQUIRE(outcome != nullptr);  // nothing sent
        CHECK((outcome->kind == OutcomeKind::delivered));
        CHECK(outcome->detail.find("superseded") != std::string::npos);
        state = stateAfterDelivery(*provider, std::vector{failure}, state, now);
        CHECK(firingAfter(state) == 0);
    }
    SUBCASE("a stale failure in a batch with a newer one of another object: only the newer one is sent") {
        FluxEvent other = kustomizationFailure();
        other.involvedObject.name = "other";
        ProviderState state = stateAfterDelivery(*provider, std::vector{recovery}, {}, now);
        const std::vector batch{failure, makeDelivery(other, 9)};
        const auto built = buildRequests(*provider, batch, state, now);
        REQUIRE(built.size() == 1);
        const auto alerts = nlohmann::json::parse(std::get<HttpRequest>(built[0]).body);
        REQUIRE(alerts.size() == 1);
        CHECK(alerts[0]["labels"]["name"] == "other");
    }
}

TEST_CASE("resolve: on a route that takes every severity the info event is also an alert") {
    TargetConfig target = alertmanagerTarget();
    target.resolve = true;
    const auto provider = makeAlertmanagerProvider(target);
    FluxEvent recovered = kustomizationFailure();
    recovered.severity = "info";
    recovered.reason = "ReconciliationSucceeded";
    const std::vector batch{makeDelivery(kustomizationFailure(), 1), makeDelivery(recovered, 2)};
    const ProviderState empty;
    const auto built = buildRequests(*provider, batch, empty, Clock::now());
    const auto alerts = nlohmann::json::parse(std::get<HttpRequest>(built[0]).body);
    REQUIRE(alerts.size() == 3);  // the error fires, is resolved, and the info alert is sent as Flux would
    CHECK(alerts[1]["status"] == "resolved");
    CHECK(alerts[2]["labels"]["severity"] == "info");
    CHECK_FALSE(alerts[2].contains("endsAt"));
}

TEST_CASE("resolve: firing alerts are re-sent each round until resolved, and forgotten a day after the last failure") {
    TargetConfig target = alertmanagerTarget();
    target.resolve = true;
    target.refireInterval = std::chrono::minutes(2);
    target.maxBatch = 2;
    const auto provider = makeAlertmanagerProvider(target);
    REQUIRE(provider->refresh());
    CHECK(provider->refresh()->interval == std::chrono::minutes(2));
    const auto keys = provider->refresh()->stateKeys;
    REQUIRE(keys.size() == 1);

    const TimePoint start = Clock::now();
    ProviderState state{{keys[0], std::nullopt}};
    CHECK(provider->refreshRequests(state, start).empty());  // nothing firing: nothing to send

    // Three objects fail.
    std::vector<Delivery> failures;
    for (const char* name : {"apps", "infra", "flux-system"}) {
        FluxEvent failure = kustomizationFailure();
        failure.involvedObject.name = name;
        failures.push_back(makeDelivery(failure, failures.size() + 1));
    }
    state = stateAfterDelivery(*provider, failures, state);

    const TimePoint later = start + std::chrono::hours(1);
    const auto round = provider->refreshRequests(state, later);
    REQUIRE(round.size() == 2);  // three alerts in batches of two
    std::set<std::string> names;
    for (const auto& request : round) {
        for (const auto& alert : nlohmann::json::parse(request.body)) {
            names.insert(alert["labels"]["name"].get<std::string>());
            CHECK(alert["endsAt"] == formatRfc3339Nano(later + std::chrono::minutes(6)));
        }
    }
    CHECK(names == std::set<std::string>{"apps", "infra", "flux-system"});

    // One recovers: the others are still re-sent.
    FluxEvent recovered = kustomizationFailure();
    recovered.involvedObject.name = "infra";
    recovered.severity = "info";
    recovered.reason = "ReconciliationSucceeded";
    recovered.resolveOnly = true;
    state = stateAfterDelivery(*provider, std::vector{makeDelivery(recovered, 9)}, state);
    std::size_t left = 0;
    for (const auto& request : provider->refreshRequests(state, later)) {
        for (const auto& alert : nlohmann::json::parse(request.body)) {
            CHECK(alert["labels"]["name"] != "infra");
            ++left;
        }
    }
    CHECK(left == 2);

    // No failure for a day (a deleted object sends no recovery): its alerts are let go.
    CHECK(provider->refreshRequests(state, start + std::chrono::hours(25)).empty());
}

TEST_CASE("severityMap renames the severity label; unmapped severities stay verbatim") {
    TargetConfig target = alertmanagerTarget();
    target.severityMap = {{"error", "critical"}};
    const auto provider = makeAlertmanagerProvider(target);
    FluxEvent info = kustomizationFailure();
    info.severity = "info";
    const auto alerts =
        nlohmann::json::parse(build(*provider, {makeDelivery(kustomizationFailure(), 1), makeDelivery(info, 2)}).body);
    REQUIRE(alerts.size() == 2);
    CHECK(alerts[0]["labels"]["severity"] == "critical");
    CHECK(alerts[1]["labels"]["severity"] == "info");
    // Flux's own alert is unchanged: the mapping is the target's.
    CHECK(fluxAlert(*makeDelivery(kustomizationFailure(), 1).event)["labels"]["severity"] == "error");
}

namespace {

std::vector<std::pair<std::string, EventTemplate>> templates(
    std::initializer_list<std::pair<std::string, std::string>> texts) {
    std::vector<std::pair<std::string, EventTemplate>> out;
    for (const auto& [name, text] : texts) {
        auto parsed = EventTemplate::parse(text);
        REQUIRE(std::holds_alternative<EventTemplate>(parsed));
        out.emplace_back(name, std::get<EventTemplate>(std::move(parsed)));
    }
    return out;
}

}  // namespace

TEST_CASE("the loader's list of Flux's own labels is exactly what fluxAlert sets beside the metadata") {
    FluxEvent flux = kustomizationFailure();
    flux.metadata.clear();
    const nlohmann::json alert = fluxAlert(makeFluxEvent(flux));
    std::set<std::string> own;
    for (const auto& [name, value] : alert["labels"].items()) own.insert(name);
    CHECK(own == std::set<std::string>(std::begin(kFluxAlertLabels), std::end(kFluxAlertLabels)));
    std::set<std::string> annotations;
    for (const auto& [name, value] : alert["annotations"].items()) annotations.insert(name);
    CHECK(annotations == std::set<std::string>(std::begin(kFluxAlertAnnotations), std::end(kFluxAlertAnnotations)));
}

TEST_CASE("labels and annotations: rendered per event, over metadata of the same name, left out when empty") {
    TargetConfig target = alertmanagerTarget();
    target.labels = templates({{"cluster", "home"},
                               {"team", "{metadata.team}"},
                               {"env", "{metadata.environment}"},
                               {"revision", ""},
                               {"owner", "{metadata.owner}"}});
    target.annotations = templates({{"summary", "{kind}/{name}: {reason}"},
                                    {"runbook_url", "https://runbooks/{kind}"},
                                    {"description", "{metadata.nothing}"}});
    const auto provider = makeAlertmanagerProvider(target);
    FluxEvent flux = kustomizationFailure();
    flux.metadata["team"] = "platform";
    flux.metadata["env"] = "prod";  // a metadata label the configured `env` replaces
    flux.metadata["owner"] = "";
    flux.metadata["summary"] = "metadata's summary";
    const auto alerts = nlohmann::json::parse(build(*provider, {makeDelivery(flux)}).body);
    REQUIRE(alerts.size() == 1);
    const nlohmann::json expectedLabels = {{"alertname", "FluxKustomizationReconciliationfailed"},
                                           {"severity", "error"},
                                           {"reason", "ReconciliationFailed"},
                                           {"kind", "Kustomization"},
                                           {"name", "apps"},
                                           {"namespace", "flux-system"},
                                           {"reportingcontroller", "kustomize-controller"},
                                           {"cluster", "home"},
                                           {"team", "platform"}};
    // `env` rendered empty (no environment metadata) and `revision: ""`: both gone, metadata's too.
    CHECK(alerts[0]["labels"] == expectedLabels);
    const nlohmann::json expectedAnnotations = {{"message", flux.message},
                                                {"summary", "Kustomization/apps: ReconciliationFailed"},
                                                {"runbook_url", "https://runbooks/Kustomization"}};
    CHECK(alerts[0]["annotations"] == expectedAnnotations);
}

TEST_CASE("labels see the event's severity; severityMap still renames the severity label") {
    TargetConfig target = alertmanagerTarget();
    target.severityMap = {{"error", "critical"}};
    target.labels = templates({{"flux_severity", "{severity}"}});
    const auto alerts =
        nlohmann::json::parse(build(*makeAlertmanagerProvider(target), {makeDelivery(kustomizationFailure())}).body);
    CHECK(alerts[0]["labels"]["severity"] == "critical");
    CHECK(alerts[0]["labels"]["flux_severity"] == "error");
}

TEST_CASE("resolve: an alert with templated labels is resolved with exactly the labels it fired with") {
    TargetConfig target = alertmanagerTarget();
    target.resolve = true;
    target.labels = templates({{"cluster", "home"}, {"revision_fired", "{revision}"}});
    target.annotations = templates({{"summary", "{name} failed: {message}"}});
    const auto provider = makeAlertmanagerProvider(target);
    const TimePoint now = Clock::now();

    const Delivery failure = makeDelivery(kustomizationFailure(), 1);
    ProviderState state = stateAfterDelivery(*provider, std::vector{failure}, {}, now);
    const auto fired = nlohmann::json::parse(std::get<HttpRequest>(buildRequest(*provider, std::vector{failure})).body);
    REQUIRE(fired.size() == 1);
    CHECK(fired[0]["labels"]["cluster"] == "home");
    CHECK(fired[0]["labels"]["revision_fired"] == "main@sha1:0123456789abcdef0123456789abcdef01234567");

    // The re-sends carry them too.
    const auto refresh = provider->refreshRequests(state, now);
    REQUIRE(refresh.size() == 1);
    CHECK(nlohmann::json::parse(refresh[0].body)[0]["labels"] == fired[0]["labels"]);

    // The recovery is of another revision, and the target's labels changed meanwhile (a reload):
    // what resolves is still the alert that fired, with its labels and annotations.
    TargetConfig reloaded = target;
    reloaded.labels = templates({{"cluster", "away"}, {"revision_fired", "{revision}"}});
    const auto provider2 = makeAlertmanagerProvider(reloaded);
    FluxEvent recovered = kustomizationFailure();
    recovered.severity = "info";
    recovered.reason = "ReconciliationSucceeded";
    recovered.message = "Applied revision";
    recovered.metadata["revision"] = "main@sha1:89abcdef0123456789abcdef0123456789abcdef";
    recovered.resolveOnly = true;
    const auto resolved = nlohmann::json::parse(
        std::get<HttpRequest>(buildRequest(*provider2, std::vector{makeDelivery(recovered, 2)}, state, now)).body);
    REQUIRE(resolved.size() == 1);
    CHECK(resolved[0]["status"] == "resolved");
    CHECK(resolved[0]["labels"] == fired[0]["labels"]);
    CHECK(resolved[0]["annotations"] == fired[0]["annotations"]);
}

}  // namespace fluxrelay

namespace fluxrelay {

TEST_CASE("clock skew: an alert never starts after it is sent, and one from long ago keeps its time") {
    const TimePoint now = TimePoint{std::chrono::seconds(1796533200)} + std::chrono::milliseconds(250);
    FluxEvent ahead = kustomizationFailure();
    ahead.timestamp = formatRfc3339(now + std::chrono::hours(2));
    FluxEvent behind = kustomizationFailure();
    behind.involvedObject.name = "infra";
    behind.timestamp = formatRfc3339(now - std::chrono::hours(72));

    SUBCASE("plain target") {
        const auto provider = makeProvider(alertmanagerTarget());
        const std::vector batch{makeDelivery(ahead, 1), makeDelivery(behind, 2)};
        const auto alerts = nlohmann::json::parse(std::get<HttpRequest>(buildRequest(*provider, batch, {}, now)).body);
        CHECK(alerts[0]["startsAt"] == formatRfc3339(now));
        CHECK(alerts[1]["startsAt"] == behind.timestamp);
    }
    SUBCASE("resolve target: fired starting now, resolved after it started") {
        TargetConfig target = alertmanagerTarget();
        target.resolve = true;
        const auto provider = makeProvider(target);
        const std::vector fired{makeDelivery(ahead, 1)};
        const auto firing = nlohmann::json::parse(std::get<HttpRequest>(buildRequest(*provider, fired, {}, now)).body);
        CHECK(firing[0]["startsAt"] == formatRfc3339(now));
        const ProviderState state = stateAfterDelivery(*provider, fired, {}, now);

        FluxEvent recovered = ahead;
        recovered.severity = "info";
        recovered.reason = "ReconciliationSucceeded";
        recovered.resolveOnly = true;
        const TimePoint later = now + std::chrono::seconds(30);
        const auto resolved = nlohmann::json::parse(
            std::get<HttpRequest>(buildRequest(*provider, std::vector{makeDelivery(recovered, 2)}, state, later)).body);
        CHECK(resolved[0]["startsAt"] == formatRfc3339(now));
        CHECK(resolved[0]["endsAt"] == formatRfc3339Nano(later));
    }
    SUBCASE("resolve target: an alert stored with a future start is resolved starting now") {
        TargetConfig target = alertmanagerTarget();
        target.resolve = true;
        const auto provider = makeProvider(target);
        nlohmann::json stored = fluxAlert(makeFluxEvent(ahead));  // as fired before the rule existed
        const auto keys = provider->stateKeys({});
        const ProviderState state{
            {keys[0],
             nlohmann::json{
                 {ahead.involvedObject.path(),
                  {{"seenAt", std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count()},
                   {"alerts", nlohmann::json::array({stored})}}}}
                 .dump()}};
        FluxEvent recovered = ahead;
        recovered.severity = "info";
        recovered.resolveOnly = true;
        const auto resolved = nlohmann::json::parse(
            std::get<HttpRequest>(buildRequest(*provider, std::vector{makeDelivery(recovered, 2)}, state, now)).body);
        CHECK(resolved[0]["startsAt"] == formatRfc3339(now));
        CHECK(resolved[0]["endsAt"] == formatRfc3339Nano(now));
    }
}

}  // namespace fluxrelay
