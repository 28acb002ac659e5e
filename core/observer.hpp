// What the relay tells the outside about each event: a sink the ingest path and the dispatcher
// report to (metrics, the status page's journal). Sinks observe; they never steer.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/event.hpp"
#include "core/verdict.hpp"

namespace fluxrelay {

// The fate of an event on one route: its verdict, the reason, and the targets it was queued for.
struct RouteFate {
    std::string route;
    Verdict verdict = Verdict::pass;
    std::string reason;
    std::vector<std::string> targets;
};

// What became of one delivery after an attempt.
enum class AttemptOutcome {
    delivered,
    retry,
    dead,
    released,  // handed back untried (the breaker held the attempt back)
};

// Its metric label and the status page's word: "delivered", "retry", "dead", "released".
constexpr std::string_view toString(AttemptOutcome outcome) {
    constexpr std::string_view kNames[] = {"delivered", "retry", "dead", "released"};
    return kNames[static_cast<int>(outcome)];
}

// How much recent history the status page keeps, in memory or on a shared spool: events,
// objects remembered with their latest event, and attempts per event.
inline constexpr std::size_t kJournalEvents = 500;
inline constexpr std::size_t kJournalObjects = 5000;
inline constexpr std::size_t kJournalAttemptsPerEvent = 20;

// One attempt at delivering one event to one target.
struct AttemptReport {
    std::string eventId;
    std::string route;
    std::string target;
    AttemptOutcome outcome = AttemptOutcome::delivered;
    std::string detail;
    std::chrono::duration<double> latency{0};
    int attempt = 0;  // 1-based
};

class RelayObserver {
public:
    virtual ~RelayObserver() = default;

    virtual void onReceived(std::string_view source) = 0;
    // reason: metric label ("signature", "bad_json", "storage", ...)
    virtual void onRejected(std::string_view source, int status, std::string_view reason, std::string_view error) = 0;
    virtual void onAccepted(const Event& event, std::span<const RouteFate> routes) = 0;
    virtual void onAttempt(const AttemptReport& report) = 0;
    // One batch tried at a target, carrying `deliveries` (each also reported by onAttempt).
    virtual void onBatch(std::string_view target, std::size_t deliveries) = 0;
};

// Observes nothing: for tests and one-shot commands.
class NullObserver final : public RelayObserver {
public:
    void onReceived(std::string_view) override {}
    void onRejected(std::string_view, int, std::string_view, std::string_view) override {}
    void onAccepted(const Event&, std::span<const RouteFate>) override {}
    void onAttempt(const AttemptReport&) override {}
    void onBatch(std::string_view, std::size_t) override {}
};

}  // namespace fluxrelay
