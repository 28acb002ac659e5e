// Dedup keys and a route's gates. The key is pure; remembering it is storage's job (core/dedup_gate).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/dedup_gate.hpp"
#include "core/event.hpp"
#include "core/time.hpp"

namespace fluxrelay {

// notification-controller's rate-limiter key: hex sha256 over
// "event/name=<n>/namespace=<ns>/kind=<k>/message=<m>[/originRevision=..][/revision=..][/token=..]".
std::string fluxDedupKey(const FluxEvent& event);

// The message with its volatile parts masked for `mode: normalized`: standalone numbers
// ("3", "10.0.0.1") become "<num>" and Go durations ("2.31s", "5m0s") "<duration>". Digits inside
// words (revision hashes, "v1.2.3", "sha1") are kept: a new revision is a new event.
std::string normalizeMessage(std::string_view message);

// The key for a route's dedup mode, prefixed with the route name so routes never suppress each
// other; empty when the route does not dedup this event.
std::string dedupKey(const RouteConfig& route, const Event& event);

// The gates of a route for an event, in evaluation order: threshold first (a failure that does
// not count yet must not hold the mode's key), then the mode. Empty: no dedup.
std::vector<DedupGate> dedupGates(const RouteConfig& route, const Event& event);

}  // namespace fluxrelay
