// Delivers what storage holds: per target a queue, `concurrency` workers each with its own
// keep-alive connection, retries on the schedule of retry.hpp. One target never waits on another.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "config/config.hpp"
#include "core/observer.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {

// A target's health as the status page shows it.
struct TargetHealth {
    std::string target;
    std::string type;
    std::string breaker;  // "closed" | "open" | "half-open"
    bool paused = false;  // rate limited
    std::string lastError;
    TimePoint lastErrorAt{};
    TimePoint lastSuccessAt{};
    std::uint64_t inFlight = 0;
};

class Dispatcher {
public:
    // Builds a provider and TLS context per target (throws on a start-up error such as an
    // unreadable CA file).
    Dispatcher(boost::asio::io_context& io, Storage& storage, const Config& config, RelayObserver& observer);
    ~Dispatcher();

    void start();
    // Stops taking new work; attempts in flight finish and are settled. Completes when idle.
    boost::asio::awaitable<void> stop();

    // Applies a reloaded config: new targets start, changed ones restart with their new settings
    // (their queued deliveries stay in storage and are picked up), removed ones stop and their
    // undelivered work becomes dead letters "target removed". Returns an error, and changes
    // nothing, when a target cannot be set up (e.g. an unreadable CA file).
    boost::asio::awaitable<std::string> reconfigure(const Config& config);

    // A snapshot, safe from any thread.
    std::vector<TargetHealth> health() const;

private:
    class TargetQueue;
    using Queues = std::map<std::string, std::shared_ptr<TargetQueue>>;
    void listen(const Queues& queues);

    boost::asio::io_context& io_;
    // One thread for the few blocking reads of delivery (a rotating token file); declared before
    // the queues that use it, so it outlives them.
    boost::asio::thread_pool files_{1};
    Storage& storage_;
    RelayObserver& observer_;
    mutable std::mutex mutex_;  // guards queues_: the admin listener reads it from its threads
    Queues queues_;
};

}  // namespace fluxrelay
