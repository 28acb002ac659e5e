// Dedup keys (SPEC §4 step 7). The key is pure; remembering it is storage's job.
#pragma once

#include <string>
#include <string_view>

#include "config/config.hpp"
#include "core/event.hpp"

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

}  // namespace fluxrelay
