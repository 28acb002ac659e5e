// The recent history the status page shows: each event with its fate (routes, filters, delivery
// attempts), and the Flux objects whose latest event is an error. Bounded; in this process's
// memory, or on a spool every replica shares (shareThrough), so that each shows the same.
#pragma once

#include <cstddef>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/observer.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {

// Where a journal every replica shares puts its records (the Redis spool, admin/shared_journal.hpp).
class JournalRecords {
public:
    virtual ~JournalRecords();
    // `object`: a Flux event's object, empty otherwise; `failing`: its event is an error.
    virtual void event(std::string eventId, std::string json, std::string object, bool failing) = 0;
    virtual void attempt(std::string eventId, std::string json) = 0;
};

class Journal {
public:
    Journal(std::size_t maxEvents, std::size_t maxObjects);

    void rejected(std::string_view source, int status, std::string_view error);
    void accepted(const Event& event, std::span<const RouteFate> routes);
    void attempted(const AttemptReport& report);

    // From now on, records go to `records` instead of memory (read them back with
    // admin/shared_journal.hpp). Called once, before any record.
    void shareThrough(JournalRecords& records) { shared_ = &records; }
    bool shared() const { return shared_ != nullptr; }

    // Newest first.
    nlohmann::json recentEvents(std::size_t limit) const;
    // Objects whose latest event is an error, most recent first.
    nlohmann::json failingObjects() const;

    // The same, from the records a shared journal holds (Storage::recentJournal and
    // failingJournalObjects).
    static nlohmann::json recentEvents(std::span<const Storage::JournalEntry> entries);
    static nlohmann::json failingObjects(std::span<const std::string> latestEvents);

private:
    // Plain values, turned into JSON only when the status page asks: the journal is on every
    // accept's path, and building (and later freeing) a JSON tree per event led the profiles.
    struct FluxFacts {
        std::string kind, namespace_, name, severity, reason, message, revision;
    };
    struct GitHubFacts {
        std::string event, delivery, ref;
    };
    struct RejectionFacts {
        int httpStatus = 0;
        std::string error;
    };
    struct Summary {
        std::string id;  // empty for rejections
        std::string source;
        TimePoint time;
        std::variant<FluxFacts, GitHubFacts, RejectionFacts> facts;
        std::vector<RouteFate> routes;
    };
    using SharedSummary = std::shared_ptr<const Summary>;  // one per event, shared with objects_
    struct Attempt {
        TimePoint time;
        AttemptReport report;
    };
    struct Entry {
        SharedSummary summary;
        std::deque<Attempt> attempts;  // the newest kJournalAttemptsPerEvent
    };
    struct ObjectState {
        SharedSummary latest;
        bool failing = false;
    };

    static nlohmann::json toJson(const Summary& summary);
    static nlohmann::json toJson(const Attempt& attempt);
    void push(Entry entry);
    void share(const Summary& summary, const Event* event);

    JournalRecords* shared_ = nullptr;
    const std::size_t maxEvents_;
    const std::size_t maxObjects_;
    mutable std::mutex mutex_;
    std::deque<Entry> events_;                           // oldest first
    std::unordered_map<std::string, std::size_t> byId_;  // event id → sequence number
    std::size_t firstSequence_ = 0;                      // sequence number of events_.front()
    std::list<std::string> objectOrder_;                 // least recently updated first
    std::unordered_map<std::string, std::pair<ObjectState, std::list<std::string>::iterator>> objects_;
};

}  // namespace fluxrelay
