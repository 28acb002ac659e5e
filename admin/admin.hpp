// The admin listener's handler: health, readiness and the JSON API over storage.
#pragma once

#include <functional>

#include <boost/asio/awaitable.hpp>

#include "config/config.hpp"
#include "gateway/server.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {

class Admin {
public:
    Admin(std::function<ConfigPtr()> config, Storage& storage);

    boost::asio::awaitable<HttpServerResponse> handle(HttpServerRequest& request);

private:
    boost::asio::awaitable<HttpServerResponse> deadLetters(const HttpServerRequest& request);
    boost::asio::awaitable<HttpServerResponse> replay(const HttpServerRequest& request, std::string_view id);
    bool authorized(const Config& config, const HttpServerRequest& request) const;

    std::function<ConfigPtr()> config_;
    Storage& storage_;
};

}  // namespace fluxrelay
