// The shared spool's knobs beyond storage.redis (tests tune them), and its factory.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "core/duration.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {

struct RedisTuning {
    // How often a replica renews the leases it holds, looks for work other replicas left (due
    // retries, deliveries of a replica that stopped) and retries settlements Redis did not take.
    // At most a quarter of claimIdle is used, so a live replica's leases are never taken over.
    Duration pollInterval = std::chrono::seconds(1);
    // How often dead letters older than storage.retention are removed.
    Duration pruneInterval = std::chrono::minutes(5);
    // Reconnecting: the first wait, doubled after each failure up to the last.
    Duration reconnectMin = std::chrono::milliseconds(100);
    Duration reconnectMax = std::chrono::seconds(5);
    // Optimistic accept transactions tried before the accept is refused as busy.
    int maxTransactionAttempts = 50;
    // This replica's consumer name in the streams' groups; empty: host name, pid and a random part.
    std::string consumer;
};

// Starts connecting at once and never blocks: until Redis answers, healthy() is false and
// accepts are refused (503), and it reconnects with backoff whenever the connection fails.
std::unique_ptr<Storage> makeRedisStorage(const StorageConfig& config, RedisTuning tuning);

}  // namespace fluxrelay
