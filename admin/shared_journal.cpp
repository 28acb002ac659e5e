#include "admin/shared_journal.hpp"

#include <utility>

#include <boost/asio/use_awaitable.hpp>

namespace fluxrelay {

void SpoolJournalRecords::event(std::string eventId, std::string json, std::string object, bool failing) {
    storage_.journalEvent(std::move(eventId), std::move(json), std::move(object), failing);
}

void SpoolJournalRecords::attempt(std::string eventId, std::string json) {
    storage_.journalAttempt(std::move(eventId), std::move(json));
}

boost::asio::awaitable<nlohmann::json> recentEvents(const Journal& journal, Storage& storage, std::size_t limit) {
    if (!journal.shared()) co_return journal.recentEvents(limit);
    co_return Journal::recentEvents(co_await asyncRecentJournal(storage, limit, boost::asio::use_awaitable));
}

boost::asio::awaitable<nlohmann::json> failingObjects(const Journal& journal, Storage& storage) {
    if (!journal.shared()) co_return journal.failingObjects();
    co_return Journal::failingObjects(co_await asyncFailingJournalObjects(storage, boost::asio::use_awaitable));
}

}  // namespace fluxrelay
