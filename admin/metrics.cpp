// Metrics registry and its text rendering; process_* metrics are read from /proc on each scrape.
#include "admin/metrics.hpp"

#include <unistd.h>

#include <charconv>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fluxrelay {
namespace {

void header(std::ostringstream& out, std::string_view name, std::string_view type, std::string_view help) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

// Shortest text that reads back as the same double ("0.005", not "0.0050000000000000001").
std::string number(double value) {
    std::array<char, 32> buffer{};
    const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
    return std::string(buffer.data(), result.ptr);
}

// The process_* metrics client libraries export, from /proc/self.
void renderProcess(std::ostringstream& out) {
    const long ticks = sysconf(_SC_CLK_TCK);
    const long pageSize = sysconf(_SC_PAGESIZE);
    std::ifstream statFile("/proc/self/stat");
    std::string stat((std::istreambuf_iterator<char>(statFile)), std::istreambuf_iterator<char>());
    // Fields after the command name, which is in parentheses and may contain spaces.
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string field;
    double utime = 0, stime = 0, startTicks = 0, vsize = 0, rssPages = 0;
    for (int index = 3; fields >> field; ++index) {
        if (index == 14) utime = std::stod(field);
        if (index == 15) stime = std::stod(field);
        if (index == 22) startTicks = std::stod(field);
        if (index == 23) vsize = std::stod(field);
        if (index == 24) rssPages = std::stod(field);
    }
    double bootTime = 0;
    std::ifstream procStat("/proc/stat");
    for (std::string line; std::getline(procStat, line);) {
        if (line.starts_with("btime ")) {
            bootTime = std::stod(line.substr(6));
        }
    }
    std::size_t openFds = 0;
    std::error_code ignored;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ignored);
         it != std::filesystem::directory_iterator(); it.increment(ignored)) {
        ++openFds;
    }
    double maxFds = 0;
    std::ifstream limits("/proc/self/limits");
    for (std::string line; std::getline(limits, line);) {
        if (line.starts_with("Max open files")) {
            std::istringstream values(line.substr(14));
            values >> maxFds;
        }
    }

    header(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    out << "process_cpu_seconds_total " << number((utime + stime) / static_cast<double>(ticks)) << '\n';
    header(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    out << "process_resident_memory_bytes " << number(rssPages * static_cast<double>(pageSize)) << '\n';
    header(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    out << "process_virtual_memory_bytes " << number(vsize) << '\n';
    header(out, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
    out << "process_start_time_seconds " << number(bootTime + startTicks / static_cast<double>(ticks)) << '\n';
    header(out, "process_open_fds", "gauge", "Number of open file descriptors.");
    out << "process_open_fds " << openFds << '\n';
    header(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    out << "process_max_fds " << number(maxFds) << '\n';
}

}  // namespace

std::string escapeLabelValue(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

void Metrics::countReceived(std::string_view source) {
    std::lock_guard lock(mutex_);
    auto it = received_.find(source);
    if (it == received_.end()) {
        it = received_.emplace(std::string(source), 0).first;
    }
    it->second += 1;
}

void Metrics::countRejected(std::string_view source, std::string_view reason) {
    std::lock_guard lock(mutex_);
    rejected_[{std::string(source), std::string(reason)}] += 1;
}

void Metrics::countDropped(std::string_view route, std::string_view reason) {
    std::lock_guard lock(mutex_);
    dropped_[{std::string(route), std::string(reason)}] += 1;
}

void Metrics::countDelivery(std::string_view target, std::string_view outcome, double seconds) {
    std::lock_guard lock(mutex_);
    deliveries_[{std::string(target), std::string(outcome)}] += 1;
    auto it = durations_.find(target);
    if (it == durations_.end()) {
        it = durations_.emplace(std::string(target), Histogram{}).first;
    }
    Histogram& histogram = it->second;
    for (std::size_t i = 0; i < kLatencyBuckets.size(); ++i) {
        if (seconds <= kLatencyBuckets[i]) {
            ++histogram.buckets[i];
            break;
        }
    }
    ++histogram.count;
    histogram.sum += seconds;
}

void Metrics::countBatch(std::string_view target) {
    std::lock_guard lock(mutex_);
    auto it = batches_.find(target);
    if (it == batches_.end()) {
        it = batches_.emplace(std::string(target), 0.0).first;
    }
    it->second += 1;
}

void Metrics::setQueue(std::string_view target, std::uint64_t depth, std::uint64_t deadLetters) {
    std::lock_guard lock(mutex_);
    auto it = queues_.find(target);
    if (it == queues_.end()) {
        it = queues_.emplace(std::string(target), std::pair<std::uint64_t, std::uint64_t>{}).first;
    }
    it->second = {depth, deadLetters};
}

void Metrics::setConfigReload(bool successful, TimePoint at) {
    std::lock_guard lock(mutex_);
    reloadSuccessful_ = successful;
    if (successful) {
        lastSuccessfulReload_ = at;
    }
}

void Metrics::setStorageRepairs(std::map<std::string, std::uint64_t> repairs) {
    std::lock_guard lock(mutex_);
    storageRepairs_ = std::move(repairs);
}

void Metrics::setFailingObjects(std::vector<ObjectHealth> objects) {
    std::lock_guard lock(mutex_);
    failingObjects_ = std::move(objects);
}

std::string Metrics::render() const {
    std::ostringstream out;
    {
        std::lock_guard lock(mutex_);
        header(out, "fluxrelay_events_received_total", "counter", "Requests received per source.");
        for (const auto& [source, value] : received_) {
            out << "fluxrelay_events_received_total{source=\"" << escapeLabelValue(source) << "\"} " << number(value)
                << '\n';
        }
        header(out, "fluxrelay_events_rejected_total", "counter", "Requests refused per source and reason.");
        for (const auto& [labels, value] : rejected_) {
            out << "fluxrelay_events_rejected_total{source=\"" << escapeLabelValue(labels.first) << "\",reason=\""
                << escapeLabelValue(labels.second) << "\"} " << number(value) << '\n';
        }
        header(out, "fluxrelay_events_dropped_total", "counter", "Accepted events a route did not forward, by reason.");
        for (const auto& [labels, value] : dropped_) {
            out << "fluxrelay_events_dropped_total{route=\"" << escapeLabelValue(labels.first) << "\",reason=\""
                << escapeLabelValue(labels.second) << "\"} " << number(value) << '\n';
        }
        header(out, "fluxrelay_deliveries_total", "counter", "Delivery attempts per target and outcome.");
        for (const auto& [labels, value] : deliveries_) {
            out << "fluxrelay_deliveries_total{target=\"" << escapeLabelValue(labels.first) << "\",outcome=\""
                << escapeLabelValue(labels.second) << "\"} " << number(value) << '\n';
        }
        header(out, "fluxrelay_delivery_batches_total", "counter",
               "Batches of deliveries tried per target; deliveries per batch = deliveries_total / this.");
        for (const auto& [target, value] : batches_) {
            out << "fluxrelay_delivery_batches_total{target=\"" << escapeLabelValue(target) << "\"} " << number(value)
                << '\n';
        }
        header(out, "fluxrelay_delivery_duration_seconds", "histogram", "Duration of delivery attempts per target.");
        for (const auto& [target, histogram] : durations_) {
            const std::string label = "target=\"" + escapeLabelValue(target) + "\"";
            std::uint64_t cumulative = 0;
            for (std::size_t i = 0; i < kLatencyBuckets.size(); ++i) {
                cumulative += histogram.buckets[i];
                out << "fluxrelay_delivery_duration_seconds_bucket{" << label << ",le=\"" << number(kLatencyBuckets[i])
                    << "\"} " << cumulative << '\n';
            }
            out << "fluxrelay_delivery_duration_seconds_bucket{" << label << ",le=\"+Inf\"} " << histogram.count
                << '\n';
            out << "fluxrelay_delivery_duration_seconds_sum{" << label << "} " << number(histogram.sum) << '\n';
            out << "fluxrelay_delivery_duration_seconds_count{" << label << "} " << histogram.count << '\n';
        }
        header(out, "fluxrelay_queue_depth", "gauge", "Deliveries waiting per target, queued or in flight.");
        for (const auto& [target, counts] : queues_) {
            out << "fluxrelay_queue_depth{target=\"" << escapeLabelValue(target) << "\"} " << counts.first << '\n';
        }
        header(out, "fluxrelay_dead_letters", "gauge", "Dead letters held per target.");
        for (const auto& [target, counts] : queues_) {
            out << "fluxrelay_dead_letters{target=\"" << escapeLabelValue(target) << "\"} " << counts.second << '\n';
        }
        header(out, "fluxrelay_storage_repairs_total", "counter",
               "Repairs the spool made to itself since start, by kind (consumer_group: Redis lost its data).");
        for (const auto& [kind, value] : storageRepairs_) {
            out << "fluxrelay_storage_repairs_total{kind=\"" << escapeLabelValue(kind) << "\"} " << value << '\n';
        }
        // One series per object: a new reason replaces the series of the old one.
        header(out, "fluxrelay_flux_object_failing", "gauge",
               "1 while the Flux object's latest event is an error, labelled with its reason; gone after an info "
               "event or admin.forgetObjectsAfter.");
        for (const auto& object : failingObjects_) {
            out << "fluxrelay_flux_object_failing{kind=\"" << escapeLabelValue(object.kind) << "\",namespace=\""
                << escapeLabelValue(object.namespace_) << "\",name=\"" << escapeLabelValue(object.name)
                << "\",reason=\"" << escapeLabelValue(object.reason) << "\"} 1\n";
        }
        header(out, "fluxrelay_config_last_reload_successful", "gauge",
               "Whether the last configuration load succeeded (1) or was rejected (0).");
        out << "fluxrelay_config_last_reload_successful " << (reloadSuccessful_ ? 1 : 0) << '\n';
        header(out, "fluxrelay_config_last_reload_success_timestamp_seconds", "gauge",
               "Time of the last successful configuration load, seconds since the epoch.");
        out << "fluxrelay_config_last_reload_success_timestamp_seconds "
            << std::chrono::duration_cast<std::chrono::seconds>(lastSuccessfulReload_.time_since_epoch()).count()
            << '\n';
    }
    header(out, "fluxrelay_build_info", "gauge", "Build information; the value is always 1.");
    out << "fluxrelay_build_info{version=\"" << FLUXRELAY_VERSION << "\"} 1\n";
    renderProcess(out);
    return out.str();
}

}  // namespace fluxrelay
