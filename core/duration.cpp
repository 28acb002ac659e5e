// Go's time.ParseDuration and Duration.String(), so durations read and print as in Flux manifests.
#include "core/duration.hpp"

#include <cstdint>
#include <limits>

namespace fluxrelay {
namespace {

using Nanos = std::int64_t;

constexpr Nanos kNanosPerMilli = 1'000'000;
constexpr std::uint64_t kMaxMagnitude = std::uint64_t{1} << 63;  // |math.MinInt64|, as Go bounds it

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// Nanoseconds per unit, or 0 for an unknown unit. Both micro signs are accepted, as Go does.
std::uint64_t unitNanos(std::string_view unit) {
    if (unit == "ns") return 1;
    if (unit == "us" || unit == "\u00b5s" || unit == "\u03bcs") return 1'000;
    if (unit == "ms") return 1'000'000;
    if (unit == "s") return 1'000'000'000;
    if (unit == "m") return 60'000'000'000;
    if (unit == "h") return 3'600'000'000'000;
    return 0;
}

// Leading decimal digits of `text`, consumed; false on overflow past 2^63.
bool leadingInt(std::string_view& text, std::uint64_t& value) {
    value = 0;
    std::size_t i = 0;
    for (; i < text.size() && isDigit(text[i]); ++i) {
        if (value > kMaxMagnitude / 10) return false;
        value = value * 10 + static_cast<std::uint64_t>(text[i] - '0');
        if (value > kMaxMagnitude) return false;
    }
    text.remove_prefix(i);
    return true;
}

// Digits after the decimal point, consumed; like Go, digits past what fits are dropped, not errors.
void leadingFraction(std::string_view& text, std::uint64_t& value, double& scale) {
    value = 0;
    scale = 1;
    bool overflow = false;
    std::size_t i = 0;
    for (; i < text.size() && isDigit(text[i]); ++i) {
        if (overflow) continue;
        if (value > (kMaxMagnitude - 1) / 10) {
            overflow = true;
            continue;
        }
        const std::uint64_t next = value * 10 + static_cast<std::uint64_t>(text[i] - '0');
        if (next > kMaxMagnitude) {
            overflow = true;
            continue;
        }
        value = next;
        scale *= 10;
    }
    text.remove_prefix(i);
}

// One "<number><unit>" element, consumed and added to `total`; false when malformed.
bool parseElement(std::string_view& text, std::uint64_t& total) {
    const std::size_t before = text.size();
    std::uint64_t whole = 0;
    if (!leadingInt(text, whole)) return false;
    const bool hadWhole = text.size() != before;

    std::uint64_t fraction = 0;
    double scale = 1;
    bool hadFraction = false;
    if (!text.empty() && text.front() == '.') {
        text.remove_prefix(1);
        const std::size_t afterDot = text.size();
        leadingFraction(text, fraction, scale);
        hadFraction = text.size() != afterDot;
    }
    if (!hadWhole && !hadFraction) return false;  // "." or a bare unit

    std::size_t unitLength = 0;
    while (unitLength < text.size() && text[unitLength] != '.' && !isDigit(text[unitLength])) ++unitLength;
    const std::uint64_t unit = unitNanos(text.substr(0, unitLength));
    if (unit == 0) return false;
    text.remove_prefix(unitLength);

    if (whole > kMaxMagnitude / unit) return false;
    std::uint64_t value = whole * unit;
    if (fraction > 0) {
        // Float arithmetic here on purpose: it is what Go does, so "0.1s" rounds the same way.
        value += static_cast<std::uint64_t>(static_cast<double>(fraction) * (static_cast<double>(unit) / scale));
        if (value > kMaxMagnitude) return false;
    }
    if (value > kMaxMagnitude - total) return false;  // checked before adding: the sum could wrap
    total += value;
    return true;
}

// ".5" for 500 ms, as Go prints the fraction of a second: no trailing zeros.
void appendMillis(std::string& out, std::uint64_t millis) {
    if (millis == 0) return;
    std::string digits = {static_cast<char>('0' + millis / 100), static_cast<char>('0' + millis / 10 % 10),
                          static_cast<char>('0' + millis % 10)};
    while (digits.back() == '0') digits.pop_back();
    out += '.';
    out += digits;
}

}  // namespace

std::optional<Duration> parseDuration(std::string_view text) {
    bool negative = false;
    if (!text.empty() && (text.front() == '-' || text.front() == '+')) {
        negative = text.front() == '-';
        text.remove_prefix(1);
    }
    if (text == "0") return Duration{0};  // Go's one unit-less special case
    if (text.empty()) return std::nullopt;

    std::uint64_t total = 0;
    while (!text.empty()) {
        if (!parseElement(text, total)) return std::nullopt;
    }
    if (total == 0) return Duration{0};
    if (negative || total > static_cast<std::uint64_t>(std::numeric_limits<Nanos>::max())) return std::nullopt;
    if (total % kNanosPerMilli != 0) return std::nullopt;  // would be silently truncated otherwise
    return Duration{static_cast<Nanos>(total / kNanosPerMilli)};
}

std::string formatDuration(Duration duration) {
    const std::int64_t count = duration.count();
    if (count == 0) return "0s";
    std::string out = count < 0 ? "-" : "";
    // Unsigned so that the most negative count has a magnitude too.
    const std::uint64_t millis = count < 0 ? 0 - static_cast<std::uint64_t>(count) : static_cast<std::uint64_t>(count);
    if (millis < 1000) return out + std::to_string(millis) + "ms";

    const std::uint64_t hours = millis / 3'600'000;
    const std::uint64_t minutes = millis / 60'000 % 60;
    if (hours > 0) out += std::to_string(hours) + "h";
    if (hours > 0 || minutes > 0) out += std::to_string(minutes) + "m";
    out += std::to_string(millis / 1000 % 60);
    appendMillis(out, millis % 1000);
    out += 's';
    return out;
}

}  // namespace fluxrelay
