// The spool every accepted event and delivery lives in, behind one interface.
// Implementations complete handlers on the handler's associated executor, never inline, so
// callers may hold no lock and a slow disk never runs on an io thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>

#include "core/dedup_gate.hpp"
#include "core/duration.hpp"
#include "storage/delivery.hpp"

namespace fluxrelay {

// A Flux object's health as its latest event tells it (objectHealthOf): failing after an error
// event, healthy again after an info event. The spool keeps the failing ones until `expiry`.
struct ObjectHealth {
    std::string kind, namespace_, name;
    bool failing = false;
    std::string reason;  // of the error, when failing
    TimePoint at;        // when its latest event was received
    TimePoint expiry;    // a failing object not heard of again is forgotten then

    // "Kind/namespace/name": one record per object.
    std::string object() const { return kind + "/" + namespace_ + "/" + name; }
    bool operator==(const ObjectHealth&) const = default;
};

// The health `event` tells of its object, failing ones kept for `forgetAfter`; nothing for a
// GitHub event, or a Flux event of severity trace (which says nothing of readiness).
std::optional<ObjectHealth> objectHealthOf(const Event& event, Duration forgetAfter);

// Failing objects a spool holds at most; past it, the least recently heard of are let go.
inline constexpr std::size_t kFailingObjectsHeld = 5000;

// An event and, per route it passed, the deliveries to create — unless one of the route's dedup
// gates suppresses them.
struct AcceptRequest {
    struct Route {
        std::string name;
        // Evaluated in order, atomically with the accept, against the values held under their
        // keys (decideDedup); the first that suppresses stops the route. Empty: no dedup.
        std::vector<DedupGate> dedup;
        EventPtr event;  // as this route delivers it
        std::vector<std::string> targets;
        // Debounce: the deliveries are due only after `delay`; while one with the same
        // coalesceKey (per target) is still queued and unclaimed, it takes this event instead and
        // keeps its due time, so a burst becomes one delivery of the latest event.
        Duration delay{0};
        std::string coalesceKey;
    };
    EventPtr event;
    std::vector<Route> routes;
    // When set and already held (unexpired), nothing is stored and the result says duplicate:
    // GitHub delivery ids, so a redelivery triggers nothing twice.
    std::string idempotencyKey;
    Duration idempotencyWindow{0};
    // Recorded with the event, whatever its routes (the object health metric).
    std::optional<ObjectHealth> objectHealth;
};

struct AcceptResult {
    bool stored = false;  // false: storage unavailable, answer 503
    std::string error;    // why, when not stored
    struct Suppression {
        std::string route;
        DedupSuppression why;  // e.g. duplicate, "dedup mode flux: same dedup key as event ..."
    };
    std::vector<Suppression> suppressed;  // routes a dedup gate stopped
    bool duplicateEvent = false;          // idempotencyKey was already held: nothing stored
};

// delivered: done. retry: attempted and failed, try again at nextAttemptAt. dead: give up.
// release: not attempted after all (the target was unavailable); back to the queue as it was.
enum class SettleKind { delivered, retry, dead, release };

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

    virtual void deadLetters(std::size_t limit,
                             boost::asio::any_completion_handler<void(std::vector<DeadLetter>)> handler) = 0;
    // Moves a dead letter back into its target's queue, due now; false when no such id.
    virtual void replay(std::uint64_t deliveryId, boost::asio::any_completion_handler<void(bool)> handler) = 0;

    // Small shared state with expiry (last commit status posted, firing alerts, ...): keys are
    // namespaced by their user, e.g. "github-status:<target>:<sha>:<context>". A ttl of 0 keeps the
    // value until it is overwritten or erased.
    virtual void getValue(std::string key,
                          boost::asio::any_completion_handler<void(std::optional<std::string>)> handler) = 0;
    virtual void putValue(std::string key, std::string value, Duration ttl,
                          boost::asio::any_completion_handler<void(bool stored)> handler) = 0;
    virtual void eraseValue(std::string key, boost::asio::any_completion_handler<void()> handler) = 0;

    // A lease serialises a read-modify-write of values above across workers and replicas. Completes
    // with a token once the caller holds `name` for at most `ttl`; nullopt when someone else holds
    // it or the spool is unavailable. The default keeps leases in this process: enough for a spool
    // no other process uses.
    virtual void tryLease(std::string name, Duration ttl,
                          boost::asio::any_completion_handler<void(std::optional<std::string> token)> handler);
    // Gives the lease back, if `token` still holds it.
    virtual void releaseLease(std::string name, std::string token, boost::asio::any_completion_handler<void()> handler);

    // Per target: deliveries waiting (queued or in flight) and dead letters held.
    struct TargetCounts {
        std::string target;
        std::uint64_t waiting = 0;
        std::uint64_t dead = 0;
    };
    virtual void counts(boost::asio::any_completion_handler<void(std::vector<TargetCounts>)> handler) = 0;

    // Called (from any thread) after new deliveries for a target became due.
    virtual void onWork(std::function<void(const std::string& target)> listener) = 0;

    virtual bool healthy() const = 0;

    // The status page's recent history (journal), on a spool several replicas share: each replica
    // appends what it saw, and all of them read the same. A spool one process uses shares none
    // (sharesJournal() false): that process keeps its journal in memory.
    virtual bool sharesJournal() const { return false; }
    // Fire and forget, and bounded: a record the spool cannot take now is dropped, never queued.
    // `object` is a Flux event's object (empty otherwise); `failing`: its event is an error.
    virtual void journalEvent(std::string /*eventId*/, std::string /*json*/, std::string /*object*/, bool /*failing*/) {
    }
    virtual void journalAttempt(std::string /*eventId*/, std::string /*json*/) {}
    struct JournalEntry {
        std::string json;                   // as given to journalEvent
        std::vector<std::string> attempts;  // as given to journalAttempt, oldest first
    };
    // The newest `limit` entries, newest first; the failing objects' latest events, most recent first.
    virtual void recentJournal(std::size_t limit,
                               boost::asio::any_completion_handler<void(std::vector<JournalEntry>)> handler);
    virtual void failingJournalObjects(boost::asio::any_completion_handler<void(std::vector<std::string>)> handler);

    // The objects whose latest event was an error, unexpired at `now`, most recently heard of first;
    // at most kFailingObjectsHeld. Each replica sharing the spool sees the same.
    virtual void failingObjects(TimePoint now,
                                boost::asio::any_completion_handler<void(std::vector<ObjectHealth>)> handler) = 0;

    // How often, since start, the spool repaired something it found broken, by kind (for the
    // metrics): "consumer_group" when a Redis that lost its data had to be given its groups again.
    virtual std::map<std::string, std::uint64_t> repairs() const { return {}; }

private:
    struct HeldLease {
        std::string token;
        TimePoint expiry;
    };
    std::mutex leasesMutex_;
    std::map<std::string, HeldLease> leases_;
    std::uint64_t leasesTaken_ = 0;
};

struct StorageConfig;

// Not durable: for tests and `explain`.
std::unique_ptr<Storage> makeMemoryStorage(std::size_t maxQueuedDeliveries);
// The embedded durable spool: SQLite database `fluxrelay.db` in the folder `config.path`, created
// when missing. Throws std::runtime_error when it cannot be created, opened or migrated.
std::unique_ptr<Storage> makeSqliteStorage(const StorageConfig& config);
// The spool several replicas share: the Redis at `config.redis` (storage/redis_storage.cpp). Never
// blocks: it connects in the background, unhealthy until Redis answers.
std::unique_ptr<Storage> makeRedisStorage(const StorageConfig& config);
// The spool the relay runs on: Redis when `config.redis` is set, else SQLite.
std::unique_ptr<Storage> makeStorage(const StorageConfig& config);

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

template <class Token>
auto asyncGetValue(Storage& storage, std::string key, Token&& token) {
    return boost::asio::async_initiate<Token, void(std::optional<std::string>)>(
        [&storage](auto handler, std::string key) { storage.getValue(std::move(key), std::move(handler)); }, token,
        std::move(key));
}

template <class Token>
auto asyncPutValue(Storage& storage, std::string key, std::string value, Duration ttl, Token&& token) {
    return boost::asio::async_initiate<Token, void(bool)>(
        [&storage](auto handler, std::string key, std::string value, Duration ttl) {
            storage.putValue(std::move(key), std::move(value), ttl, std::move(handler));
        },
        token, std::move(key), std::move(value), ttl);
}

template <class Token>
auto asyncEraseValue(Storage& storage, std::string key, Token&& token) {
    return boost::asio::async_initiate<Token, void()>(
        [&storage](auto handler, std::string key) { storage.eraseValue(std::move(key), std::move(handler)); }, token,
        std::move(key));
}

template <class Token>
auto asyncTryLease(Storage& storage, std::string name, Duration ttl, Token&& token) {
    return boost::asio::async_initiate<Token, void(std::optional<std::string>)>(
        [&storage](auto handler, std::string name, Duration ttl) {
            storage.tryLease(std::move(name), ttl, std::move(handler));
        },
        token, std::move(name), ttl);
}

template <class Token>
auto asyncReleaseLease(Storage& storage, std::string name, std::string leaseToken, Token&& token) {
    return boost::asio::async_initiate<Token, void()>(
        [&storage](auto handler, std::string name, std::string leaseToken) {
            storage.releaseLease(std::move(name), std::move(leaseToken), std::move(handler));
        },
        token, std::move(name), std::move(leaseToken));
}

template <class Token>
auto asyncRecentJournal(Storage& storage, std::size_t limit, Token&& token) {
    return boost::asio::async_initiate<Token, void(std::vector<Storage::JournalEntry>)>(
        [&storage](auto handler, std::size_t limit) { storage.recentJournal(limit, std::move(handler)); }, token,
        limit);
}

template <class Token>
auto asyncFailingJournalObjects(Storage& storage, Token&& token) {
    return boost::asio::async_initiate<Token, void(std::vector<std::string>)>(
        [&storage](auto handler) { storage.failingJournalObjects(std::move(handler)); }, token);
}

template <class Token>
auto asyncFailingObjects(Storage& storage, TimePoint now, Token&& token) {
    return boost::asio::async_initiate<Token, void(std::vector<ObjectHealth>)>(
        [&storage](auto handler, TimePoint now) { storage.failingObjects(now, std::move(handler)); }, token, now);
}

template <class Token>
auto asyncCounts(Storage& storage, Token&& token) {
    return boost::asio::async_initiate<Token, void(std::vector<Storage::TargetCounts>)>(
        [&storage](auto handler) { storage.counts(std::move(handler)); }, token);
}

template <class Token>
auto asyncDeadLetters(Storage& storage, std::size_t limit, Token&& token) {
    return boost::asio::async_initiate<Token, void(std::vector<DeadLetter>)>(
        [&storage](auto handler, std::size_t limit) { storage.deadLetters(limit, std::move(handler)); }, token, limit);
}

template <class Token>
auto asyncReplay(Storage& storage, std::uint64_t id, Token&& token) {
    return boost::asio::async_initiate<Token, void(bool)>(
        [&storage](auto handler, std::uint64_t id) { storage.replay(id, std::move(handler)); }, token, id);
}

}  // namespace fluxrelay
