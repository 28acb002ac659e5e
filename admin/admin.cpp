// Admin API: status page, health, /metrics, recent events, failing objects, targets, dead letters (list, replay).
#include "admin/admin.hpp"

#include <algorithm>
#include <charconv>

#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "admin/shared_journal.hpp"
#include "admin/status_page.hpp"
#include "core/crypto.hpp"
#include "gateway/endpoints.hpp"

namespace fluxrelay {

namespace http = boost::beast::http;

namespace {

constexpr std::string_view kDeadLettersPath = "/api/v1/deadletters";

std::string dump(const nlohmann::json& json) {
    return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// `?limit=N` clamped to [1, max]; `fallback` when absent or not a whole positive number.
std::size_t queryLimit(const HttpServerRequest& request, std::size_t fallback, std::size_t max) {
    const std::optional<std::string> text = queryParameter(request, "limit");
    if (!text) return fallback;
    std::size_t limit = 0;
    const auto [end, error] = std::from_chars(text->data(), text->data() + text->size(), limit);
    if (error != std::errc{} || end != text->data() + text->size() || limit == 0) return fallback;
    return std::min(limit, max);
}

nlohmann::json toJson(const DeadLetter& letter) {
    return {
        {"id", letter.delivery.id},
        {"route", letter.delivery.route},
        {"target", letter.delivery.target},
        {"eventId", letter.delivery.event->id},
        {"attempts", letter.delivery.attempts},
        {"reason", letter.reason},
        {"deadAt", formatRfc3339(letter.deadAt)},
        {"createdAt", formatRfc3339(letter.delivery.createdAt)},
    };
}

}  // namespace

Admin::Admin(std::function<ConfigPtr()> config, Storage& storage, Telemetry& telemetry,
             std::function<std::vector<TargetHealth>()> targetHealth)
    : config_(std::move(config)), storage_(storage), telemetry_(telemetry), targetHealth_(std::move(targetHealth)) {}

boost::asio::awaitable<HttpServerResponse> Admin::handle(HttpServerRequest& request) {
    const std::string_view path = requestPath(request);
    if (auto health = healthResponse(path, storage_.healthy())) {
        co_return *health;
    }
    const bool get = request.method() == http::verb::get || request.method() == http::verb::head;
    if (path == "/" && get) {
        auto response = HttpServerResponse{http::status::ok, request.version()};
        response.set(http::field::content_type, "text/html; charset=utf-8");
        response.set("Content-Security-Policy", statusPageContentSecurityPolicy());
        response.set(http::field::cache_control, "no-cache");
        response.set("X-Content-Type-Options", "nosniff");
        response.set("Referrer-Policy", "no-referrer");
        response.body() = std::string(statusPageHtml());
        co_return response;
    }
    if (path == "/metrics" && get) {
        co_await refreshStorageGauges();
        auto response = HttpServerResponse{http::status::ok, request.version()};
        response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        response.body() = telemetry_.metrics().render();
        co_return response;
    }
    if (path == "/api/v1/events" && get) {
        co_return jsonResponse(
            200, dump(co_await recentEvents(telemetry_.journal(), storage_, queryLimit(request, 100, 500))));
    }
    if (path == "/api/v1/objects" && get) {
        co_return jsonResponse(200, dump(co_await failingObjects(telemetry_.journal(), storage_)));
    }
    if (path == "/api/v1/targets" && get) {
        co_return targets();
    }
    if (path == kDeadLettersPath) {
        if (request.method() != http::verb::get) {
            co_return errorResponse(405, "use GET");
        }
        co_return co_await deadLetters(request);
    }
    if (path.starts_with(kDeadLettersPath) && path.ends_with("/replay")) {
        if (request.method() != http::verb::post) {
            co_return errorResponse(405, "use POST");
        }
        if (!authorized(*config_(), request)) {
            co_return errorResponse(401, "missing or invalid admin bearer token");
        }
        const auto id = path.substr(kDeadLettersPath.size() + 1, path.size() - kDeadLettersPath.size() - 1 - 7);
        co_return co_await replay(request, id);
    }
    co_return errorResponse(404, "no admin endpoint at " + std::string(path));
}

// Queue depth, dead letters and failing objects come from storage at scrape time: they survive
// restarts and are shared by replicas, which counters kept in this process would not be.
boost::asio::awaitable<void> Admin::refreshStorageGauges() {
    const auto counts = co_await asyncCounts(storage_, boost::asio::use_awaitable);
    for (const auto& target : config_()->targets) {
        const auto it = std::find_if(counts.begin(), counts.end(),
                                     [&](const Storage::TargetCounts& count) { return count.target == target.name; });
        telemetry_.metrics().setQueue(target.name, it == counts.end() ? 0 : it->waiting,
                                      it == counts.end() ? 0 : it->dead);
    }
    telemetry_.metrics().setStorageRepairs(storage_.repairs());
    telemetry_.metrics().setFailingObjects(
        co_await asyncFailingObjects(storage_, Clock::now(), boost::asio::use_awaitable));
}

HttpServerResponse Admin::targets() const {
    nlohmann::json body = nlohmann::json::array();
    auto when = [](TimePoint at) {
        return at == TimePoint{} ? nlohmann::json(nullptr) : nlohmann::json(formatRfc3339Nano(at));
    };
    for (const auto& health : targetHealth_()) {
        body.push_back({{"name", health.target},
                        {"type", health.type},
                        {"breaker", health.breaker},
                        {"paused", health.paused},
                        {"inFlight", health.inFlight},
                        {"lastError", health.lastError},
                        {"lastErrorAt", when(health.lastErrorAt)},
                        {"lastSuccessAt", when(health.lastSuccessAt)}});
    }
    return jsonResponse(200, dump(body));
}

bool Admin::authorized(const Config& config, const HttpServerRequest& request) const {
    if (config.admin.token.empty()) {
        return true;
    }
    const auto header = request.find(http::field::authorization);
    // The token's length is as secret as its bytes: digests are compared.
    return header != request.end() && secretEquals(header->value(), "Bearer " + config.admin.token);
}

boost::asio::awaitable<HttpServerResponse> Admin::deadLetters(const HttpServerRequest&) {
    const auto letters = co_await asyncDeadLetters(storage_, 1000, boost::asio::use_awaitable);
    nlohmann::json body = nlohmann::json::array();
    for (const auto& letter : letters) {
        body.push_back(toJson(letter));
    }
    co_return jsonResponse(200, dump(body));
}

boost::asio::awaitable<HttpServerResponse> Admin::replay(const HttpServerRequest&, std::string_view idText) {
    std::uint64_t id = 0;
    const auto [end, error] = std::from_chars(idText.data(), idText.data() + idText.size(), id);
    if (error != std::errc{} || end != idText.data() + idText.size()) {
        co_return errorResponse(400, "dead letter id must be a number");
    }
    if (!co_await asyncReplay(storage_, id, boost::asio::use_awaitable)) {
        co_return errorResponse(404, "no dead letter with id " + std::string(idText));
    }
    co_return jsonResponse(202, nlohmann::json{{"status", "replaying"}, {"id", id}}.dump());
}

}  // namespace fluxrelay
