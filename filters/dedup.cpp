// Dedup per route: notification-controller's key, its normalized variant, and
// the per-object gates (transitions, threshold) that storage evaluates with the accept.
#include "filters/dedup.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/crypto.hpp"
#include "core/duration.hpp"

namespace fluxrelay {

namespace {

bool isAsciiDigit(char c) { return c >= '0' && c <= '9'; }

bool isAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Bytes that glue a token together. Dots join "2.31s" and "10.0.0.1"; bytes of multi-byte UTF-8
// sequences count as letters, so "µs" stays in its duration and "naïve2" stays one word.
bool isWordByte(char c) {
    return isAsciiDigit(c) || isAsciiLetter(c) || c == '_' || c == '.' || static_cast<unsigned char>(c) >= 0x80;
}

// Digits, optionally ".digits", at `pos`; returns the end, or `pos` when no digit is there.
std::size_t skipDecimal(std::string_view text, std::size_t pos) {
    std::size_t end = pos;
    while (end < text.size() && isAsciiDigit(text[end])) ++end;
    if (end == pos) return pos;
    if (end + 1 < text.size() && text[end] == '.' && isAsciiDigit(text[end + 1])) {
        end += 1;
        while (end < text.size() && isAsciiDigit(text[end])) ++end;
    }
    return end;
}

// Go's duration units, longest first so "ms" is not read as "m" followed by "s".
std::size_t skipDurationUnit(std::string_view text, std::size_t pos) {
    for (std::string_view unit : {"ns", "us", "\xC2\xB5s", "\xCE\xBCs", "ms", "s", "m", "h"}) {
        if (text.substr(pos).starts_with(unit)) return pos + unit.size();
    }
    return pos;
}

// Go's Duration.String() and ParseDuration forms: "150ms", "2.31s", "1h0m0s", "5m0.033s".
bool isGoDuration(std::string_view word) {
    std::size_t pos = 0;
    while (pos < word.size()) {
        const std::size_t number = skipDecimal(word, pos);
        if (number == pos) return false;
        const std::size_t unit = skipDurationUnit(word, number);
        if (unit == number) return false;
        pos = unit;
    }
    return !word.empty();
}

// Byte counts as Go libraries print them: "512B", "1.2MB", "3.5KiB", "42kB".
bool isByteSize(std::string_view word) {
    const std::size_t number = skipDecimal(word, 0);
    if (number == 0) return false;
    const std::string_view unit = word.substr(number);
    for (std::string_view known : {"B", "kB", "KB", "KiB", "MB", "MiB", "GB", "GiB", "TB", "TiB"}) {
        if (unit == known) return true;
    }
    return false;
}

// "3", "2.5", "10.0.0.1", "6.5.4": digit groups separated by single dots.
bool isNumber(std::string_view word) {
    if (word.empty() || !isAsciiDigit(word.front()) || !isAsciiDigit(word.back())) return false;
    for (std::size_t i = 0; i < word.size(); ++i) {
        if (word[i] == '.') {
            if (word[i + 1] == '.') return false;  // safe: the last byte is a digit
        } else if (!isAsciiDigit(word[i])) {
            return false;
        }
    }
    return true;
}

std::string joinedKey(const FluxEvent& event, std::string_view message) {
    // Components in notification-controller's order; metadata is looked up by presence, not
    // value, as Flux does (an empty revision still adds its component).
    std::string key = "event";
    key += "/name=" + event.involvedObject.name;
    key += "/namespace=" + event.involvedObject.namespace_;
    key += "/kind=" + event.involvedObject.kind;
    key += "/message=";
    key += message;
    for (const char* name : {"originRevision", "revision"}) {
        if (const auto it = event.metadata.find(name); it != event.metadata.end()) {
            key += "/";
            key += name;
            key += "=" + it->second;
        }
    }
    // The token (e.g. helm-controller's digest of the values it applied) separates events whose
    // message and revision are equal. Flux tests presence; an empty token is read as none here.
    if (!event.dedupToken.empty()) key += "/token=" + event.dedupToken;
    return key;
}

std::string keyFor(const RouteConfig& route, const FluxEvent& event, std::string_view message) {
    return route.name + ":" + toHex(sha256(joinedKey(event, message)));
}

// Per-object state (transitions, threshold) is keyed by the object, whatever its messages say.
std::string objectKeyFor(const RouteConfig& route, std::string_view gate, const FluxEvent& event) {
    return route.name + ":" + std::string(gate) + ":" + event.involvedObject.path();
}

}  // namespace

std::string fluxDedupKey(const FluxEvent& event) { return toHex(sha256(joinedKey(event, event.message))); }

std::string normalizeMessage(std::string_view message) {
    std::string out;
    out.reserve(message.size());
    std::size_t pos = 0;
    while (pos < message.size()) {
        if (!isWordByte(message[pos])) {
            out += message[pos++];
            continue;
        }
        std::size_t end = pos;
        while (end < message.size() && isWordByte(message[end])) ++end;
        // A sentence's full stop is not part of "in 2.31s."; classify the word without it.
        std::size_t core = end;
        while (core > pos && message[core - 1] == '.') --core;
        const std::string_view word = message.substr(pos, core - pos);
        if (isNumber(word)) {
            out += "<num>";
        } else if (isGoDuration(word)) {
            out += "<duration>";
        } else if (isByteSize(word)) {
            out += "<size>";
        } else {
            out += word;
        }
        out += message.substr(core, end - core);
        pos = end;
    }
    return out;
}

std::string dedupKey(const RouteConfig& route, const Event& event) {
    const FluxEvent* flux = event.flux();
    if (flux == nullptr) return {};
    switch (route.dedup.mode) {
        case DedupMode::none:
            return {};
        case DedupMode::flux:
            return keyFor(route, *flux, flux->message);
        case DedupMode::normalized:
            return keyFor(route, *flux, normalizeMessage(flux->message));
        case DedupMode::transitions:
            return objectKeyFor(route, "transitions", *flux);
    }
    return {};
}

std::vector<DedupGate> dedupGates(const RouteConfig& route, const Event& event) {
    const FluxEvent* flux = event.flux();
    if (flux == nullptr) return {};
    std::vector<DedupGate> gates;
    const DedupConfig& dedup = route.dedup;
    if (dedup.threshold > 0) {
        gates.push_back({.kind = DedupGate::Kind::threshold,
                         .label = "dedup threshold " + std::to_string(dedup.threshold),
                         .key = objectKeyFor(route, "threshold", *flux),
                         .window = dedup.window,
                         .renotify = {},
                         .threshold = dedup.threshold,
                         .observation = flux->severity});
    }
    const std::string key = dedupKey(route, event);
    if (key.empty()) return gates;
    const std::string label = "dedup mode " + std::string(toString(dedup.mode));
    if (dedup.mode == DedupMode::transitions) {
        gates.push_back({.kind = DedupGate::Kind::transitions,
                         .label = label,
                         .key = key,
                         .window = {},
                         .renotify = dedup.renotify,
                         .threshold = 0,
                         .observation = flux->severity + "/" + flux->reason});
    } else {
        gates.push_back({.kind = DedupGate::Kind::window,
                         .label = label,
                         .key = key,
                         .window = dedup.window,
                         .renotify = {},
                         .threshold = 0,
                         .observation = {}});
    }
    return gates;
}

}  // namespace fluxrelay
