// A route's dedup gates as storage runs them: the state it holds per key, and the decision each
// gate takes from it. Knows nothing of routes or patterns (filters/dedup builds the gates).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/duration.hpp"
#include "core/time.hpp"
#include "core/verdict.hpp"

namespace fluxrelay {

// One dedup step of a route. Storage evaluates a route's gates in order, atomically with the
// accept: it reads the value held under `key` (nullopt when absent or expired), asks decideDedup,
// writes back what that returns, and stops at the first gate that suppresses. So every spool and
// every replica sharing one applies exactly the same rules.
struct DedupGate {
    enum class Kind {
        window,       // flux / normalized: the first event of a key within `window` passes
        transitions,  // passes when the object's (severity, reason) differs from the last forwarded
        threshold,    // error events pass once `threshold` of them fell inside `window`
    };
    Kind kind = Kind::window;
    std::string label;        // how suppressions name the gate, e.g. "dedup mode flux"
    std::string key;          // route-prefixed: routes never suppress each other
    Duration window{0};       // window, threshold
    Duration renotify{0};     // transitions: re-send an unchanged failure this often; 0: never
    int threshold = 0;        // threshold
    std::string observation;  // transitions: "<severity>/<reason>"; threshold: the severity
};

struct DedupDecision {
    bool forward = true;
    enum class Write { keep, put, erase };
    Write write = Write::keep;
    std::string value;   // for put
    Duration ttl{0};     // for put
    std::string reason;  // when suppressed: which mode and which earlier event
};

DedupDecision decideDedup(const DedupGate& gate, const std::optional<std::string>& held, TimePoint now,
                          std::string_view eventId);

// Where a spool keeps gate state; it reads and writes inside the accept's transaction.
class DedupStateStore {
public:
    virtual ~DedupStateStore() = default;
    virtual std::optional<std::string> read(const std::string& key, TimePoint now) = 0;  // nullopt: absent or expired
    virtual void put(const std::string& key, const std::string& value, TimePoint expiry) = 0;
    virtual void erase(const std::string& key) = 0;
};

struct DedupSuppression {
    Verdict verdict = Verdict::duplicate;  // which kind of gate
    std::string reason;                    // which mode, which earlier event
};

// Runs a route's gates in order over `store`; the first suppression, or nullopt when the route
// forwards the event.
std::optional<DedupSuppression> applyDedupGates(const std::vector<DedupGate>& gates, DedupStateStore& store,
                                                TimePoint now, std::string_view eventId);

}  // namespace fluxrelay
