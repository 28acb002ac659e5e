// Journal: ring buffer of recent events and an LRU map of Flux object states.
#include "admin/journal.hpp"

namespace fluxrelay {
namespace {

template <class... Visitors>
struct Overloaded : Visitors... {
    using Visitors::operator()...;
};
// Spelled out: clang before 17 does not deduce an aggregate's template arguments (P1816).
template <class... Visitors>
Overloaded(Visitors...) -> Overloaded<Visitors...>;

}  // namespace

// Out of line: the interface's type information lives here, in the core library.
JournalRecords::~JournalRecords() = default;

Journal::Journal(std::size_t maxEvents, std::size_t maxObjects) : maxEvents_(maxEvents), maxObjects_(maxObjects) {}

void Journal::rejected(std::string_view source, int status, std::string_view error) {
    Summary summary{
        .id = {},
        .source = std::string(source),
        .time = Clock::now(),
        .facts = RejectionFacts{.httpStatus = status, .error = std::string(error)},
        .routes = {},
    };
    if (shared_ != nullptr) return share(summary, nullptr);
    push({.summary = std::make_shared<const Summary>(std::move(summary)), .attempts = {}});
}

void Journal::share(const Summary& summary, const Event* event) {
    const FluxEvent* flux = event != nullptr ? event->flux() : nullptr;
    shared_->event(summary.id, toJson(summary).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                   flux != nullptr ? flux->involvedObject.path() : std::string(),
                   flux != nullptr && flux->severity == "error");
}

void Journal::accepted(const Event& event, std::span<const RouteFate> routes) {
    Summary summary{.id = event.id,
                    .source = event.source,
                    .time = event.receivedAt,
                    .facts = {},
                    .routes = {routes.begin(), routes.end()}};
    if (const auto* flux = event.flux()) {
        const auto revision = flux->metadata.find("revision");
        summary.facts = FluxFacts{.kind = flux->involvedObject.kind,
                                  .namespace_ = flux->involvedObject.namespace_,
                                  .name = flux->involvedObject.name,
                                  .severity = flux->severity,
                                  .reason = flux->reason,
                                  .message = flux->message,
                                  .revision = revision == flux->metadata.end() ? "" : revision->second};
    } else if (const auto* github = event.github()) {
        summary.facts = GitHubFacts{.event = github->event, .delivery = github->deliveryId, .ref = github->ref};
    }
    if (shared_ != nullptr) return share(summary, &event);
    const SharedSummary shared = std::make_shared<const Summary>(std::move(summary));
    if (const auto* flux = event.flux()) {
        std::string key = flux->involvedObject.path();
        ObjectState state{.latest = shared, .failing = flux->severity == "error"};
        std::lock_guard lock(mutex_);
        if (auto it = objects_.find(key); it != objects_.end()) {
            objectOrder_.splice(objectOrder_.end(), objectOrder_, it->second.second);
            it->second.first = std::move(state);
        } else {
            objectOrder_.push_back(key);
            objects_.emplace(std::move(key), std::make_pair(std::move(state), std::prev(objectOrder_.end())));
            if (objects_.size() > maxObjects_) {
                objects_.erase(objectOrder_.front());
                objectOrder_.pop_front();
            }
        }
    }
    push({.summary = shared, .attempts = {}});
}

void Journal::attempted(const AttemptReport& report) {
    const TimePoint now = Clock::now();
    if (shared_ != nullptr) {
        return shared_->attempt(report.eventId, toJson(Attempt{.time = now, .report = report})
                                                    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    std::lock_guard lock(mutex_);
    auto it = byId_.find(report.eventId);
    if (it == byId_.end() || it->second < firstSequence_) {
        return;  // the event has left the journal already
    }
    auto& attempts = events_[it->second - firstSequence_].attempts;
    if (attempts.size() >= kJournalAttemptsPerEvent) {
        attempts.pop_front();
    }
    attempts.push_back({.time = now, .report = report});
}

void Journal::push(Entry entry) {
    std::lock_guard lock(mutex_);
    if (!entry.summary->id.empty()) {
        byId_[entry.summary->id] = firstSequence_ + events_.size();
    }
    events_.push_back(std::move(entry));
    while (events_.size() > maxEvents_) {
        if (!events_.front().summary->id.empty()) {
            byId_.erase(events_.front().summary->id);
        }
        events_.pop_front();
        ++firstSequence_;
    }
}

nlohmann::json Journal::toJson(const Summary& summary) {
    nlohmann::json out{{"source", summary.source}, {"time", formatRfc3339Nano(summary.time)}};
    if (!summary.id.empty()) {
        out["id"] = summary.id;
        out["status"] = "accepted";
        out["routes"] = nlohmann::json::array();
        for (const auto& fate : summary.routes) {
            out["routes"].push_back({{"route", fate.route},
                                     {"verdict", toString(fate.verdict)},
                                     {"reason", fate.reason},
                                     {"targets", fate.targets}});
        }
    }
    std::visit(Overloaded{
                   [&out](const FluxFacts& flux) {
                       out["kind"] = flux.kind;
                       out["namespace"] = flux.namespace_;
                       out["name"] = flux.name;
                       out["severity"] = flux.severity;
                       out["reason"] = flux.reason;
                       out["message"] = flux.message;
                       out["revision"] = flux.revision;
                   },
                   [&out](const GitHubFacts& github) {
                       out["githubEvent"] = github.event;
                       out["delivery"] = github.delivery;
                       out["ref"] = github.ref;
                   },
                   [&out](const RejectionFacts& rejection) {
                       out["status"] = "rejected";
                       out["httpStatus"] = rejection.httpStatus;
                       out["error"] = rejection.error;
                   },
               },
               summary.facts);
    return out;
}

nlohmann::json Journal::recentEvents(std::size_t limit) const {
    std::lock_guard lock(mutex_);
    nlohmann::json out = nlohmann::json::array();
    for (auto it = events_.rbegin(); it != events_.rend() && out.size() < limit; ++it) {
        nlohmann::json entry = toJson(*it->summary);
        entry["attempts"] = nlohmann::json::array();
        for (const Attempt& attempt : it->attempts) entry["attempts"].push_back(toJson(attempt));
        out.push_back(std::move(entry));
    }
    return out;
}

nlohmann::json Journal::toJson(const Attempt& attempt) {
    const AttemptReport& report = attempt.report;
    return {{"time", formatRfc3339Nano(attempt.time)},
            {"route", report.route},
            {"target", report.target},
            {"attempt", report.attempt},
            {"outcome", toString(report.outcome)},
            {"detail", report.detail},
            {"latencyMs", std::chrono::duration<double, std::milli>(report.latency).count()}};
}

nlohmann::json Journal::failingObjects() const {
    std::lock_guard lock(mutex_);
    nlohmann::json out = nlohmann::json::array();
    for (auto it = objectOrder_.rbegin(); it != objectOrder_.rend(); ++it) {
        const auto& state = objects_.at(*it).first;
        if (state.failing) {
            out.push_back(toJson(*state.latest));
        }
    }
    return out;
}

nlohmann::json Journal::recentEvents(std::span<const Storage::JournalEntry> entries) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [json, attempts] : entries) {
        nlohmann::json entry = nlohmann::json::parse(json, nullptr, false);
        if (!entry.is_object()) continue;
        entry["attempts"] = nlohmann::json::array();
        for (const std::string& attempt : attempts) {
            nlohmann::json parsed = nlohmann::json::parse(attempt, nullptr, false);
            if (parsed.is_object()) entry["attempts"].push_back(std::move(parsed));
        }
        out.push_back(std::move(entry));
    }
    return out;
}

nlohmann::json Journal::failingObjects(std::span<const std::string> latestEvents) {
    nlohmann::json out = nlohmann::json::array();
    for (const std::string& event : latestEvents) {
        nlohmann::json parsed = nlohmann::json::parse(event, nullptr, false);
        if (parsed.is_object()) out.push_back(std::move(parsed));
    }
    return out;
}

}  // namespace fluxrelay
