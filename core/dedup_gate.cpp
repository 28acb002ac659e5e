// Dedup gates: what a route's gate decides from the state storage holds for its key. Storage runs
// them inside the accept, so every spool and replica applies the same rules.
#include "core/dedup_gate.hpp"

#include <algorithm>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/duration.hpp"

namespace fluxrelay {

namespace {

// How long per-object state outlives the object's last event: an object silent for a week starts
// afresh, and objects that were deleted do not accumulate.
constexpr Duration kObjectStateLifetime = std::chrono::hours(24 * 7);

std::int64_t toMillis(TimePoint time) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
}

// Held state is data from storage: a value past what a TimePoint holds (about ±292 years of
// nanoseconds) is clamped rather than overflowed.
TimePoint fromMillis(std::int64_t millis) {
    constexpr std::int64_t kLimit = std::int64_t{9'000'000'000'000};  // ~285 years
    return TimePoint(std::chrono::milliseconds(std::clamp(millis, -kLimit, kLimit)));
}

// The held value as JSON; a value this build cannot read counts as no state at all, so a corrupt
// entry costs one extra notification rather than a suppressed one.
nlohmann::json heldState(const std::optional<std::string>& held) {
    if (!held) return nlohmann::json::object();
    nlohmann::json state = nlohmann::json::parse(*held, nullptr, false);
    return state.is_object() ? state : nlohmann::json::object();
}

// Fields of held state, read defensively: a wrong type reads as absent.
std::string textField(const nlohmann::json& state, const char* name) {
    const auto it = state.find(name);
    return it != state.end() && it->is_string() ? it->get<std::string>() : std::string();
}

TimePoint timeField(const nlohmann::json& state, const char* name) {
    const auto it = state.find(name);
    return fromMillis(it != state.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0);
}

DedupDecision forwardAndPut(nlohmann::json state, Duration ttl) {
    return {.forward = true, .write = DedupDecision::Write::put, .value = state.dump(), .ttl = ttl, .reason = {}};
}

DedupDecision decideWindow(const DedupGate& gate, const nlohmann::json& held, TimePoint now, std::string_view eventId) {
    if (held.contains("event")) {
        const std::string reason = "same dedup key as event " + textField(held, "event") + ", forwarded at " +
                                   formatRfc3339(timeField(held, "at")) + " (window " + formatDuration(gate.window) +
                                   ")";
        return {.forward = false, .write = DedupDecision::Write::keep, .value = {}, .ttl = {}, .reason = reason};
    }
    return forwardAndPut({{"event", eventId}, {"at", toMillis(now)}}, gate.window);
}

DedupDecision decideTransitions(const DedupGate& gate, const nlohmann::json& held, TimePoint now,
                                std::string_view eventId) {
    const nlohmann::json forwarded{{"state", gate.observation}, {"event", eventId}, {"at", toMillis(now)}};
    if (textField(held, "state") != gate.observation) {
        return forwardAndPut(forwarded, kObjectStateLifetime);
    }
    const TimePoint lastForwarded = timeField(held, "at");
    const bool failing = gate.observation.starts_with("error/");
    if (failing && gate.renotify > Duration::zero() && now - lastForwarded >= gate.renotify) {
        return forwardAndPut(forwarded, kObjectStateLifetime);
    }
    std::string reason = "unchanged " + gate.observation + " since event " + textField(held, "event") +
                         ", forwarded at " + formatRfc3339(lastForwarded);
    if (failing && gate.renotify > Duration::zero()) {
        reason += "; renotify after " + formatRfc3339(lastForwarded + gate.renotify);
    }
    // Written back unchanged but for its lifetime, which counts from the object's last event.
    return {.forward = false,
            .write = DedupDecision::Write::put,
            .value = held.dump(),
            .ttl = kObjectStateLifetime,
            .reason = reason};
}

DedupDecision decideThreshold(const DedupGate& gate, const nlohmann::json& held, TimePoint now,
                              std::string_view eventId) {
    if (gate.observation != "error") {
        // Anything but a failure means the object is not failing: the count starts again.
        return {.forward = true,
                .write = held.empty() ? DedupDecision::Write::keep : DedupDecision::Write::erase,
                .value = {},
                .ttl = {},
                .reason = {}};
    }
    // The failures inside the window, oldest first; only the last `threshold` can matter.
    std::vector<std::int64_t> failures;
    if (const auto it = held.find("failures"); it != held.end() && it->is_array()) {
        for (const auto& at : *it) {
            if (at.is_number_integer() && fromMillis(at.get<std::int64_t>()) > now - gate.window) {
                failures.push_back(at.get<std::int64_t>());
            }
        }
    }
    failures.push_back(toMillis(now));
    const std::size_t limit = static_cast<std::size_t>(std::max(gate.threshold, 1));
    if (failures.size() > limit) failures.erase(failures.begin(), failures.end() - static_cast<std::ptrdiff_t>(limit));
    const nlohmann::json state{{"failures", failures}, {"event", eventId}};
    if (failures.size() >= limit) return forwardAndPut(state, gate.window);
    return {.forward = false,
            .write = DedupDecision::Write::put,
            .value = state.dump(),
            .ttl = gate.window,
            .reason = "failure " + std::to_string(failures.size()) + " of " + std::to_string(gate.threshold) +
                      " within " + formatDuration(gate.window)};
}

}  // namespace

DedupDecision decideDedup(const DedupGate& gate, const std::optional<std::string>& held, TimePoint now,
                          std::string_view eventId) {
    const nlohmann::json state = heldState(held);
    DedupDecision decision;
    switch (gate.kind) {
        case DedupGate::Kind::window:
            decision = decideWindow(gate, state, now, eventId);
            break;
        case DedupGate::Kind::transitions:
            decision = decideTransitions(gate, state, now, eventId);
            break;
        case DedupGate::Kind::threshold:
            decision = decideThreshold(gate, state, now, eventId);
            break;
    }
    if (!decision.forward) decision.reason = gate.label + ": " + decision.reason;
    return decision;
}

namespace {

Verdict verdictOf(DedupGate::Kind kind) {
    switch (kind) {
        case DedupGate::Kind::window:
            return Verdict::duplicate;
        case DedupGate::Kind::transitions:
            return Verdict::unchanged;
        case DedupGate::Kind::threshold:
            return Verdict::belowThreshold;
    }
    return Verdict::duplicate;
}

}  // namespace

std::optional<DedupSuppression> applyDedupGates(const std::vector<DedupGate>& gates, DedupStateStore& store,
                                                TimePoint now, std::string_view eventId) {
    for (const DedupGate& gate : gates) {
        const DedupDecision decision = decideDedup(gate, store.read(gate.key, now), now, eventId);
        switch (decision.write) {
            case DedupDecision::Write::keep:
                break;
            case DedupDecision::Write::put:
                store.put(gate.key, decision.value, now + decision.ttl);
                break;
            case DedupDecision::Write::erase:
                store.erase(gate.key);
                break;
        }
        if (!decision.forward) return DedupSuppression{verdictOf(gate.kind), decision.reason};
    }
    return std::nullopt;
}

}  // namespace fluxrelay
