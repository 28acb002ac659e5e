// The one accept sequence of every spool (storage/accept.hpp).
#include "storage/accept.hpp"

#include <algorithm>

namespace fluxrelay {

std::optional<ObjectHealth> objectHealthOf(const Event& event, Duration forgetAfter) {
    const FluxEvent* flux = event.flux();
    if (flux == nullptr || (flux->severity != "error" && flux->severity != "info")) return std::nullopt;
    const ObjectRef& object = flux->involvedObject;
    const bool failing = flux->severity == "error";
    return ObjectHealth{.kind = object.kind,
                        .namespace_ = object.namespace_,
                        .name = object.name,
                        .failing = failing,
                        .reason = failing ? flux->reason : std::string(),
                        .at = event.receivedAt,
                        .expiry = event.receivedAt + forgetAfter};
}

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
    if (request.objectHealth) steps.recordObjectHealth(*request.objectHealth);
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

FailingObjects sortFailingObjects(std::vector<ObjectHealth> held, TimePoint now) {
    std::sort(held.begin(), held.end(), [](const ObjectHealth& a, const ObjectHealth& b) {
        return a.at != b.at ? a.at > b.at : a.object() < b.object();
    });
    FailingObjects sorted;
    for (auto& health : held) {
        const bool keep = health.expiry > now && sorted.kept.size() < kFailingObjectsHeld;
        (keep ? sorted.kept : sorted.forgotten).push_back(std::move(health));
    }
    return sorted;
}

}  // namespace fluxrelay
