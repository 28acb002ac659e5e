// The one accept sequence every spool runs inside its own transaction: idempotency key, queue
// bound, the object's health, then each route's dedup gates and deliveries. Spools differ only in
// where the steps read and write, so they cannot drift apart in the order of the steps.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/dedup_gate.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {

// Where one spool's accept reads and writes; every call runs inside the accept's transaction.
// The dedup gates' state is the DedupStateStore part.
class AcceptSteps : public DedupStateStore {
public:
    // Whether an unexpired idempotency key is held.
    virtual bool idempotencyKeyHeld(const std::string& key, TimePoint now) = 0;
    virtual void holdIdempotencyKey(const std::string& key, TimePoint expiry) = 0;
    // Deliveries counted against the bound: queued, in flight and dead.
    virtual std::size_t deliveriesHeld() = 0;
    // Queues the delivery of routes[routeIndex] to `target`, or hands the route's event to a
    // queued delivery of the same burst (coalesceKey); counts what it adds to deliveriesHeld.
    virtual void enqueue(std::size_t routeIndex, const AcceptRequest::Route& route, const std::string& target,
                         TimePoint now) = 0;
    // Keeps a failing object (replacing what was held for it), or forgets one healthy again.
    virtual void recordObjectHealth(const ObjectHealth& health) = 0;
};

// The sequence. A duplicate idempotency key stores nothing; a full queue refuses before the key is
// taken, so a sender's retry after the 503 (a GitHub redelivery) is accepted, not a "duplicate".
AcceptResult runAccept(const AcceptRequest& request, AcceptSteps& steps, std::size_t maxQueuedDeliveries,
                       TimePoint now);

// What a spool answers to failingObjects out of every record it holds: the unexpired ones, most
// recently heard of first, at most kFailingObjectsHeld. It deletes the others (`forgotten`).
struct FailingObjects {
    std::vector<ObjectHealth> kept;
    std::vector<ObjectHealth> forgotten;
};
FailingObjects sortFailingObjects(std::vector<ObjectHealth> held, TimePoint now);

}  // namespace fluxrelay
