// The observer the relay reports to: Prometheus metrics plus the status page's journal.
#pragma once

#include "admin/journal.hpp"
#include "admin/metrics.hpp"
#include "core/observer.hpp"

namespace fluxrelay {

class Telemetry final : public RelayObserver {
public:
    Telemetry() : journal_(kJournalEvents, kJournalObjects) {}

    void onReceived(std::string_view source) override { metrics_.countReceived(source); }

    void onRejected(std::string_view source, int status, std::string_view reason, std::string_view error) override {
        metrics_.countRejected(source, reason);
        journal_.rejected(source, status, error);
    }

    void onAccepted(const Event& event, std::span<const RouteFate> routes) override {
        for (const auto& fate : routes) {
            if (fate.verdict != Verdict::pass) {
                metrics_.countDropped(fate.route, toString(fate.verdict));
            }
        }
        journal_.accepted(event, routes);
    }

    void onAttempt(const AttemptReport& report) override {
        metrics_.countDelivery(report.target, toString(report.outcome), report.latency.count());
        journal_.attempted(report);
    }

    void onBatch(std::string_view target, std::size_t) override { metrics_.countBatch(target); }

    Metrics& metrics() { return metrics_; }
    Journal& journal() { return journal_; }
    const Journal& journal() const { return journal_; }

private:
    Metrics metrics_;
    Journal journal_;
};

}  // namespace fluxrelay
