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

namespace {

bool resolvingTarget(const TargetConfig& target) { return target.type == TargetType::alertmanager && target.resolve; }

bool resolvesAlerts(const Config& config, const RouteConfig& route) {
    return std::any_of(route.targets.begin(), route.targets.end(),
                       [&](const std::string& name) { return resolvingTarget(*config.targetByName(name)); });
}

// An info event on a route that takes errors only: not an alert of its own (Flux's rule), but
// the end of the alerts its object has firing on the route's `resolve: true` targets.
RoutePlan planResolveOnly(const Config& config, const RouteConfig& route, const Event& event) {
    Event resolving = route.eventMetadata.empty() ? event : withRouteMetadata(route, event);
    std::get<FluxEvent>(resolving.payload).resolveOnly = true;
    RoutePlan plan{.route = route.name,
                   .decision = {Verdict::pass, "info event: resolves the object's firing alerts (resolve: true)"},
                   .event = std::make_shared<const Event>(std::move(resolving))};
    for (const auto& name : route.targets) {
        const TargetConfig& target = *config.targetByName(name);
        plan.targets.push_back({name, resolvingTarget(target)
                                          ? targetAccepts(target.type, *plan.event)
                                          : Decision{Verdict::severity, "route takes error events only"}});
    }
    // No dedup: a resolution must never be suppressed by an identical earlier one.
    return plan;
}

}  // namespace

std::vector<RoutePlan> planRoutes(const Config& config, const EventPtr& event) {
    std::vector<RoutePlan> plans;
    for (const auto& route : config.routes) {
        if (route.source != event->source) {
            continue;
        }
        RoutePlan plan{.route = route.name, .decision = matchRoute(route, *event)};
        if (plan.decision.verdict == Verdict::severity && resolvesAlerts(config, route) &&
            matchRoute(route, *event, true).passed()) {
            plans.push_back(planResolveOnly(config, route, *event));
            continue;
        }
        if (plan.decision.passed()) {
            plan.event =
                route.eventMetadata.empty() ? event : std::make_shared<const Event>(withRouteMetadata(route, *event));
            for (const auto& targetName : route.targets) {
                const TargetConfig* target = config.targetByName(targetName);
                // The loader guarantees every route target exists.
                plan.targets.push_back({targetName, targetAccepts(target->type, *plan.event)});
            }
            plan.dedup = dedupGates(route, *plan.event);
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
