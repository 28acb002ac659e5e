// Ingest: the one path of an event from the socket to storage.
#include "gateway/ingest.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "filters/plan.hpp"
#include "gateway/endpoints.hpp"
#include "gateway/flux_source.hpp"
#include "gateway/github_source.hpp"

namespace fluxrelay {

namespace http = boost::beast::http;

namespace {

// GitHub redelivers under the same delivery id: one seen within a day is a redelivery.
constexpr Duration kGitHubDeliveryWindow = std::chrono::hours(24);

}  // namespace

Ingest::Ingest(std::function<ConfigPtr()> config, Storage& storage, RelayObserver& observer)
    : config_(std::move(config)), storage_(storage), observer_(observer) {}

boost::asio::awaitable<HttpServerResponse> Ingest::handle(HttpServerRequest& request) {
    const ConfigPtr config = config_();
    const std::string_view path = requestPath(request);
    if (auto health = healthResponse(path, storage_.healthy())) {
        co_return *health;
    }
    const SourceConfig* source = config->sourceByPath(path);
    if (source == nullptr) {
        co_return errorResponse(404, "no source is configured at " + std::string(path));
    }
    observer_.onReceived(source->name);
    // Before any verification: refusing is what keeps a flood from costing HMACs and storage.
    if (auto refused = rateLimited(*source)) {
        co_return std::move(*refused);
    }
    if (request.method() != http::verb::post) {
        const std::string error = "method " + std::string(request.method_string()) + " is not allowed; use POST";
        observer_.onRejected(source->name, 405, "method", error);
        auto response = errorResponse(405, error);
        response.set(http::field::allow, "POST");
        co_return response;
    }

    // Verification and parsing are plain functions: decisions without I/O, tested without a socket.
    auto parsed = parse(*source, request);
    if (auto* answer = std::get_if<HttpServerResponse>(&parsed)) {
        co_return std::move(*answer);
    }
    EventPtr event = std::get<EventPtr>(std::move(parsed));
    co_return co_await store(*config, std::move(event));
}

std::optional<HttpServerResponse> Ingest::rateLimited(const SourceConfig& source) {
    if (!source.rateLimit) {
        return std::nullopt;
    }
    RateDecision decision;
    {
        std::lock_guard lock(bucketsMutex_);
        decision = takeToken(buckets_[source.name], *source.rateLimit, RateClock::now());
    }
    if (decision.allowed) {
        return std::nullopt;
    }
    const auto seconds = std::max<std::int64_t>(1, (decision.retryAfter.count() + 999) / 1000);
    const std::string error = "rate limit of source " + source.name + " exceeded (" +
                              std::to_string(source.rateLimit->requestsPerSecond) + " requests per second, burst " +
                              std::to_string(source.rateLimit->burst) + "); retry after " + std::to_string(seconds) +
                              " s";
    observer_.onRejected(source.name, 429, "rate_limit", error);
    auto response = errorResponse(429, error);
    response.set(http::field::retry_after, std::to_string(seconds));
    return response;
}

std::variant<EventPtr, HttpServerResponse> Ingest::parse(const SourceConfig& source, const HttpServerRequest& request) {
    const InboundRequest inbound{
        .body = request.body(),
        .header = [&request](std::string_view name) -> std::optional<std::string_view> {
            const auto it = request.find(name);
            if (it == request.end()) {
                return std::nullopt;
            }
            return std::string_view(it->value());
        },
    };
    const auto rejected = [this, &source](const Rejection& rejection) {
        spdlog::info("rejected request on source {}: {} ({})", source.name, rejection.error, rejection.status);
        observer_.onRejected(source.name, rejection.status, rejection.reason, rejection.error);
        return errorResponse(rejection.status, rejection.error);
    };
    const auto newEvent = [&source](auto payload) -> EventPtr {
        return std::make_shared<Event>(Event{
            .id = newEventId(),
            .source = source.name,
            .receivedAt = Clock::now(),
            .payload = std::move(payload),
        });
    };
    switch (source.type) {
        case SourceType::flux: {
            auto accepted = acceptFluxRequest(source, inbound);
            if (const auto* rejection = std::get_if<Rejection>(&accepted)) return rejected(*rejection);
            return newEvent(std::move(std::get<FluxEvent>(accepted)));
        }
        case SourceType::github: {
            auto accepted = acceptGitHubRequest(source, inbound);
            if (const auto* rejection = std::get_if<Rejection>(&accepted)) return rejected(*rejection);
            if (const auto* ping = std::get_if<GitHubPing>(&accepted)) {
                spdlog::info("source {}: GitHub ping {}", source.name, ping->deliveryId);
                return jsonResponse(200, R"({"status":"pong"})");
            }
            return newEvent(std::move(std::get<GitHubEvent>(accepted)));
        }
    }
    return errorResponse(500, "unknown source type");
}

boost::asio::awaitable<HttpServerResponse> Ingest::store(const Config& config, EventPtr event) {
    AcceptRequest request{.event = event,
                          .routes = {},
                          .idempotencyKey = {},
                          .idempotencyWindow = {},
                          .objectHealth = objectHealthOf(*event, config.admin.forgetObjectsAfter)};
    if (const GitHubEvent* github = event->github()) {
        // GitHub redelivers on request, and after its 10 s timeout: a delivery id triggers once.
        request.idempotencyKey = "github-delivery:" + event->source + ":" + github->deliveryId;
        request.idempotencyWindow = kGitHubDeliveryWindow;
    }
    std::vector<RouteFate> fates;
    for (auto& plan : planRoutes(config, event)) {
        RouteFate& fate = fates.emplace_back(
            RouteFate{.route = plan.route, .verdict = plan.decision.verdict, .reason = plan.decision.reason});
        if (!plan.decision.passed()) {
            spdlog::debug("event {} not routed by {}: {}", event->id, plan.route, plan.decision.reason);
            continue;
        }
        AcceptRequest::Route route{.name = plan.route,
                                   .dedup = plan.dedup,
                                   .event = plan.event,
                                   .targets = {},
                                   .delay = plan.delay,
                                   .coalesceKey = plan.coalesceKey};
        for (const auto& target : plan.targets) {
            if (target.decision.passed()) {
                route.targets.push_back(target.target);
            } else {
                spdlog::debug("event {} route {} skips target {}: {}", event->id, plan.route, target.target,
                              target.decision.reason);
                fate.reason += (fate.reason.empty() ? "" : "; ") + target.target + ": " + target.decision.reason;
            }
        }
        if (route.targets.empty()) {
            fate.verdict = Verdict::targetRule;
            continue;
        }
        fate.targets = route.targets;
        request.routes.push_back(std::move(route));
    }

    const AcceptResult result = co_await asyncAccept(storage_, std::move(request), boost::asio::use_awaitable);
    if (!result.stored) {
        spdlog::error("event from source {} not stored: {}", event->source, result.error);
        observer_.onRejected(event->source, 503, "storage", result.error);
        auto response = errorResponse(503, "storage unavailable, retry later");
        response.set(http::field::retry_after, "5");
        co_return response;
    }
    if (result.duplicateEvent) {
        spdlog::info("source {}: delivery {} was accepted before; nothing is triggered again", event->source,
                     event->github() ? event->github()->deliveryId : event->id);
        co_return jsonResponse(200, R"({"status":"duplicate"})");
    }
    for (const auto& suppressed : result.suppressed) {
        spdlog::debug("event {} suppressed on route {}: {}", event->id, suppressed.route, suppressed.why.reason);
        for (auto& fate : fates) {
            if (fate.route == suppressed.route) {
                fate.verdict = suppressed.why.verdict;
                fate.reason = suppressed.why.reason;
                fate.targets.clear();
            }
        }
    }
    observer_.onAccepted(*event, fates);
    // The id is hex (newEventId): nothing in it needs escaping.
    co_return jsonResponse(202, R"({"status":"accepted","id":")" + event->id + R"("})");
}

}  // namespace fluxrelay
