// The ingest listener's handler: path → source, verify and parse, plan routes, store, answer.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <variant>

#include <boost/asio/awaitable.hpp>

#include "config/config.hpp"
#include "core/observer.hpp"
#include "gateway/rate_limit.hpp"
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
    // The 429 when the source's rateLimit refuses this request.
    std::optional<HttpServerResponse> rateLimited(const SourceConfig& source);

    std::function<ConfigPtr()> config_;
    Storage& storage_;
    RelayObserver& observer_;
    std::mutex bucketsMutex_;
    std::unordered_map<std::string, TokenBucket> buckets_;  // by source name; kept across reloads
};

}  // namespace fluxrelay
