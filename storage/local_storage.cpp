// What a spool only this process uses (memory, SQLite) does in memory: leases, a map under a
// mutex being all the serialising they need, and no shared journal. The Redis spool overrides
// these with what every replica sees.
#include <string>

#include "storage/completion.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {

void Storage::tryLease(std::string name, Duration ttl,
                       boost::asio::any_completion_handler<void(std::optional<std::string>)> handler) {
    std::optional<std::string> token;
    {
        std::lock_guard lock(leasesMutex_);
        const TimePoint now = Clock::now();
        auto it = leases_.find(name);
        if (it == leases_.end() || it->second.expiry <= now) {
            token = std::to_string(++leasesTaken_);
            leases_.insert_or_assign(std::move(name), HeldLease{.token = *token, .expiry = now + ttl});
        }
    }
    complete(std::move(handler), std::move(token));
}

void Storage::releaseLease(std::string name, std::string token, boost::asio::any_completion_handler<void()> handler) {
    {
        std::lock_guard lock(leasesMutex_);
        if (auto it = leases_.find(name); it != leases_.end() && it->second.token == token) leases_.erase(it);
    }
    complete(std::move(handler));
}

void Storage::recentJournal(std::size_t /*limit*/,
                            boost::asio::any_completion_handler<void(std::vector<JournalEntry>)> handler) {
    complete(std::move(handler), std::vector<JournalEntry>{});
}

void Storage::failingJournalObjects(boost::asio::any_completion_handler<void(std::vector<std::string>)> handler) {
    complete(std::move(handler), std::vector<std::string>{});
}

}  // namespace fluxrelay
