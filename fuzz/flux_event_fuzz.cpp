// Fuzzes the Flux event parser and its metadata normalization (gateway/flux_source): any body is
// either a FluxEvent or a clear error, never an exception or a crash.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include "core/event.hpp"
#include "core/text.hpp"
#include "core/time.hpp"
#include "fuzz/check.hpp"
#include "gateway/flux_source.hpp"

namespace {

using namespace fluxrelay;

bool sameObject(const ObjectRef& a, const ObjectRef& b) {
    return a.kind == b.kind && a.namespace_ == b.namespace_ && a.name == b.name && a.uid == b.uid &&
           a.apiVersion == b.apiVersion && a.resourceVersion == b.resourceVersion && a.fieldPath == b.fieldPath;
}

// Everything the Flux JSON form carries but the timestamp (dedupToken and resolveOnly are ours).
bool sameFluxFields(const FluxEvent& a, const FluxEvent& b) {
    return sameObject(a.involvedObject, b.involvedObject) && a.severity == b.severity && a.message == b.message &&
           a.reason == b.reason && a.metadata == b.metadata && a.reportingController == b.reportingController &&
           a.reportingInstance == b.reportingInstance;
}

// The timestamp as Go re-marshals it: UTC, whole seconds.
std::string goTimestamp(const std::string& timestamp) {
    if (timestamp.empty()) return timestamp;
    TimePoint parsed;
    FUZZ_CHECK(parseRfc3339(timestamp, parsed));
    const std::string text = formatRfc3339(parsed);
    TimePoint again;
    FUZZ_CHECK(parseRfc3339(text, again));
    FUZZ_CHECK(formatRfc3339(again) == text);
    return text;
}

void checkEvent(const FluxEvent& event, std::string_view body) {
    FUZZ_CHECK(!event.involvedObject.kind.empty());
    FUZZ_CHECK(!event.involvedObject.name.empty());
    FUZZ_CHECK(event.severity == "trace" || event.severity == "info" || event.severity == "error");
    // Normalization drops checksum and digest (any case) and the token.
    for (const auto& [key, value] : event.metadata) {
        FUZZ_CHECK(!equalsIgnoreCase(key, "checksum") && !equalsIgnoreCase(key, "digest") && key != "token");
    }

    // What we forward is Flux's JSON again: it must parse back to the same event. A normalized key
    // that still holds a '/' (from "event.toolkit.fluxcd.io/a/b") would be read as foreign-prefixed
    // the second time, as notification-controller would, so those events are left out.
    bool slashInKey = false;
    for (const auto& entry : event.metadata) slashInKey = slashInKey || entry.first.find('/') != std::string::npos;
    const std::string text = toFluxJsonText(event);
    FUZZ_CHECK(nlohmann::json::accept(text));
    if (!slashInKey) {
        auto again = parseFluxEvent(text);
        FUZZ_CHECK(std::holds_alternative<FluxEvent>(again));
        FUZZ_CHECK(sameFluxFields(std::get<FluxEvent>(again), event));
        FUZZ_CHECK(std::get<FluxEvent>(again).timestamp == goTimestamp(event.timestamp));
    }

    // Storage form round trip.
    const Event stored{.id = "fuzz", .source = "flux", .receivedAt = {}, .payload = event};
    const Event loaded = fromStorageText(toStorageText(stored));
    FUZZ_CHECK(loaded.flux() != nullptr);
    FUZZ_CHECK(sameFluxFields(*loaded.flux(), event));
    FUZZ_CHECK(loaded.flux()->timestamp == event.timestamp);
    FUZZ_CHECK(loaded.flux()->dedupToken == event.dedupToken);

    // The accept path with a well-formed request must agree with the bare parser.
    const SourceConfig source{.name = "flux", .type = SourceType::flux, .path = "/flux/events"};
    const InboundRequest request{
        .body = body,
        .header = [](std::string_view name) -> std::optional<std::string_view> {
            if (equalsIgnoreCase(name, "Content-Type")) return "application/json; charset=utf-8";
            return std::nullopt;
        },
    };
    auto accepted = acceptFluxRequest(source, request);
    FUZZ_CHECK(std::holds_alternative<FluxEvent>(accepted));
    FUZZ_CHECK(sameFluxFields(std::get<FluxEvent>(accepted), event));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    auto parsed = parseFluxEvent(body);
    if (const auto* error = std::get_if<std::string>(&parsed)) {
        // The error becomes a 400's JSON body: it must say something, in text JSON can carry.
        FUZZ_CHECK(!error->empty());
        FUZZ_CHECK(isValidUtf8(*error));
        FUZZ_CHECK(error->size() < 1024);
        return 0;
    }
    checkEvent(std::get<FluxEvent>(parsed), body);
    return 0;
}
