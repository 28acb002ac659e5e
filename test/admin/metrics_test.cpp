// Metrics rendering: names, labels, escaping, histogram buckets.
#include <doctest/doctest.h>

#include "admin/metrics.hpp"

namespace fluxrelay {

namespace {
bool contains(const std::string& text, std::string_view needle) { return text.find(needle) != std::string::npos; }
}  // namespace

TEST_CASE("counters render with their labels and HELP/TYPE lines") {
    Metrics metrics;
    metrics.countReceived("flux");
    metrics.countReceived("flux");
    metrics.countRejected("flux", "signature");
    metrics.countDropped("errors", "exclusion");
    const auto text = metrics.render();
    CHECK(contains(text, "# TYPE fluxrelay_events_received_total counter\n"));
    CHECK(contains(text, "fluxrelay_events_received_total{source=\"flux\"} 2\n"));
    CHECK(contains(text, "fluxrelay_events_rejected_total{source=\"flux\",reason=\"signature\"} 1\n"));
    CHECK(contains(text, "fluxrelay_events_dropped_total{route=\"errors\",reason=\"exclusion\"} 1\n"));
    CHECK(contains(text, "fluxrelay_build_info{version=\"" FLUXRELAY_VERSION "\"} 1\n"));
    CHECK(contains(text, "process_resident_memory_bytes "));
    CHECK(contains(text, "fluxrelay_config_last_reload_successful 1\n"));
}

TEST_CASE("the delivery histogram is cumulative and ends with +Inf") {
    Metrics metrics;
    metrics.countDelivery("am", "delivered", 0.003);
    metrics.countDelivery("am", "delivered", 0.2);
    metrics.countDelivery("am", "retry", 100);
    const auto text = metrics.render();
    CHECK(contains(text, "fluxrelay_deliveries_total{target=\"am\",outcome=\"delivered\"} 2\n"));
    CHECK(contains(text, "fluxrelay_delivery_duration_seconds_bucket{target=\"am\",le=\"0.005\"} 1\n"));
    CHECK(contains(text, "fluxrelay_delivery_duration_seconds_bucket{target=\"am\",le=\"0.25\"} 2\n"));
    CHECK(contains(text, "fluxrelay_delivery_duration_seconds_bucket{target=\"am\",le=\"30\"} 2\n"));
    CHECK(contains(text, "fluxrelay_delivery_duration_seconds_bucket{target=\"am\",le=\"+Inf\"} 3\n"));
    CHECK(contains(text, "fluxrelay_delivery_duration_seconds_count{target=\"am\"} 3\n"));
}

TEST_CASE("batches are counted per target, apart from the deliveries they carry") {
    Metrics metrics;
    metrics.countBatch("am");
    metrics.countBatch("am");
    metrics.countBatch("github");
    const auto text = metrics.render();
    CHECK(contains(text, "# TYPE fluxrelay_delivery_batches_total counter\n"));
    CHECK(contains(text, "fluxrelay_delivery_batches_total{target=\"am\"} 2\n"));
    CHECK(contains(text, "fluxrelay_delivery_batches_total{target=\"github\"} 1\n"));
}

TEST_CASE("label values are escaped") { CHECK(escapeLabelValue("a\"b\\c\nd") == "a\\\"b\\\\c\\nd"); }

TEST_CASE("a failed reload shows as 0") {
    Metrics metrics;
    metrics.setConfigReload(false, Clock::now());
    CHECK(contains(metrics.render(), "fluxrelay_config_last_reload_successful 0\n"));
}

TEST_CASE("each failing Flux object is one series, labelled with its latest reason") {
    Metrics metrics;
    const auto failing = [](std::string name, std::string reason) {
        return ObjectHealth{.kind = "Kustomization",
                            .namespace_ = "apps",
                            .name = std::move(name),
                            .failing = true,
                            .reason = std::move(reason),
                            .at = Clock::now(),
                            .expiry = Clock::now() + std::chrono::hours(24)};
    };
    CHECK(contains(metrics.render(), "# TYPE fluxrelay_flux_object_failing gauge\n"));
    metrics.setFailingObjects({failing("podinfo", "BuildFailed"), failing("say \"hi\"", "HealthCheckFailed")});
    auto text = metrics.render();
    CHECK(contains(text,
                   "fluxrelay_flux_object_failing{kind=\"Kustomization\",namespace=\"apps\",name=\"podinfo\","
                   "reason=\"BuildFailed\"} 1\n"));
    CHECK(contains(text, "name=\"say \\\"hi\\\"\",reason=\"HealthCheckFailed\"} 1\n"));
    metrics.setFailingObjects({failing("podinfo", "ArtifactFailed")});
    text = metrics.render();
    CHECK(contains(text, "name=\"podinfo\",reason=\"ArtifactFailed\"} 1\n"));
    CHECK_FALSE(contains(text, "BuildFailed"));
    CHECK_FALSE(contains(text, "HealthCheckFailed"));
}

}  // namespace fluxrelay
