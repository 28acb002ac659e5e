// The relay's Prometheus metrics, kept in memory and rendered in the text format.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/time.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {

class Metrics {
public:
    void countReceived(std::string_view source);
    void countRejected(std::string_view source, std::string_view reason);
    void countDropped(std::string_view route, std::string_view reason);
    void countDelivery(std::string_view target, std::string_view outcome, double seconds);
    // One batch of deliveries tried at a target (one request, or none when nothing needed sending).
    void countBatch(std::string_view target);
    // Per target: deliveries waiting (queued or in flight) and dead letters held.
    void setQueue(std::string_view target, std::uint64_t depth, std::uint64_t deadLetters);
    void setConfigReload(bool successful, TimePoint at);
    // The spool's repairs since start, by kind (Storage::repairs).
    void setStorageRepairs(std::map<std::string, std::uint64_t> repairs);
    // The Flux objects whose latest event is an error (Storage::failingObjects), as of this scrape.
    void setFailingObjects(std::vector<ObjectHealth> objects);

    // Prometheus text exposition format 0.0.4, including process_* metrics of this process.
    std::string render() const;

    // Seconds; suited to HTTP round trips from loopback to a distant API.
    static constexpr std::array<double, 12> kLatencyBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                               0.5,   1,    2.5,   5,    10,  30};

private:
    struct Histogram {
        std::array<std::uint64_t, kLatencyBuckets.size()> buckets{};  // non-cumulative counts
        std::uint64_t count = 0;
        double sum = 0;
    };
    using Labels2 = std::pair<std::string, std::string>;

    mutable std::mutex mutex_;
    std::map<std::string, double, std::less<>> received_;
    std::map<Labels2, double> rejected_;
    std::map<Labels2, double> dropped_;
    std::map<Labels2, double> deliveries_;
    std::map<std::string, double, std::less<>> batches_;
    std::map<std::string, Histogram, std::less<>> durations_;
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>, std::less<>> queues_;  // depth, dead
    std::map<std::string, std::uint64_t> storageRepairs_;
    std::vector<ObjectHealth> failingObjects_;
    bool reloadSuccessful_ = true;
    TimePoint lastSuccessfulReload_ = Clock::now();
};

// A label value escaped for the text format (backslash, double quote, newline).
std::string escapeLabelValue(std::string_view value);

}  // namespace fluxrelay
