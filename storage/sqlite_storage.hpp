// The embedded durable spool's knobs and counters, beyond the Storage interface (tests, metrics).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "core/duration.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {

struct SqliteTuning {
    // Operations committed together in one transaction: one fsync for all of them.
    std::size_t maxBatch = 512;
    // Accepts and value writes waiting for the writer; past this they are refused ("storage busy")
    // instead of holding ever more memory while the disk is slow.
    std::size_t maxWaitingRequests = 8192;
    // How often dead letters older than the retention, expired values and a chunk of expired
    // dedup keys are removed.
    Duration pruneInterval = std::chrono::minutes(5);
    // While unhealthy, how often a probe write checks whether the disk works again.
    Duration probeInterval = std::chrono::seconds(1);
    // Runs on the writer thread before each batch; lets tests hold the writer still.
    std::function<void()> beforeBatch;
};

class SqliteStorage : public Storage {
public:
    // Transactions committed since open; far fewer than operations when group commit works.
    virtual std::uint64_t transactionsCommitted() const = 0;
};

std::unique_ptr<SqliteStorage> makeSqliteStorage(const StorageConfig& config, SqliteTuning tuning);

}  // namespace fluxrelay
