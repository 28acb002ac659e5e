#include "core/verdict.hpp"

namespace fluxrelay {

std::string_view toString(Verdict verdict) {
    switch (verdict) {
        case Verdict::pass:
            return "pass";
        case Verdict::sourceMismatch:
            return "source_mismatch";
        case Verdict::eventType:
            return "event_type";
        case Verdict::branch:
            return "branch";
        case Verdict::eventSource:
            return "event_source";
        case Verdict::severity:
            return "severity";
        case Verdict::inclusion:
            return "inclusion";
        case Verdict::exclusion:
            return "exclusion";
        case Verdict::match:
            return "match";
        case Verdict::targetRule:
            return "target_rule";
        case Verdict::duplicate:
            return "duplicate";
        case Verdict::unchanged:
            return "unchanged";
        case Verdict::belowThreshold:
            return "below_threshold";
    }
    return "unknown";
}

}  // namespace fluxrelay
