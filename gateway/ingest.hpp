// The ingest listener's handler: path → source, verify and parse, plan routes, store, answer.
#pragma once

#include <functional>
#include <variant>

#include <boost/asio/awaitable.hpp>

#include "config/config.hpp"
#include "core/observer.hpp"
#include "gateway/server.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {

class Ingest {
public:
    // `config` returns the config in force; it is read once per request, so a reload never
    // changes the rules halfway through one.
    Ingest(std::function<ConfigPtr()> config, Storage& storage, RelayObserver& observer);

    boost::asio::awaitable<HttpServerResponse> handle(HttpServerRequest& request);

private:
    // The event a source makes of the request, or the answer refusing it.
    std::variant<EventPtr, HttpServerResponse> parse(const SourceConfig& source, const HttpServerRequest& request);
    boost::asio::awaitable<HttpServerResponse> store(const Config& config, EventPtr event);

    std::function<ConfigPtr()> config_;
    Storage& storage_;
    RelayObserver& observer_;
};

// Health answers shared by both listeners: /healthz is liveness, /readyz readiness.
std::optional<HttpServerResponse> healthResponse(std::string_view path, bool ready);

// The request path without its query string.
std::string_view requestPath(const HttpServerRequest& request);

}  // namespace fluxrelay
