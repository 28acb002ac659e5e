// The dispatcher over a memory spool, delivering to a scripted HTTP peer on loopback: retries, dead
// letters, a resolution planned over the state the delivery before it wrote, and an attempt of
// several steps (a GitHub Deployment created, then its status posted).
#include "providers/dispatcher.hpp"

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <doctest/doctest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <nlohmann/json.hpp>

#include "config/loader.hpp"
#include "gateway/ingest.hpp"
#include "gateway/server.hpp"

namespace fluxrelay {

namespace {

// What the dispatcher reports, readable from the test's thread.
struct AttemptLog final : RelayObserver {
    std::mutex mutex;
    std::vector<AttemptReport> attempts;

    void onReceived(std::string_view) override {}
    void onRejected(std::string_view, int, std::string_view, std::string_view) override {}
    void onAccepted(const Event&, std::span<const RouteFate>) override {}
    void onAttempt(const AttemptReport& report) override {
        std::lock_guard lock(mutex);
        attempts.push_back(report);
    }
    void onBatch(std::string_view, std::size_t) override {}

    std::vector<AttemptOutcome> outcomes() {
        std::lock_guard lock(mutex);
        std::vector<AttemptOutcome> out;
        for (const auto& attempt : attempts) out.push_back(attempt.outcome);
        return out;
    }
};

// An HTTP peer that answers with the statuses it is given, in order, then 200; it keeps every body.
struct ScriptedPeer {
    std::mutex mutex;
    std::deque<unsigned> answers;
    std::vector<std::string> bodies;

    boost::asio::awaitable<HttpServerResponse> handle(HttpServerRequest& request) {
        std::lock_guard lock(mutex);
        bodies.push_back(request.body());
        unsigned status = 200;
        if (!answers.empty()) {
            status = answers.front();
            answers.pop_front();
        }
        co_return jsonResponse(status, status == 200 ? "" : R"({"error":"scripted"})");
    }

    std::vector<std::string> received() {
        std::lock_guard lock(mutex);
        return bodies;
    }

    // The first alert received with `status` ("firing", "resolved"); null when none came yet.
    nlohmann::json firstAlert(std::string_view status) {
        for (const auto& body : received()) {
            for (const auto& alert : nlohmann::json::parse(body)) {
                if (alert["status"] == status) return alert;
            }
        }
        return nullptr;
    }
};

// GitHub's deployment endpoints as far as the dispatcher's steps need them: a list, a create that
// answers an id, and a status post that fails as often as asked.
struct DeploymentPeer {
    std::mutex mutex;
    std::vector<std::string> calls;  // "METHOD path"
    int created = 0;
    int statusFailures = 0;

    boost::asio::awaitable<HttpServerResponse> handle(HttpServerRequest& request) {
        std::lock_guard lock(mutex);
        const std::string method(request.method_string());
        const std::string target(request.target());
        calls.push_back(method + " " + target.substr(0, target.find('?')));
        if (method == "GET") co_return jsonResponse(200, "[]");
        if (target.ends_with("/deployments"))
            co_return jsonResponse(201, R"({"id":)" + std::to_string(++created) + "}");
        if (statusFailures > 0) {
            --statusFailures;
            co_return jsonResponse(502, R"({"message":"Server Error"})");
        }
        co_return jsonResponse(201, R"({"id":1,"state":"success"})");
    }

    std::vector<std::string> received() {
        std::lock_guard lock(mutex);
        return calls;
    }
};

// Polls `condition` every 10 ms for up to 10 s.
template <class Condition>
bool eventually(Condition condition) {
    for (int i = 0; i < 1000; ++i) {
        if (condition()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return condition();
}

std::string alertmanagerConfig(std::uint16_t port, std::string_view targetExtras) {
    return R"(
sources:
  - {name: flux, type: flux, path: /flux/events}
targets:
  - name: am
    type: alertmanager
    address: http://127.0.0.1:)" +
           std::to_string(port) + R"(/api/v2/alerts
    concurrency: 1
    retry: {initialInterval: 10ms, maxInterval: 20ms, maxAttempts: 3}
)" + std::string(targetExtras) +
           R"(
routes:
  - {name: errors, source: flux, eventSeverity: error, dedup: {mode: none}, targets: [am]}
)";
}

struct DispatcherFixture {
    boost::asio::io_context io;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work = boost::asio::make_work_guard(io);
    ScriptedPeer peer;
    DeploymentPeer github;
    bool deployments = false;
    HttpServer server{
        io, Endpoint{"127.0.0.1", 0}, ServerLimits{},
        [this](HttpServerRequest& request) { return deployments ? github.handle(request) : peer.handle(request); },
        "peer"};
    ConfigPtr config;
    std::unique_ptr<Storage> storage = makeMemoryStorage(100);
    AttemptLog log;
    std::unique_ptr<Ingest> ingest;
    std::unique_ptr<Dispatcher> dispatcher;
    std::thread thread;

    explicit DispatcherFixture(std::string_view targetExtras)
        : DispatcherFixture([&](std::uint16_t port) { return alertmanagerConfig(port, targetExtras); }, false) {}

    // `configText` is given the peer's port; `deployments`: the peer is GitHub's deployments API.
    template <class ConfigText>
    DispatcherFixture(ConfigText configText, bool deploymentsPeer) : deployments(deploymentsPeer) {
        config = loadConfigText(configText(server.localEndpoint().port()), "test.yaml");
        ingest = std::make_unique<Ingest>([this] { return config; }, *storage, log);
        dispatcher = std::make_unique<Dispatcher>(io, *storage, *config, log);
        server.start();
        dispatcher->start();
        thread = std::thread([this] { io.run(); });
    }

    ~DispatcherFixture() {
        boost::asio::co_spawn(io, dispatcher->stop(), boost::asio::use_future).get();
        server.stop();
        work.reset();
        io.stop();
        thread.join();
    }

    void post(std::string_view severity, std::string_view reason, std::string_view revision = {}) {
        HttpServerRequest request{boost::beast::http::verb::post, "/flux/events", 11};
        request.set(boost::beast::http::field::content_type, "application/json");
        nlohmann::json event = {
            {"involvedObject", {{"kind", "Kustomization"}, {"namespace", "flux-system"}, {"name", "apps"}}},
            {"severity", severity},
            {"timestamp", "2026-12-06T05:00:00Z"},
            {"message", reason},
            {"reason", reason},
            {"reportingController", "kustomize-controller"}};
        if (!revision.empty()) event["metadata"] = {{"revision", revision}};
        request.body() = event.dump();
        request.prepare_payload();
        const auto answer = boost::asio::co_spawn(io, ingest->handle(request), boost::asio::use_future).get();
        REQUIRE(answer.result_int() == 202);
    }
};

}  // namespace

TEST_CASE("dispatcher: a 503 is retried on the target's schedule until delivered; a 400 is a dead letter") {
    DispatcherFixture fixture("");
    {
        std::lock_guard lock(fixture.peer.mutex);
        fixture.peer.answers = {503, 503};
    }
    fixture.post("error", "HealthCheckFailed");
    REQUIRE(eventually([&] { return fixture.log.outcomes().size() == 3; }));
    CHECK((fixture.log.outcomes() ==
           std::vector{AttemptOutcome::retry, AttemptOutcome::retry, AttemptOutcome::delivered}));
    CHECK(fixture.peer.received().size() == 3);

    {
        std::lock_guard lock(fixture.peer.mutex);
        fixture.peer.answers = {400};
    }
    fixture.post("error", "ReconciliationFailed");
    REQUIRE(eventually([&] { return fixture.log.outcomes().size() == 4; }));
    CHECK((fixture.log.outcomes().back() == AttemptOutcome::dead));
    const auto letters = asyncDeadLetters(*fixture.storage, 10, boost::asio::use_future).get();
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].reason.find("HTTP 400") == 0);
}

TEST_CASE("dispatcher: with resolve, the info event resolves exactly the alert the error fired") {
    DispatcherFixture fixture("    resolve: true\n");
    fixture.post("error", "HealthCheckFailed");
    // The first round of re-sends may come before or after the alert: wait for the alert itself.
    const auto firing = [&] { return fixture.peer.firstAlert("firing"); };
    REQUIRE(eventually([&] { return !firing().is_null(); }));
    fixture.post("info", "ReconciliationSucceeded");
    const auto resolved = [&] { return fixture.peer.firstAlert("resolved"); };
    REQUIRE(eventually([&] { return !resolved().is_null(); }));
    CHECK(resolved()["labels"] == firing()["labels"]);
    CHECK(resolved()["startsAt"] == firing()["startsAt"]);
}

TEST_CASE("dispatcher: a status post that fails after the Deployment was created is retried on that Deployment") {
    DispatcherFixture fixture(
        [](std::uint16_t port) {
            return R"(
sources:
  - {name: flux, type: flux, path: /flux/events}
targets:
  - name: deploys
    type: github-deployment
    address: http://127.0.0.1:)" +
                   std::to_string(port) + R"(/owner/repo
    environment: production
    token: test-token
    retry: {initialInterval: 10ms, maxInterval: 20ms, maxAttempts: 5}
routes:
  - {name: rollouts, source: flux, dedup: {mode: none}, targets: [deploys]}
)";
        },
        true);
    {
        std::lock_guard lock(fixture.github.mutex);
        fixture.github.statusFailures = 1;
    }
    const std::string revision = "main@sha1:5394cb7f48332b2de7c17dd8b8384bbc84b7e738";
    fixture.post("info", "Progressing", revision);
    REQUIRE(eventually([&] { return fixture.log.outcomes().size() == 2; }));
    CHECK((fixture.log.outcomes() == std::vector{AttemptOutcome::retry, AttemptOutcome::delivered}));
    fixture.post("error", "HealthCheckFailed", revision);
    REQUIRE(eventually([&] { return fixture.log.outcomes().size() == 3; }));
    CHECK((fixture.log.outcomes().back() == AttemptOutcome::delivered));
    // One list and one create, then only statuses: the failed post's retry found the stored id.
    CHECK(fixture.github.received() == std::vector<std::string>{
                                           "GET /api/v3/repos/owner/repo/deployments",
                                           "POST /api/v3/repos/owner/repo/deployments",
                                           "POST /api/v3/repos/owner/repo/deployments/1/statuses",
                                           "POST /api/v3/repos/owner/repo/deployments/1/statuses",
                                           "POST /api/v3/repos/owner/repo/deployments/1/statuses",
                                       });
}

}  // namespace fluxrelay
