// Unit tests for core/event: the Flux JSON form (as Go writes it), storage round trips, ids.
#include "core/event.hpp"

#include <chrono>
#include <cstdint>
#include <iomanip>
#include <sstream>
#include <string>

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

using namespace fluxrelay;

namespace {

// The event behind Flux's published generic-hmac test vector.
FluxEvent vectorEvent() {
    FluxEvent event;
    event.involvedObject.kind = "GitRepository";
    event.involvedObject.namespace_ = "gitops-system";
    event.involvedObject.name = "webapp";
    event.severity = "info";
    event.timestamp = "2022-09-30T06:40:29Z";
    event.message = "message";
    event.reason = "reason";
    event.metadata = {{"test", "metadata"}};
    event.reportingController = "source-controller";
    event.reportingInstance = "source-controller-xyz";
    return event;
}

FluxEvent fullEvent() {
    FluxEvent event = vectorEvent();
    event.involvedObject = {
        .kind = "Kustomization",
        .namespace_ = "flux-system",
        .name = "apps",
        .uid = "0b6b2a4e-1111-2222-3333-444455556666",
        .apiVersion = "kustomize.toolkit.fluxcd.io/v1",
        .resourceVersion = "12345",
        .fieldPath = "spec.path",
    };
    event.severity = "error";
    event.timestamp = "2024-01-02T03:04:05.678+01:00";
    event.message = "Health check failed <after> 2m & \"more\"";
    event.reason = "HealthCheckFailed";
    event.metadata = {{"revision", "main@sha1:0123456789abcdef0123456789abcdef01234567"}, {"summary", "prod"}};
    event.dedupToken = "gen-7";
    return event;
}

}  // namespace

TEST_CASE("ObjectRef::group follows Kubernetes' ParseGroupVersion") {
    ObjectRef ref;
    CHECK(ref.group() == "");
    ref.apiVersion = "v1";
    CHECK(ref.group() == "");
    ref.apiVersion = "kustomize.toolkit.fluxcd.io/v1";
    CHECK(ref.group() == "kustomize.toolkit.fluxcd.io");
    ref.apiVersion = "helm.toolkit.fluxcd.io/v2beta1";
    CHECK(ref.group() == "helm.toolkit.fluxcd.io");
    ref.apiVersion = "/v1";
    CHECK(ref.group() == "");
    ref.apiVersion = "a/b/c";
    CHECK(ref.group() == "");
}

TEST_CASE("toFluxJsonText reproduces the body of Flux's signature test vector byte for byte") {
    CHECK(toFluxJsonText(vectorEvent()) ==
          R"({"involvedObject":{"kind":"GitRepository","namespace":"gitops-system","name":"webapp"},)"
          R"("severity":"info","timestamp":"2022-09-30T06:40:29Z","message":"message","reason":"reason",)"
          R"("metadata":{"test":"metadata"},"reportingController":"source-controller",)"
          R"("reportingInstance":"source-controller-xyz"})");
}

TEST_CASE("toFluxJsonText writes every field in Go's order and escapes as Go does") {
    CHECK(toFluxJsonText(fullEvent()) ==
          R"({"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"apps",)"
          R"("uid":"0b6b2a4e-1111-2222-3333-444455556666","apiVersion":"kustomize.toolkit.fluxcd.io/v1",)"
          R"("resourceVersion":"12345","fieldPath":"spec.path"},"severity":"error",)"
          R"("timestamp":"2024-01-02T02:04:05Z",)"
          R"("message":"Health check failed \u003cafter\u003e 2m \u0026 \"more\"","reason":"HealthCheckFailed",)"
          R"("metadata":{"revision":"main@sha1:0123456789abcdef0123456789abcdef01234567","summary":"prod"},)"
          R"("reportingController":"source-controller","reportingInstance":"source-controller-xyz"})");
}

TEST_CASE("toFluxJsonText: omitempty fields, null timestamp, control characters and invalid UTF-8") {
    FluxEvent event;
    event.involvedObject.kind = "HelmRelease";
    event.involvedObject.name = "podinfo";
    event.severity = "info";
    event.message = "a\nb\tc\x01\b\f\r\\ \xe2\x80\xa8 \xc3\xa9 \xff";
    CHECK(toFluxJsonText(event) ==
          R"({"involvedObject":{"kind":"HelmRelease","name":"podinfo"},"severity":"info","timestamp":null,)"
          R"("message":"a\nb\tc\u0001\b\f\r\\ \u2028 é \ufffd","reason":"","reportingController":""})");
}

TEST_CASE("toFluxJson carries the same fields with Go's omitempty rules") {
    const nlohmann::json json = toFluxJson(vectorEvent());
    const nlohmann::json expected = nlohmann::json::parse(toFluxJsonText(vectorEvent()));
    CHECK(json == expected);

    FluxEvent bare;
    bare.involvedObject.kind = "Bucket";
    bare.involvedObject.name = "b";
    bare.severity = "trace";
    const nlohmann::json bareJson = toFluxJson(bare);
    CHECK(bareJson["involvedObject"] == nlohmann::json{{"kind", "Bucket"}, {"name", "b"}});
    CHECK(bareJson["timestamp"].is_null());
    CHECK_FALSE(bareJson.contains("metadata"));
    CHECK_FALSE(bareJson.contains("reportingInstance"));
    CHECK(bareJson["reportingController"] == "");
    CHECK(bareJson["message"] == "");
    CHECK(bareJson["reason"] == "");
    CHECK_FALSE(bareJson.contains("dedupToken"));
}

namespace {

void checkSameFlux(const FluxEvent& a, const FluxEvent& b) {
    CHECK(a.involvedObject.kind == b.involvedObject.kind);
    CHECK(a.involvedObject.namespace_ == b.involvedObject.namespace_);
    CHECK(a.involvedObject.name == b.involvedObject.name);
    CHECK(a.involvedObject.uid == b.involvedObject.uid);
    CHECK(a.involvedObject.apiVersion == b.involvedObject.apiVersion);
    CHECK(a.involvedObject.resourceVersion == b.involvedObject.resourceVersion);
    CHECK(a.involvedObject.fieldPath == b.involvedObject.fieldPath);
    CHECK(a.severity == b.severity);
    CHECK(a.timestamp == b.timestamp);
    CHECK(a.message == b.message);
    CHECK(a.reason == b.reason);
    CHECK(a.metadata == b.metadata);
    CHECK(a.reportingController == b.reportingController);
    CHECK(a.reportingInstance == b.reportingInstance);
    CHECK(a.dedupToken == b.dedupToken);
}

}  // namespace

TEST_CASE("storage round trip of a Flux event keeps every field and the exact receive time") {
    Event event{
        .id = newEventId(),
        .source = "flux",
        .receivedAt = TimePoint{} + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::nanoseconds{1'700'000'000'123'456'789LL}),
        .payload = fullEvent(),
    };
    const std::string stored = toStorageText(event);
    // Written directly as text, it is still JSON with every field under its name.
    const nlohmann::json record = nlohmann::json::parse(stored);
    CHECK(record.at("flux").at("message") == event.flux()->message);
    CHECK(record.at("flux").at("metadata") == nlohmann::json(event.flux()->metadata));
    const Event back = fromStorageText(stored);
    CHECK(back.id == event.id);
    CHECK(back.source == event.source);
    CHECK(back.receivedAt == event.receivedAt);
    REQUIRE(back.flux() != nullptr);
    checkSameFlux(*back.flux(), *event.flux());
}

TEST_CASE("storage round trip of a GitHub event, including a body that is not UTF-8") {
    for (const std::string& body :
         {std::string(R"({"ref":"refs/heads/main"})"), std::string("payload=%7B\xff\x00", 13)}) {
        Event event{
            .id = "abc",
            .source = "github",
            .receivedAt = Clock::now(),
            .payload = GitHubEvent{.event = "push",
                                   .deliveryId = "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                                   .ref = "refs/heads/main",
                                   .deleted = true,
                                   .body = body},
        };
        const Event back = fromStorageText(toStorageText(event));
        REQUIRE(back.github() != nullptr);
        CHECK(back.flux() == nullptr);
        CHECK(back.receivedAt == event.receivedAt);
        CHECK(back.github()->event == "push");
        CHECK(back.github()->deliveryId == "72d3162e-cc78-11e3-81ab-4c9367dc0958");
        CHECK(back.github()->ref == "refs/heads/main");
        CHECK(back.github()->deleted);
        CHECK(back.github()->body == body);
    }
}

TEST_CASE("fromStorageText refuses records it did not write") {
    CHECK_THROWS(fromStorageText("{}"));
    CHECK_THROWS(fromStorageText("not json"));
    nlohmann::json record =
        nlohmann::json::parse(toStorageText(Event{.id = "x", .source = "s", .receivedAt = {}, .payload = FluxEvent{}}));
    record["kind"] = "other";
    CHECK_THROWS(fromStorageText(record.dump()));
    record["v"] = 99;
    CHECK_THROWS(fromStorageText(record.dump()));
}

TEST_CASE("toStorageText refuses a Flux string that is not UTF-8 instead of storing it altered") {
    FluxEvent flux;
    flux.message = std::string("bad \xff byte");
    const Event event{.id = "x", .source = "flux", .receivedAt = {}, .payload = flux};
    CHECK_THROWS_AS(toStorageText(event), std::invalid_argument);
}

TEST_CASE("newEventId is 32 lower-case hex digits and unique") {
    const std::string a = newEventId();
    const std::string b = newEventId();
    CHECK(a.size() == 32);
    CHECK(a.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(a != b);
}

TEST_CASE("newEventId starts with the time in milliseconds, so later ids sort later") {
    const auto millisNow = [] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
    };
    const auto before = millisNow();
    const std::string id = newEventId();
    const auto after = millisNow();
    const auto stamped = static_cast<std::int64_t>(std::stoull(id.substr(0, 12), nullptr, 16));
    CHECK(stamped >= before);
    CHECK(stamped <= after);

    // A hand-made id from the millisecond after: whatever its random part, it sorts after.
    std::ostringstream later;
    later << std::hex << std::setw(12) << std::setfill('0') << (after + 1) << std::string(20, '0');
    CHECK(id < later.str());
}
