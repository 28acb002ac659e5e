// The spool every accepted event and delivery lives in (SPEC §8), behind one interface.
// Implementations complete handlers on the handler's associated executor, never inline, so
// callers may hold no lock and a slow disk never runs on an io thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>

#include "core/duration.hpp"
#include "storage/delivery.hpp"

namespace fluxrelay {

// An event and, per route it passed, the deliveries to create — unless the route's dedup key
// is already held.
struct AcceptRequest {
    struct Route {
        std::string name;
        std::string dedupKey;  // empty: no dedup
        Duration dedupWindow{0};
        EventPtr event;        // as this route delivers it
        std::vector<std::string> targets;
    };
    EventPtr event;
    std::vector<Route> routes;
};

struct AcceptResult {
    bool stored = false;                      // false: storage unavailable, answer 503
    std::string error;                        // why, when not stored
    std::vector<std::string> duplicateRoutes; // routes suppressed by an unexpired dedup key
};

enum class SettleKind { delivered, retry, dead };

// The fate of one attempt at one delivery.
struct Settlement {
    std::uint64_t deliveryId = 0;
    SettleKind kind = SettleKind::delivered;
    TimePoint nextAttemptAt;  // for retry
    std::string error;        // for retry and dead
};

// Deliveries the dispatcher may send now, and when the next not-yet-due one falls due.
struct Claim {
    std::vector<Delivery> deliveries;
    std::optional<TimePoint> nextDue;
};

class Storage {
public:
    virtual ~Storage() = default;

    // Stores the event and its deliveries atomically; completes once durable (or failed).
    virtual void accept(AcceptRequest request, boost::asio::any_completion_handler<void(AcceptResult)> handler) = 0;

    // Leases up to `max` due deliveries of `target` to the caller; they are not handed out again
    // until settled (or the process restarts).
    virtual void claim(std::string target, std::size_t max, TimePoint now,
                       boost::asio::any_completion_handler<void(Claim)> handler) = 0;

    virtual void settle(std::vector<Settlement> settlements, boost::asio::any_completion_handler<void()> handler) = 0;

    virtual void deadLetters(std::size_t limit, boost::asio::any_completion_handler<void(std::vector<DeadLetter>)> handler) = 0;
    // Moves a dead letter back into its target's queue, due now; false when no such id.
    virtual void replay(std::uint64_t deliveryId, boost::asio::any_completion_handler<void(bool)> handler) = 0;

    // Called (from any thread) after new deliveries for a target became due.
    virtual void onWork(std::function<void(const std::string& target)> listener) = 0;

    virtual bool healthy() const = 0;
};

std::unique_ptr<Storage> makeMemoryStorage(std::size_t maxQueuedDeliveries);

// Completion-token forms, e.g. `co_await asyncAccept(storage, request, asio::use_awaitable)`.
template <class Token>
auto asyncAccept(Storage& storage, AcceptRequest request, Token&& token) {
    return boost::asio::async_initiate<Token, void(AcceptResult)>(
        [&storage](auto handler, AcceptRequest request) { storage.accept(std::move(request), std::move(handler)); },
        token, std::move(request));
}

template <class Token>
auto asyncClaim(Storage& storage, std::string target, std::size_t max, TimePoint now, Token&& token) {
    return boost::asio::async_initiate<Token, void(Claim)>(
        [&storage](auto handler, std::string target, std::size_t max, TimePoint now) {
            storage.claim(std::move(target), max, now, std::move(handler));
        },
        token, std::move(target), max, now);
}

template <class Token>
auto asyncSettle(Storage& storage, std::vector<Settlement> settlements, Token&& token) {
    return boost::asio::async_initiate<Token, void()>(
        [&storage](auto handler, std::vector<Settlement> settlements) {
            storage.settle(std::move(settlements), std::move(handler));
        },
        token, std::move(settlements));
}

}  // namespace fluxrelay
