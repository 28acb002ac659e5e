// The journal replicas share, kept in the spool (Storage::sharesJournal): the records a Journal
// writes there, and what the admin API reads back.
#pragma once

#include <cstddef>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "admin/journal.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {

class SpoolJournalRecords final : public JournalRecords {
public:
    explicit SpoolJournalRecords(Storage& storage) : storage_(storage) {}

    void event(std::string eventId, std::string json, std::string object, bool failing) override;
    void attempt(std::string eventId, std::string json) override;

private:
    Storage& storage_;
};

// Journal::recentEvents and failingObjects, from wherever `journal` keeps its records: its
// memory, or `storage` when it shares them.
boost::asio::awaitable<nlohmann::json> recentEvents(const Journal& journal, Storage& storage, std::size_t limit);
boost::asio::awaitable<nlohmann::json> failingObjects(const Journal& journal, Storage& storage);

}  // namespace fluxrelay
