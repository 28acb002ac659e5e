// Response classification and Retry-After parsing, shared by every provider.
#include <doctest/doctest.h>

#include <string>

#include "providers/provider.hpp"

namespace fluxrelay {
namespace {

using namespace std::chrono;

// Wed, 21 Oct 2015 07:28:00 GMT
const TimePoint referenceNow = sys_days{year{2015} / October / 21} + hours{7} + minutes{28};

HttpResponse response(int status, std::string body = {},
                      std::vector<std::pair<std::string, std::string>> headers = {}) {
    return HttpResponse{status, std::move(headers), std::move(body)};
}

}  // namespace

TEST_CASE("2xx is delivered") {
    for (const int status : {200, 201, 202, 204, 299}) {
        CAPTURE(status);
        CHECK(classifyHttpStatus(response(status)).kind == OutcomeKind::delivered);
    }
    CHECK(classifyHttpStatus(response(200)).detail == "HTTP 200");
}

TEST_CASE("5xx, 408 and 429 retry") {
    for (const int status : {500, 502, 503, 504, 599, 408, 429}) {
        CAPTURE(status);
        const Outcome outcome = classifyHttpStatus(response(status));
        CHECK(outcome.kind == OutcomeKind::retry);
        CHECK_FALSE(outcome.retryAfter.has_value());
    }
}

TEST_CASE("every other status is permanent") {
    for (const int status : {0, 100, 199, 301, 302, 304, 400, 401, 403, 404, 405, 409, 410, 413, 422, 451, 600}) {
        CAPTURE(status);
        const Outcome outcome = classifyHttpStatus(response(status));
        CHECK(outcome.kind == OutcomeKind::permanent);
        CHECK_FALSE(outcome.retryAfter.has_value());
    }
}

TEST_CASE("the detail names the status and the start of the body on one line") {
    CHECK(classifyHttpStatus(response(503, "upstream connect error\r\nreset reason: overflow\n")).detail ==
          "HTTP 503: upstream connect error  reset reason: overflow");
    CHECK(classifyHttpStatus(response(404, "  \n")).detail == "HTTP 404");

    const std::string longBody(500, 'x');
    CHECK(classifyHttpStatus(response(400, longBody)).detail == "HTTP 400: " + std::string(200, 'x'));

    // A character straddling the 200-byte mark is dropped whole; bytes that are not UTF-8 become '?'.
    const std::string straddling = std::string(199, 'a') + "\xC3\xA9" + "tail";
    CHECK(classifyHttpStatus(response(400, straddling)).detail == "HTTP 400: " + std::string(199, 'a'));
    CHECK(classifyHttpStatus(response(400, "bad \xFF byte")).detail == "HTTP 400: bad ? byte");
    CHECK(classifyHttpStatus(response(400, "caf\xC3\xA9")).detail == "HTTP 400: caf\xC3\xA9");
}

TEST_CASE("Retry-After is honoured on statuses that retry, in seconds or as an HTTP date") {
    const Outcome seconds = classifyHttpStatus(response(503, "", {{"Retry-After", "120"}}), referenceNow);
    CHECK(seconds.kind == OutcomeKind::retry);
    CHECK(seconds.retryAfter == milliseconds{120'000});

    const Outcome date =
        classifyHttpStatus(response(429, "", {{"retry-after", "Wed, 21 Oct 2015 07:29:30 GMT"}}), referenceNow);
    CHECK(date.kind == OutcomeKind::retry);
    CHECK(date.retryAfter == milliseconds{90'000});

    const Outcome garbage = classifyHttpStatus(response(503, "", {{"Retry-After", "soon"}}), referenceNow);
    CHECK(garbage.kind == OutcomeKind::retry);
    CHECK_FALSE(garbage.retryAfter.has_value());

    // A permanent failure stays permanent whatever the peer suggests.
    const Outcome permanent = classifyHttpStatus(response(400, "", {{"Retry-After", "5"}}), referenceNow);
    CHECK(permanent.kind == OutcomeKind::permanent);
    CHECK_FALSE(permanent.retryAfter.has_value());
}

TEST_CASE("Provider::classify defaults to the shared classification") {
    struct Minimal final : Provider {
        Minimal() : Provider(TargetConfig{}, Traits{}) {}
        AttemptPlan plan(std::span<const Delivery>, const ProviderState&, TimePoint) const override {
            return AttemptPlan::decide(Outcome::permanent("unused"));
        }
    };
    Minimal provider;
    CHECK(provider.maxBatch() == 1);
    CHECK(provider.classify(response(204)).kind == OutcomeKind::delivered);
    CHECK(provider.classify(response(502)).kind == OutcomeKind::retry);
    CHECK(provider.classify(response(403)).kind == OutcomeKind::permanent);
}

TEST_CASE("parseRetryAfter reads delta-seconds") {
    CHECK(parseRetryAfter("0", referenceNow) == milliseconds{0});
    CHECK(parseRetryAfter("1", referenceNow) == milliseconds{1000});
    CHECK(parseRetryAfter(" 3600 ", referenceNow) == milliseconds{3'600'000});
    // Absurdly large values are capped instead of overflowing.
    const auto huge = parseRetryAfter("99999999999999999999999", referenceNow);
    REQUIRE(huge.has_value());
    CHECK(*huge > milliseconds{0});
    CHECK(*huge >= duration_cast<milliseconds>(hours{24 * 365 * 30}));
}

TEST_CASE("parseRetryAfter reads IMF-fixdate") {
    CHECK(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", referenceNow) == milliseconds{0});
    CHECK(parseRetryAfter("Wed, 21 Oct 2015 08:28:01 GMT", referenceNow) == milliseconds{3'601'000});
    CHECK(parseRetryAfter("Thu, 01 Jan 2026 00:00:00 GMT", sys_days{year{2025} / December / 31}) ==
          milliseconds{86'400'000});
    // Sub-second "now": the date is whole seconds, the delay need not be.
    CHECK(parseRetryAfter("Wed, 21 Oct 2015 07:28:01 GMT", referenceNow + milliseconds{250}) == milliseconds{750});
    // A date in the past means "now".
    CHECK(parseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", referenceNow) == milliseconds{0});
}

TEST_CASE("parseRetryAfter rejects garbage") {
    for (const char* value : {
             "",
             "   ",
             "soon",
             "-5",
             "1.5",
             "+5",
             "5s",
             "0x10",
             "Wed, 21 Oct 2015 07:28:00 UTC",  // only GMT
             "Wed, 21 Oct 2015 07:28:00",
             "Wed, 32 Oct 2015 07:28:00 GMT",  // no such day
             "Wed, 29 Feb 2015 07:28:00 GMT",  // not a leap year
             "Wed, 21 Foo 2015 07:28:00 GMT",
             "Xyz, 21 Oct 2015 07:28:00 GMT",
             "Wed, 21 Oct 2015 24:00:00 GMT",
             "Wed, 21 Oct 2015 07:60:00 GMT",
             "Wed, 1 Oct 2015 07:28:00 GMT",       // two-digit day required
             "Wednesday, 21-Oct-15 07:28:00 GMT",  // obsolete RFC 850 form
             "Wed Oct 21 07:28:00 2015",           // obsolete asctime form
             "2015-10-21T07:28:00Z",
         }) {
        CAPTURE(value);
        CHECK_FALSE(parseRetryAfter(value, referenceNow).has_value());
    }
}

TEST_CASE("HttpResponse::header is case-insensitive and returns the first match") {
    const HttpResponse response{200, {{"Content-Type", "application/json"}, {"X-A", "1"}, {"x-a", "2"}}, ""};
    CHECK(response.header("content-type") == "application/json");
    CHECK(response.header("CONTENT-TYPE") == "application/json");
    CHECK(response.header("x-A") == "1");
    CHECK_FALSE(response.header("Retry-After").has_value());
    CHECK_FALSE(response.header("Content-Typ").has_value());
}

// A provider that sets Content-Type (and Authorization, when the target has credentials) itself:
// every provider's requests end with the same two shared steps.
struct HeaderProbe final : Provider {
    explicit HeaderProbe(const TargetConfig& target)
        : Provider(target, Traits{.maxBatch = 1, .refresh = {}, .ownHeaders = ownHeaders(target)}) {}

    AttemptPlan plan(std::span<const Delivery>, const ProviderState&, TimePoint) const override {
        HttpRequest request;
        request.headers = {{"Content-Type", "application/json"}};
        addAuthorization(request);
        addConfiguredHeaders(request);
        return {.requests = {request}, .decided = {}, .writes = {}};
    }

    static std::vector<std::string> ownHeaders(const TargetConfig& target) {
        std::vector<std::string> own = {"Content-Type"};
        if (hasAuthorization(target)) own.emplace_back("Authorization");
        return own;
    }
};

std::vector<std::pair<std::string, std::string>> probeHeaders(const TargetConfig& target) {
    return HeaderProbe(target).plan({}, {}, Clock::now()).requests.front().headers;
}

TEST_CASE("a provider's own headers, then Bearer, else Basic when both parts are set, then the configured ones") {
    TargetConfig target;
    target.headers = {{"X-Scope-OrgID", "home"}, {"X-Other", "1"}};

    SUBCASE("no credentials") {
        CHECK(probeHeaders(target) == decltype(probeHeaders(target)){{"Content-Type", "application/json"},
                                                                     {"X-Scope-OrgID", "home"},
                                                                     {"X-Other", "1"}});
    }
    SUBCASE("token") {
        target.token = "abc";
        target.username = "ignored";
        target.password = "ignored";
        CHECK(probeHeaders(target) == decltype(probeHeaders(target)){{"Content-Type", "application/json"},
                                                                     {"Authorization", "Bearer abc"},
                                                                     {"X-Scope-OrgID", "home"},
                                                                     {"X-Other", "1"}});
    }
    SUBCASE("basic") {
        target.username = "aladdin";
        target.password = "opensesame";
        const auto headers = probeHeaders(target);
        REQUIRE(headers.size() == 4);
        CHECK(headers[1] == std::pair<std::string, std::string>{"Authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l"});
    }
    SUBCASE("password alone sends nothing") {
        target.password = "opensesame";
        CHECK(probeHeaders(target).size() == 3);
    }
    SUBCASE("configured credentials replace a hand-written Authorization header, and it is reported") {
        target.headers.emplace_back("authorization", "Bearer stale");
        target.token = "fresh";
        const auto headers = probeHeaders(target);
        REQUIRE(headers.size() == 4);
        CHECK(headers[1] == std::pair<std::string, std::string>{"Authorization", "Bearer fresh"});
        CHECK(HeaderProbe(target).shadowedHeaders() == std::vector<std::string>{"authorization"});
    }
    SUBCASE("a hand-written Authorization header stays when nothing else is configured") {
        target.headers.emplace_back("Authorization", "ApiKey xyz");
        const auto headers = probeHeaders(target);
        REQUIRE(headers.size() == 4);
        CHECK(headers.back() == std::pair<std::string, std::string>{"Authorization", "ApiKey xyz"});
        CHECK(HeaderProbe(target).shadowedHeaders().empty());
    }
    SUBCASE("content and framing headers are the provider's and the client's: configured ones are left out") {
        target.headers = {{"content-type", "text/plain"}, {"Host", "elsewhere"}, {"X-Other", "1"}};
        CHECK(probeHeaders(target) ==
              decltype(probeHeaders(target)){{"Content-Type", "application/json"}, {"X-Other", "1"}});
        CHECK(HeaderProbe(target).shadowedHeaders() == std::vector<std::string>{"content-type", "Host"});
    }
}

TEST_CASE("shadowedHeaderWarnings names each target's configured header its provider sets itself") {
    Config config;
    TargetConfig am;
    am.name = "am";
    am.type = TargetType::alertmanager;
    am.address = Url{"http", "am", 9093, "/api/v2/alerts"};
    am.headers = {{"Content-Type", "text/plain"}, {"X-Scope-OrgID", "home"}};
    config.targets.push_back(am);
    const auto warnings = shadowedHeaderWarnings(config);
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0] ==
          "target am: header 'Content-Type' is set by the alertmanager target itself (content, signature or "
          "credentials); the configured value is not sent");
}

}  // namespace fluxrelay
