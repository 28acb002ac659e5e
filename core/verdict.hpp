// Why an event did or did not go down a route: the value explain, metrics and the status page show.
#pragma once

#include <string>
#include <string_view>

namespace fluxrelay {

enum class Verdict {
    pass,
    sourceMismatch,  // event came in on another source
    eventType,       // GitHub event not in the route's events
    branch,          // push ref not in the route's branches (or a deletion / tag)
    eventSource,     // no eventSources entry matches the involved object
    severity,        // route takes errors only
    inclusion,       // inclusionList non-empty and nothing matched
    exclusion,       // an exclusionList pattern matched
    match,           // a `match` field matcher failed
    targetRule,      // Flux's per-target-type rule (commit_status / commit metadata)
    duplicate,       // dedup: the same key was forwarded within the window
    unchanged,       // dedup transitions: the object's severity/reason did not change
    belowThreshold,  // dedup threshold: not yet enough failures within the window
};

struct Decision {
    Verdict verdict = Verdict::pass;
    std::string reason;  // human-readable detail: which pattern, which field, which value

    bool passed() const { return verdict == Verdict::pass; }
    static Decision ok() { return {}; }
};

// Stable snake_case name, used as a metric label: "exclusion", "event_source", ...
std::string_view toString(Verdict verdict);

}  // namespace fluxrelay
