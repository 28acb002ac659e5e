// Routing plan: applies the route filters and target rules to one event.
#include "filters/plan.hpp"

#include <algorithm>

#include "filters/dedup.hpp"
#include "filters/route.hpp"

namespace fluxrelay {

bool RoutePlan::delivers() const {
    return decision.passed() &&
           std::any_of(targets.begin(), targets.end(), [](const TargetPlan& t) { return t.decision.passed(); });
}

std::vector<RoutePlan> planRoutes(const Config& config, const EventPtr& event) {
    std::vector<RoutePlan> plans;
    for (const auto& route : config.routes) {
        if (route.source != event->source) {
            continue;
        }
        RoutePlan plan{.route = route.name, .decision = matchRoute(route, *event)};
        if (plan.decision.passed()) {
            plan.event =
                route.eventMetadata.empty() ? event : std::make_shared<const Event>(withRouteMetadata(route, *event));
            for (const auto& targetName : route.targets) {
                const TargetConfig* target = config.targetByName(targetName);
                // The loader guarantees every route target exists.
                plan.targets.push_back({targetName, targetAccepts(target->type, *plan.event)});
            }
            plan.dedupKey = dedupKey(route, *plan.event);
            plan.dedupWindow = route.dedup.window;
            if (route.debounce > Duration::zero()) {
                plan.delay = route.debounce;
                plan.coalesceKey = route.name;
            }
        }
        plans.push_back(std::move(plan));
    }
    return plans;
}

}  // namespace fluxrelay
