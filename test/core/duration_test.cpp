// Go-style durations: Go's own ParseDuration cases, narrowed to what milliseconds can hold.
#include "core/duration.hpp"

#include <doctest/doctest.h>

using namespace std::chrono_literals;
using fluxrelay::Duration;
using fluxrelay::formatDuration;
using fluxrelay::parseDuration;

TEST_CASE("parseDuration accepts Go's syntax") {
    const std::pair<const char*, Duration> cases[] = {
        {"0", 0ms},
        {"+0", 0ms},
        {"-0", 0ms},
        {"0s", 0ms},
        {"5s", 5s},
        {"30s", 30s},
        {"1478s", 1478s},
        {"+5s", 5s},
        {"5.0s", 5s},
        {"5.6s", 5600ms},
        {"5.s", 5s},
        {".5s", 500ms},
        {"1.004s", 1004ms},
        {"1.0040s", 1004ms},
        {"100.00100s", 100001ms},
        {"13ms", 13ms},
        {"14s", 14s},
        {"15m", 15min},
        {"16h", 16h},
        {"300ms", 300ms},
        {"1h30m", 90min},
        {"3h30m", 210min},
        {"10.5s4m", 4min + 10500ms},
        {"39h9m14.425s", 39h + 9min + 14425ms},
        {"52763797000000ns", 52763797ms},
        {"1000us", 1ms},
        {"2000\u00b5s", 2ms},
        {"3000\u03bcs", 3ms},
        {"0.3333333333333333333h", 20min},
        {"0.100000000000000000000h", 6min},
        {"9223372036854ms", 9223372036854ms},
    };
    for (const auto& [text, expected] : cases) {
        const std::string shown(text);
        CAPTURE(shown);
        const auto parsed = parseDuration(text);
        REQUIRE(parsed.has_value());
        CHECK(parsed->count() == expected.count());
    }
}

TEST_CASE("parseDuration rejects malformed, negative and sub-millisecond durations") {
    const char* cases[] = {
        "",
        "3",
        "-",
        "s",
        ".",
        "-.",
        ".s",
        "+.s",
        "1d",
        "1.5",
        "5 s",
        " 5s",
        "5s ",
        "1h-5m",
        "-5s",
        "-2m3.4s",
        "10ns",
        "11us",
        "1h2m3s4ms5us6ns",
        "52763797000ns",
        "9007199254740993ns",
        "9223372036854775807ns",
        "9223372036854775808ns",
        "9223372036854775810ns",
        "9223372036854775808ns9223372036854775808ns",
        "2562048h",
        "\x85\x85",
        "hello \xff world",
        "30 parsecs",
    };
    for (const char* text : cases) {
        const std::string shown(text);
        CAPTURE(shown);
        CHECK_FALSE(parseDuration(text).has_value());
    }
}

TEST_CASE("formatDuration prints as Go's Duration.String") {
    CHECK(formatDuration(0ms) == "0s");
    CHECK(formatDuration(1ms) == "1ms");
    CHECK(formatDuration(300ms) == "300ms");
    CHECK(formatDuration(999ms) == "999ms");
    CHECK(formatDuration(1s) == "1s");
    CHECK(formatDuration(1500ms) == "1.5s");
    CHECK(formatDuration(1010ms) == "1.01s");
    CHECK(formatDuration(1001ms) == "1.001s");
    CHECK(formatDuration(60s) == "1m0s");
    CHECK(formatDuration(90s) == "1m30s");
    CHECK(formatDuration(5min) == "5m0s");
    CHECK(formatDuration(1h) == "1h0m0s");
    CHECK(formatDuration(90min) == "1h30m0s");
    CHECK(formatDuration(24h) == "24h0m0s");
    CHECK(formatDuration(1h + 2min + 3s + 4ms) == "1h2m3.004s");
    CHECK(formatDuration(-1500ms) == "-1.5s");
    CHECK(formatDuration(-5ms) == "-5ms");
}

TEST_CASE("formatDuration output parses back to the same duration") {
    for (const Duration duration : {Duration{1}, Duration{999}, Duration{1000}, Duration{61'001}, Duration{3'600'000},
                                    Duration{93'784'005}, Duration{9'223'372'036'854}}) {
        CAPTURE(duration.count());
        const auto parsed = parseDuration(formatDuration(duration));
        REQUIRE(parsed.has_value());
        CHECK(parsed->count() == duration.count());
    }
}
