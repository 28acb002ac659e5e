// Delivers what storage holds: per target a queue, `concurrency` workers each with its own
// keep-alive connection, retries on the SPEC §5.4 schedule. One target never waits on another.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "config/config.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {

class Dispatcher {
public:
    // Builds a provider and TLS context per target (throws on a start-up error such as an
    // unreadable CA file).
    Dispatcher(boost::asio::io_context& io, Storage& storage, const Config& config);
    ~Dispatcher();

    void start();
    // Stops taking new work; attempts in flight finish and are settled. Completes when idle.
    boost::asio::awaitable<void> stop();

private:
    class TargetQueue;
    Storage& storage_;
    std::map<std::string, std::shared_ptr<TargetQueue>> queues_;
};

}  // namespace fluxrelay
