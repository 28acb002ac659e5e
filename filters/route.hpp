// Route matching: pure functions over an Event and the compiled config.
#pragma once

#include <map>
#include <string>

#include "config/config.hpp"
#include "core/event.hpp"
#include "core/verdict.hpp"

namespace fluxrelay {

// Steps 1–5: source, events/branches (GitHub), eventSources, eventSeverity, inclusionList,
// exclusionList, match. Stops at the first failing step and says why.
// `ignoreSeverity` skips step 3 (an info event that may still resolve alerts the route fired).
Decision matchRoute(const RouteConfig& route, const Event& event, bool ignoreSeverity = false);

// Step 6: Flux's rules for which events a target type takes.
Decision targetAccepts(TargetType type, const Event& event);

// The event as the route delivers it: Flux Alert eventMetadata merged into the metadata
// (the event's own keys win, as notification-controller's object-group keys do).
Event withRouteMetadata(const RouteConfig& route, const Event& event);

}  // namespace fluxrelay
