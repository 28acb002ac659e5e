// Ingest over the memory spool: the one path from a request to stored deliveries, and every answer
// it gives on the way.
#include "gateway/ingest.hpp"

#include <memory>
#include <string>

#include <doctest/doctest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <nlohmann/json.hpp>

#include "config/loader.hpp"
#include "core/crypto.hpp"

namespace fluxrelay {

namespace {

constexpr std::string_view kHmacKey = "ingest-test-hmac-key-0123456789";

constexpr std::string_view kConfig = R"(
sources:
  - {name: flux, type: flux, path: /flux/events, hmacKey: ingest-test-hmac-key-0123456789}
targets:
  - {name: am, type: alertmanager, address: "http://127.0.0.1:9/api/v2/alerts"}
routes:
  - {name: errors, source: flux, eventSeverity: error, exclusionList: ["dial tcp"], targets: [am]}
)";

// Records what ingest reports, to check it against what it answers.
struct RecordingObserver final : RelayObserver {
    std::vector<std::string> rejections;  // reason labels
    std::vector<RouteFate> fates;

    void onReceived(std::string_view) override {}
    void onRejected(std::string_view, int, std::string_view reason, std::string_view) override {
        rejections.emplace_back(reason);
    }
    void onAccepted(const Event&, std::span<const RouteFate> routes) override {
        fates.assign(routes.begin(), routes.end());
    }
    void onAttempt(const AttemptReport&) override {}
    void onBatch(std::string_view, std::size_t) override {}
};

struct IngestFixture {
    ConfigPtr config = loadConfigText(std::string(kConfig), "test.yaml");
    std::unique_ptr<Storage> storage = makeMemoryStorage(100);
    RecordingObserver observer;
    Ingest ingest{[this] { return config; }, *storage, observer};

    HttpServerResponse post(std::string target, std::string body, bool signed_ = true) {
        HttpServerRequest request{boost::beast::http::verb::post, target, 11};
        request.set(boost::beast::http::field::content_type, "application/json");
        if (signed_) request.set("X-Signature", "sha256=" + toHex(hmac(HashAlgorithm::sha256, kHmacKey, body)));
        request.body() = std::move(body);
        request.prepare_payload();
        boost::asio::io_context io;
        auto answer = boost::asio::co_spawn(io, ingest.handle(request), boost::asio::use_future);
        io.run();
        return answer.get();
    }

    std::uint64_t waiting() {
        auto counts = asyncCounts(*storage, boost::asio::use_future);
        std::uint64_t total = 0;
        for (const auto& count : counts.get()) total += count.waiting;
        return total;
    }
};

std::string fluxEvent(std::string_view severity, std::string_view message) {
    return nlohmann::json{
        {"involvedObject", {{"kind", "Kustomization"}, {"namespace", "flux-system"}, {"name", "apps"}}},
        {"severity", severity},
        {"timestamp", "2026-12-06T05:00:00Z"},
        {"message", message},
        {"reason", "HealthCheckFailed"},
        {"reportingController", "kustomize-controller"}}
        .dump();
}

}  // namespace

TEST_CASE("ingest: a signed error event is stored as one delivery per target and answered 202") {
    IngestFixture fixture;
    const HttpServerResponse answer = fixture.post("/flux/events", fluxEvent("error", "health check failed"));
    CHECK(answer.result_int() == 202);
    CHECK(nlohmann::json::parse(answer.body())["status"] == "accepted");
    CHECK(fixture.waiting() == 1);
    REQUIRE(fixture.observer.fates.size() == 1);
    CHECK((fixture.observer.fates[0].verdict == Verdict::pass));
    CHECK(fixture.observer.fates[0].targets == std::vector<std::string>{"am"});
}

TEST_CASE("ingest: an event no route takes is accepted and stores nothing, with each route's verdict") {
    IngestFixture fixture;
    CHECK(fixture.post("/flux/events", fluxEvent("info", "applied")).result_int() == 202);
    CHECK(fixture.post("/flux/events?x=1", fluxEvent("error", "dial tcp 10.0.0.1:443")).result_int() == 202);
    CHECK(fixture.waiting() == 0);
    REQUIRE(fixture.observer.fates.size() == 1);
    CHECK((fixture.observer.fates[0].verdict == Verdict::exclusion));
}

TEST_CASE("ingest: each refusal names the problem, stores nothing and is reported") {
    IngestFixture fixture;
    const HttpServerResponse unsigned_ = fixture.post("/flux/events", fluxEvent("error", "x"), false);
    CHECK(unsigned_.result_int() == 401);
    const HttpServerResponse broken = fixture.post("/flux/events", "{\"severity\":");
    CHECK(broken.result_int() == 400);
    const HttpServerResponse nowhere = fixture.post("/elsewhere", fluxEvent("error", "x"));
    CHECK(nowhere.result_int() == 404);
    CHECK(nowhere.body().find("no source is configured at /elsewhere") != std::string::npos);
    CHECK(fixture.waiting() == 0);
    CHECK(fixture.observer.rejections.size() == 2);  // a path no source has belongs to no source's metrics
    for (const HttpServerResponse* answer : {&unsigned_, &broken}) {
        CHECK_FALSE(nlohmann::json::parse(answer->body())["error"].get<std::string>().empty());
    }
}

}  // namespace fluxrelay
