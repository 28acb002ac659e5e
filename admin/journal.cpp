// Journal: ring buffer of recent events and an LRU map of Flux object states.
#include "admin/journal.hpp"

namespace fluxrelay {
namespace {

constexpr std::size_t kMaxAttemptsPerEvent = 20;

nlohmann::json describe(const Event& event) {
    nlohmann::json out{{"id", event.id}, {"source", event.source}, {"time", formatRfc3339Nano(event.receivedAt)}};
    if (const auto* flux = event.flux()) {
        out["kind"] = flux->involvedObject.kind;
        out["namespace"] = flux->involvedObject.namespace_;
        out["name"] = flux->involvedObject.name;
        out["severity"] = flux->severity;
        out["reason"] = flux->reason;
        out["message"] = flux->message;
        out["revision"] = flux->metadata.contains("revision") ? flux->metadata.at("revision") : "";
    } else if (const auto* github = event.github()) {
        out["githubEvent"] = github->event;
        out["delivery"] = github->deliveryId;
        out["ref"] = github->ref;
    }
    return out;
}

}  // namespace

Journal::Journal(std::size_t maxEvents, std::size_t maxObjects) : maxEvents_(maxEvents), maxObjects_(maxObjects) {}

void Journal::rejected(std::string_view source, int status, std::string_view error) {
    push({.summary = std::make_shared<const nlohmann::json>(nlohmann::json{{"source", source},
                                                                           {"time", formatRfc3339Nano(Clock::now())},
                                                                           {"status", "rejected"},
                                                                           {"httpStatus", status},
                                                                           {"error", error}}),
          .id = {}});
}

void Journal::accepted(const Event& event, std::span<const RouteFate> routes) {
    nlohmann::json described = describe(event);
    described["status"] = "accepted";
    described["routes"] = nlohmann::json::array();
    for (const auto& fate : routes) {
        described["routes"].push_back(
            {{"route", fate.route}, {"verdict", fate.verdict}, {"reason", fate.reason}, {"targets", fate.targets}});
    }
    const Summary summary = std::make_shared<const nlohmann::json>(std::move(described));
    if (const auto* flux = event.flux()) {
        std::lock_guard lock(mutex_);
        const std::string key = flux->involvedObject.path();
        ObjectState state{.latest = summary, .failing = flux->severity == "error"};
        if (auto it = objects_.find(key); it != objects_.end()) {
            objectOrder_.erase(it->second.second);
            objects_.erase(it);
        }
        objectOrder_.push_back(key);
        objects_.emplace(key, std::make_pair(std::move(state), std::prev(objectOrder_.end())));
        if (objects_.size() > maxObjects_) {
            objects_.erase(objectOrder_.front());
            objectOrder_.pop_front();
        }
    }
    push({.summary = summary, .id = event.id});
}

void Journal::attempted(const AttemptReport& report) {
    std::lock_guard lock(mutex_);
    auto it = byId_.find(report.eventId);
    if (it == byId_.end() || it->second < firstSequence_) {
        return;  // the event has left the journal already
    }
    auto& attempts = events_[it->second - firstSequence_].attempts;
    if (attempts.size() >= kMaxAttemptsPerEvent) {
        attempts.erase(attempts.begin());
    }
    attempts.push_back({{"time", formatRfc3339Nano(Clock::now())},
                        {"route", report.route},
                        {"target", report.target},
                        {"attempt", report.attempt},
                        {"outcome", report.outcome},
                        {"detail", report.detail},
                        {"latencyMs", std::chrono::duration<double, std::milli>(report.latency).count()}});
}

void Journal::push(Entry entry) {
    std::lock_guard lock(mutex_);
    if (!entry.id.empty()) {
        byId_[entry.id] = firstSequence_ + events_.size();
    }
    events_.push_back(std::move(entry));
    while (events_.size() > maxEvents_) {
        if (!events_.front().id.empty()) {
            byId_.erase(events_.front().id);
        }
        events_.pop_front();
        ++firstSequence_;
    }
}

nlohmann::json Journal::recentEvents(std::size_t limit) const {
    std::lock_guard lock(mutex_);
    nlohmann::json out = nlohmann::json::array();
    for (auto it = events_.rbegin(); it != events_.rend() && out.size() < limit; ++it) {
        nlohmann::json entry = *it->summary;
        entry["attempts"] = it->attempts;
        out.push_back(std::move(entry));
    }
    return out;
}

nlohmann::json Journal::failingObjects() const {
    std::lock_guard lock(mutex_);
    nlohmann::json out = nlohmann::json::array();
    for (auto it = objectOrder_.rbegin(); it != objectOrder_.rend(); ++it) {
        const auto& state = objects_.at(*it).first;
        if (state.failing) {
            out.push_back(*state.latest);
        }
    }
    return out;
}

}  // namespace fluxrelay
