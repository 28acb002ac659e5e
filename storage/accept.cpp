// The one accept sequence of every spool (storage/accept.hpp).
#include "storage/accept.hpp"

namespace fluxrelay {

AcceptResult runAccept(const AcceptRequest& request, AcceptSteps& steps, std::size_t maxQueuedDeliveries,
                       TimePoint now) {
    AcceptResult result;
    if (!request.idempotencyKey.empty() && steps.idempotencyKeyHeld(request.idempotencyKey, now)) {
        result.stored = true;
        result.duplicateEvent = true;
        return result;
    }
    std::size_t newDeliveries = 0;
    for (const auto& route : request.routes) {
        newDeliveries += route.targets.size();
    }
    const std::size_t held = steps.deliveriesHeld();
    if (held + newDeliveries > maxQueuedDeliveries) {
        result.error = "queue full: " + std::to_string(held) + " deliveries waiting";
        return result;
    }
    if (!request.idempotencyKey.empty()) {
        steps.holdIdempotencyKey(request.idempotencyKey, now + request.idempotencyWindow);
    }
    for (std::size_t i = 0; i < request.routes.size(); ++i) {
        const auto& route = request.routes[i];
        if (auto why = applyDedupGates(route.dedup, steps, now, request.event->id)) {
            result.suppressed.push_back({route.name, std::move(*why)});
            continue;
        }
        for (const auto& target : route.targets) {
            steps.enqueue(i, route, target, now);
        }
    }
    result.stored = true;
    return result;
}

}  // namespace fluxrelay
