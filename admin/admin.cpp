// Admin API: /healthz, /readyz, dead letters (list, replay).
#include "admin/admin.hpp"

#include <charconv>

#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "core/crypto.hpp"
#include "gateway/ingest.hpp"

namespace fluxrelay {

namespace http = boost::beast::http;

namespace {

constexpr std::string_view kDeadLettersPath = "/api/v1/deadletters";

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

Admin::Admin(std::function<ConfigPtr()> config, Storage& storage) : config_(std::move(config)), storage_(storage) {}

boost::asio::awaitable<HttpServerResponse> Admin::handle(HttpServerRequest& request) {
    const std::string_view path = requestPath(request);
    if (auto health = healthResponse(path, storage_.healthy())) {
        co_return *health;
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

bool Admin::authorized(const Config& config, const HttpServerRequest& request) const {
    if (config.admin.token.empty()) {
        return true;
    }
    const auto header = request.find(http::field::authorization);
    return header != request.end() && constantTimeEquals(header->value(), "Bearer " + config.admin.token);
}

boost::asio::awaitable<HttpServerResponse> Admin::deadLetters(const HttpServerRequest&) {
    const auto letters = co_await asyncDeadLetters(storage_, 1000, boost::asio::use_awaitable);
    nlohmann::json body = nlohmann::json::array();
    for (const auto& letter : letters) {
        body.push_back(toJson(letter));
    }
    co_return jsonResponse(200, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
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
