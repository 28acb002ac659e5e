// Fuzzes the dedup message normalizer and the dedup keys (filters/dedup) with the input as the
// event's message.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "core/event.hpp"
#include "filters/dedup.hpp"
#include "fuzz/check.hpp"

namespace {

using namespace fluxrelay;

std::size_t asciiDigits(std::string_view text) {
    std::size_t count = 0;
    for (const char c : text) count += c >= '0' && c <= '9' ? 1 : 0;
    return count;
}

bool isHexKey(std::string_view key) {
    if (key.size() != 64) return false;
    for (const char c : key) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

RouteConfig route(std::string name, DedupMode mode) {
    RouteConfig route;
    route.name = std::move(name);
    route.source = "flux";
    route.dedup.mode = mode;
    return route;
}

Event fluxEvent(std::string message) {
    FluxEvent flux;
    flux.involvedObject = {.kind = "Kustomization", .namespace_ = "flux-system", .name = "apps"};
    flux.severity = "error";
    flux.reason = "HealthCheckFailed";
    flux.message = std::move(message);
    flux.metadata["revision"] = "main@sha1:bd5f1dc5b5be44b16dbb37ab0b8ea0e0fd2b4d07";
    return Event{.id = "fuzz", .source = "flux", .receivedAt = {}, .payload = std::move(flux)};
}

// A route's key: its name, a colon, and the hex sha256 of notification-controller's key.
void checkHashedKey(const std::string& key, const RouteConfig& route) {
    FUZZ_CHECK(key.starts_with(route.name + ":"));
    FUZZ_CHECK(isHexKey(std::string_view(key).substr(route.name.size() + 1)));
}

const RouteConfig kNone = route("none", DedupMode::none);
const RouteConfig kFlux = route("flux", DedupMode::flux);
const RouteConfig kNormalized = route("normalized", DedupMode::normalized);
const RouteConfig kTransitions = route("transitions", DedupMode::transitions);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view message(reinterpret_cast<const char*>(data), size);

    const std::string normalized = normalizeMessage(message);
    // Idempotent: a normalized message is its own normal form, so keys are stable.
    FUZZ_CHECK(normalizeMessage(normalized) == normalized);
    // Masking only removes digits, never adds any.
    FUZZ_CHECK(asciiDigits(normalized) <= asciiDigits(message));
    // Only numbers are masked: a message without digits is kept byte for byte.
    if (asciiDigits(message) == 0) FUZZ_CHECK(normalized == message);

    const Event event = fluxEvent(std::string(message));
    const Event normalizedEvent = fluxEvent(normalized);

    FUZZ_CHECK(isHexKey(fluxDedupKey(*event.flux())));
    FUZZ_CHECK(dedupKey(kNone, event).empty());

    const std::string fluxKey = dedupKey(kFlux, event);
    checkHashedKey(fluxKey, kFlux);
    FUZZ_CHECK(fluxKey == "flux:" + fluxDedupKey(*event.flux()));

    // mode normalized keys the message's normal form: a message and its normal form are one event.
    const std::string normalizedKey = dedupKey(kNormalized, event);
    checkHashedKey(normalizedKey, kNormalized);
    FUZZ_CHECK(normalizedKey == dedupKey(kNormalized, normalizedEvent));
    FUZZ_CHECK(normalizedKey == "normalized:" + fluxDedupKey(*normalizedEvent.flux()));

    FUZZ_CHECK(dedupKey(kTransitions, event).starts_with("transitions:"));

    // GitHub events have no dedup key in any mode.
    const Event github{.id = "fuzz", .source = "github", .receivedAt = {}, .payload = GitHubEvent{.body = {}}};
    FUZZ_CHECK(dedupKey(kFlux, github).empty() && dedupKey(kNormalized, github).empty());
    return 0;
}
