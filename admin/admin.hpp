// The admin listener's handler: health, readiness, metrics and the JSON API behind the status page.
#pragma once

#include <functional>

#include <boost/asio/awaitable.hpp>

#include "admin/telemetry.hpp"
#include "config/config.hpp"
#include "gateway/server.hpp"
#include "providers/dispatcher.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {

class Admin {
public:
    Admin(std::function<ConfigPtr()> config, Storage& storage, Telemetry& telemetry,
          std::function<std::vector<TargetHealth>()> targetHealth);

    boost::asio::awaitable<HttpServerResponse> handle(HttpServerRequest& request);

private:
    boost::asio::awaitable<HttpServerResponse> deadLetters(const HttpServerRequest& request);
    boost::asio::awaitable<HttpServerResponse> replay(const HttpServerRequest& request, std::string_view id);
    HttpServerResponse targets() const;
    boost::asio::awaitable<void> refreshStorageGauges();
    bool authorized(const Config& config, const HttpServerRequest& request) const;

    std::function<ConfigPtr()> config_;
    Storage& storage_;
    Telemetry& telemetry_;
    std::function<std::vector<TargetHealth>()> targetHealth_;
};

}  // namespace fluxrelay
