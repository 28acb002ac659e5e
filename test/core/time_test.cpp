// Unit tests for core/time: RFC3339 as Go's time package formats and parses it.
#include "core/time.hpp"

#include <doctest/doctest.h>

using namespace fluxrelay;
using namespace std::chrono;

namespace {

TimePoint at(std::int64_t unixSeconds, std::int64_t nanos = 0) {
    return TimePoint{} + duration_cast<Clock::duration>(seconds{unixSeconds} + nanoseconds{nanos});
}

}  // namespace

TEST_CASE("formatRfc3339 writes seconds precision in UTC") {
    CHECK(formatRfc3339(at(0)) == "1970-01-01T00:00:00Z");
    CHECK(formatRfc3339(at(1664520029)) == "2022-09-30T06:40:29Z");
    CHECK(formatRfc3339(at(1664520029, 999'999'999)) == "2022-09-30T06:40:29Z");
    CHECK(formatRfc3339(at(951782400)) == "2000-02-29T00:00:00Z");
    CHECK(formatRfc3339(at(-1)) == "1969-12-31T23:59:59Z");
}

TEST_CASE("formatRfc3339Nano trims trailing zeros as Go does") {
    CHECK(formatRfc3339Nano(at(1664520029)) == "2022-09-30T06:40:29Z");
    CHECK(formatRfc3339Nano(at(1664520029, 123'456'789)) == "2022-09-30T06:40:29.123456789Z");
    CHECK(formatRfc3339Nano(at(1664520029, 120'000'000)) == "2022-09-30T06:40:29.12Z");
    CHECK(formatRfc3339Nano(at(1664520029, 1)) == "2022-09-30T06:40:29.000000001Z");
}

TEST_CASE("parseRfc3339 accepts Z, offsets and fractions") {
    TimePoint t;
    REQUIRE(parseRfc3339("2022-09-30T06:40:29Z", t));
    CHECK(t == at(1664520029));
    REQUIRE(parseRfc3339("2022-09-30T08:40:29+02:00", t));
    CHECK(t == at(1664520029));
    REQUIRE(parseRfc3339("2022-09-30T01:10:29-05:30", t));
    CHECK(t == at(1664520029));
    REQUIRE(parseRfc3339("2022-09-30T06:40:29.5Z", t));
    CHECK(t == at(1664520029, 500'000'000));
    REQUIRE(parseRfc3339("2022-09-30T06:40:29.123456789Z", t));
    CHECK(t == at(1664520029, 123'456'789));
    // Digits past nanoseconds are truncated, not rejected.
    REQUIRE(parseRfc3339("2022-09-30T06:40:29.1234567891Z", t));
    CHECK(t == at(1664520029, 123'456'789));
    REQUIRE(parseRfc3339("2024-02-29T00:00:00Z", t));
    REQUIRE(parseRfc3339("1969-12-31T23:59:59Z", t));
    CHECK(t == at(-1));
}

TEST_CASE("parse and format round trip") {
    TimePoint t;
    REQUIRE(parseRfc3339(formatRfc3339Nano(at(1700000000, 42)), t));
    CHECK(t == at(1700000000, 42));
}

TEST_CASE("parseRfc3339 rejects malformed text without touching out") {
    const TimePoint before = at(7);
    for (const char* text : {
             "",
             "2022-09-30",
             "2022-09-30T06:40:29",        // no zone
             "2022-09-30 06:40:29Z",       // space instead of T
             "2022-09-30t06:40:29z",       // lower case
             "2022-9-30T06:40:29Z",        // one-digit month
             "2022-09-30T6:40:29Z",        // one-digit hour
             "2022-13-01T00:00:00Z",       // month
             "2022-02-29T00:00:00Z",       // not a leap year
             "2022-09-31T00:00:00Z",       // day
             "2022-09-30T24:00:00Z",       // hour
             "2022-09-30T06:60:00Z",       // minute
             "2022-09-30T06:40:60Z",       // leap second, as Go
             "2022-09-30T06:40:29.Z",      // empty fraction
             "2022-09-30T06:40:29,5Z",     // comma
             "2022-09-30T06:40:29+0200",   // offset without colon
             "2022-09-30T06:40:29+02",     // short offset
             "2022-09-30T06:40:29+24:00",  // offset hour
             "2022-09-30T06:40:29Zjunk",   // trailing bytes
             "2022-09-30T06:40:29 Z",
             "abcd-09-30T06:40:29Z",
         }) {
        TimePoint t = before;
        CHECK_MESSAGE(!parseRfc3339(text, t), text);
        CHECK(t == before);
    }
}

// Found by fuzz/flux_event_fuzz.cpp: a Flux event dated "1011-09-30T06:40:29Z" overflowed the
// nanosecond count (undefined behaviour) instead of being refused.
TEST_CASE("parseRfc3339 refuses times a TimePoint cannot hold") {
    const TimePoint before = at(7);
    for (const char* text : {
             "1011-09-30T06:40:29Z",            // the fuzzer's input
             "0000-01-01T00:00:00Z",            // Go's earliest
             "9999-12-31T23:59:59.999999999Z",  // Go's latest
             "1677-09-21T00:12:43Z",            // just before the earliest
             "2262-04-11T23:47:16Z",            // the last second: refused whole, not all of its fractions fit
             "2262-04-11T22:47:16-01:00",       // the same instant, written with an offset
         }) {
        TimePoint t = before;
        CHECK_MESSAGE(!parseRfc3339(text, t), text);
        CHECK(t == before);
    }
    TimePoint t;
    CHECK(parseRfc3339("1677-09-21T00:12:44Z", t));
    CHECK(formatRfc3339(t) == "1677-09-21T00:12:44Z");
    CHECK(parseRfc3339("2262-04-11T23:47:15.999999999Z", t));
    CHECK(formatRfc3339Nano(t) == "2262-04-11T23:47:15.999999999Z");
}
