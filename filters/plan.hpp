// What an accepted event becomes: per route, the verdict and the deliveries to create.
// The live relay and `fluxrelay explain` both use this, so they can never disagree.
#pragma once

#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/event.hpp"
#include "core/verdict.hpp"
#include "filters/dedup.hpp"

namespace fluxrelay {

struct TargetPlan {
    std::string target;
    Decision decision;  // step 6: Flux's per-target-type rule
};

struct RoutePlan {
    std::string route;
    Decision decision;                // steps 1–5
    std::vector<TargetPlan> targets;  // filled when the route matched
    std::vector<DedupGate> dedup;     // empty: no dedup for this route
    EventPtr event;                   // the event as this route delivers it
    // Debounce (GitHub routes): deliveries wait `delay`, and a burst within it coalesces into one
    // delivery of the latest event per target; coalesceKey is the route's name, empty when off.
    Duration delay{0};
    std::string coalesceKey;

    bool delivers() const;  // matched and at least one target accepts
};

// Every route of the event's source, in config order.
std::vector<RoutePlan> planRoutes(const Config& config, const EventPtr& event);

}  // namespace fluxrelay
