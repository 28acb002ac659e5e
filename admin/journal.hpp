// The recent history the status page shows: each event with its fate (routes, filters, delivery
// attempts), and the Flux objects whose latest event is an error. Bounded, in memory, per process.
#pragma once

#include <cstddef>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/observer.hpp"

namespace fluxrelay {

class Journal {
public:
    Journal(std::size_t maxEvents, std::size_t maxObjects);

    void rejected(std::string_view source, int status, std::string_view error);
    void accepted(const Event& event, std::span<const RouteFate> routes);
    void attempted(const AttemptReport& report);

    // Newest first.
    nlohmann::json recentEvents(std::size_t limit) const;
    // Objects whose latest event is an error, most recent first.
    nlohmann::json failingObjects() const;

private:
    // Summaries are built once and shared by the event ring and the object map: the journal is
    // on every accept's path, and copying JSON trees there showed up in profiles.
    using Summary = std::shared_ptr<const nlohmann::json>;
    struct Entry {
        Summary summary;  // id, source, time, status, the event's fields, routes
        std::string id;   // empty for rejections
        nlohmann::json attempts = nlohmann::json::array();
    };
    struct ObjectState {
        Summary latest;
        bool failing = false;
    };

    void push(Entry entry);

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
