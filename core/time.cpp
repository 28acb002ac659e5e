// RFC3339 formatting and parsing in UTC, matching what Go's time package writes and accepts.
#include "core/time.hpp"

#include <cstdint>
#include <cstdio>

namespace fluxrelay {

namespace {

// std::chrono's calendar is pure and thread-safe, unlike gmtime/mktime and the TZ they consult.
// "YYYY-MM-DDTHH:MM:SS" of `time` in UTC; the sub-second part goes to `fraction`.
std::string formatSeconds(TimePoint time, std::chrono::nanoseconds& fraction) {
    using namespace std::chrono;
    const auto secondsTime = floor<seconds>(time);
    fraction = duration_cast<nanoseconds>(time - secondsTime);
    const auto day = floor<days>(secondsTime);
    const year_month_day date{day};
    const hh_mm_ss<seconds> clock{secondsTime - day};
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%04d-%02u-%02uT%02d:%02d:%02d", static_cast<int>(date.year()),
                  static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                  static_cast<int>(clock.hours().count()), static_cast<int>(clock.minutes().count()),
                  static_cast<int>(clock.seconds().count()));
    return buffer;
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// Exactly `count` decimal digits at `pos`.
bool readNumber(std::string_view text, std::size_t pos, std::size_t count, int& out) {
    if (pos + count > text.size()) return false;
    int value = 0;
    for (std::size_t i = pos; i < pos + count; ++i) {
        if (!isDigit(text[i])) return false;
        value = value * 10 + (text[i] - '0');
    }
    out = value;
    return true;
}

}  // namespace

std::string formatRfc3339(TimePoint time) {
    std::chrono::nanoseconds fraction{};
    return formatSeconds(time, fraction) + "Z";
}

std::string formatRfc3339Nano(TimePoint time) {
    std::chrono::nanoseconds fraction{};
    std::string out = formatSeconds(time, fraction);
    if (fraction.count() != 0) {
        char digits[16];
        std::snprintf(digits, sizeof digits, ".%09lld", static_cast<long long>(fraction.count()));
        std::string text = digits;
        // Go's RFC3339Nano layout (".999999999") drops trailing zeros.
        while (text.back() == '0') text.pop_back();
        out += text;
    }
    return out + "Z";
}

bool parseRfc3339(std::string_view text, TimePoint& out) {
    using namespace std::chrono;
    // Layout: YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM), upper-case T and Z, as Go's time.RFC3339.
    int yearValue = 0, monthValue = 0, dayValue = 0, hour = 0, minute = 0, second = 0;
    if (!readNumber(text, 0, 4, yearValue) || text.size() < 19 || text[4] != '-' ||
        !readNumber(text, 5, 2, monthValue) || text[7] != '-' || !readNumber(text, 8, 2, dayValue) || text[10] != 'T' ||
        !readNumber(text, 11, 2, hour) || text[13] != ':' || !readNumber(text, 14, 2, minute) || text[16] != ':' ||
        !readNumber(text, 17, 2, second)) {
        return false;
    }
    // Go rejects a leap second (60) as out of range, and so do we.
    if (hour > 23 || minute > 59 || second > 59) return false;
    const year_month_day date{year{yearValue}, month{static_cast<unsigned>(monthValue)},
                              day{static_cast<unsigned>(dayValue)}};
    if (!date.ok()) return false;

    std::size_t pos = 19;
    std::int64_t nanos = 0;
    if (pos < text.size() && text[pos] == '.') {
        ++pos;
        const std::size_t start = pos;
        while (pos < text.size() && isDigit(text[pos])) {
            // Digits past the ninth are accepted and truncated, as Go does.
            if (pos - start < 9) nanos = nanos * 10 + (text[pos] - '0');
            ++pos;
        }
        if (pos == start) return false;
        for (std::size_t n = pos - start; n < 9; ++n) nanos *= 10;
    }

    if (pos >= text.size()) return false;
    seconds offset{0};
    if (text[pos] == 'Z') {
        ++pos;
    } else if (text[pos] == '+' || text[pos] == '-') {
        int offsetHours = 0, offsetMinutes = 0;
        if (!readNumber(text, pos + 1, 2, offsetHours) || pos + 3 >= text.size() || text[pos + 3] != ':' ||
            !readNumber(text, pos + 4, 2, offsetMinutes)) {
            return false;
        }
        if (offsetHours > 23 || offsetMinutes > 59) return false;
        offset = hours{offsetHours} + minutes{offsetMinutes};
        if (text[pos] == '-') offset = -offset;
        pos += 6;
    } else {
        return false;
    }
    if (pos != text.size()) return false;

    const sys_seconds utc = sys_days{date} + hours{hour} + minutes{minute} + seconds{second} - offset;
    // TimePoint counts nanoseconds in 64 bits, so it spans the years 1677 to 2262: a valid RFC3339
    // time outside that (year 0001, 9999) cannot be represented, and converting it would overflow.
    if (utc < ceil<seconds>(TimePoint::min()) || utc >= floor<seconds>(TimePoint::max())) return false;
    out = time_point_cast<Clock::duration>(utc) + duration_cast<Clock::duration>(nanoseconds{nanos});
    return true;
}

}  // namespace fluxrelay
