// Unit tests for core/url: what outbound clients get from a configured address.
#include "core/url.hpp"

#include <doctest/doctest.h>

using namespace fluxrelay;

TEST_CASE("http URL with port, path and query") {
    const auto url = parseUrl("http://alertmanager-operated.o11y:9093/api/v2/alerts?x=1&y=2");
    REQUIRE(url);
    CHECK(url->scheme == "http");
    CHECK(url->host == "alertmanager-operated.o11y");
    CHECK(url->port == 9093);
    CHECK(url->target == "/api/v2/alerts?x=1&y=2");
    CHECK_FALSE(url->tls());
    CHECK(url->hostHeader() == "alertmanager-operated.o11y:9093");
    CHECK(url->toString() == "http://alertmanager-operated.o11y:9093/api/v2/alerts?x=1&y=2");
}

TEST_CASE("default ports and an empty path") {
    auto url = parseUrl("https://api.github.com");
    REQUIRE(url);
    CHECK(url->tls());
    CHECK(url->port == 443);
    CHECK(url->target == "/");
    CHECK(url->hostHeader() == "api.github.com");
    CHECK(url->toString() == "https://api.github.com/");

    url = parseUrl("http://example.com");
    REQUIRE(url);
    CHECK(url->port == 80);

    // An explicit default port is the same URL.
    url = parseUrl("https://example.com:443/x");
    REQUIRE(url);
    CHECK(url->hostHeader() == "example.com");

    // A port that is not the default for the scheme is kept in Host.
    url = parseUrl("https://example.com:80/x");
    REQUIRE(url);
    CHECK(url->hostHeader() == "example.com:80");

    // "host:" is the default port.
    url = parseUrl("http://example.com:/x");
    REQUIRE(url);
    CHECK(url->port == 80);
}

TEST_CASE("query without a path, and the fragment dropped") {
    auto url = parseUrl("http://example.com?a=b");
    REQUIRE(url);
    CHECK(url->target == "/?a=b");
    url = parseUrl("http://example.com/p?a=b#frag");
    REQUIRE(url);
    CHECK(url->target == "/p?a=b");
    url = parseUrl("http://example.com#frag");
    REQUIRE(url);
    CHECK(url->target == "/");
}

TEST_CASE("scheme is case-insensitive") {
    const auto url = parseUrl("HTTPS://Example.com/Path");
    REQUIRE(url);
    CHECK(url->scheme == "https");
    CHECK(url->target == "/Path");
}

TEST_CASE("bracketed IPv6 hosts") {
    auto url = parseUrl("http://[::1]:8080/hook/abc");
    REQUIRE(url);
    CHECK(url->host == "::1");
    CHECK(url->port == 8080);
    CHECK(url->target == "/hook/abc");
    CHECK(url->hostHeader() == "[::1]:8080");
    CHECK(url->toString() == "http://[::1]:8080/hook/abc");

    url = parseUrl("https://[2001:db8::5]");
    REQUIRE(url);
    CHECK(url->host == "2001:db8::5");
    CHECK(url->port == 443);
    CHECK(url->hostHeader() == "[2001:db8::5]");
}

TEST_CASE("IPv4 hosts") {
    const auto url = parseUrl("http://127.0.0.1:9093");
    REQUIRE(url);
    CHECK(url->host == "127.0.0.1");
    CHECK(url->port == 9093);
}

TEST_CASE("rejects anything but an absolute http(s) URL with a host") {
    for (const char* text : {
             "",
             "example.com",
             "/api/v2/alerts",
             "ftp://example.com/",
             "ssh://git@github.com/a/b",
             "git@github.com:a/b.git",
             "http://",
             "http:///path",
             "http://:8080/",
             "http://example.com:0/",
             "http://example.com:65536/",
             "http://example.com:80a/",
             "http://example.com:-1/",
             "http://[::1/",
             "http://[::1]x/",
             "http://[]/",
             "http://user:pass@example.com/",
             "http://exa mple.com/",
             "http://example.com/a b",
             "http://example.com/\r\nX: y",
             "http://a<b/",
             "http://a!b/",
             "http://[v1.x]/",
         }) {
        CHECK_MESSAGE(!parseUrl(text), text);
    }
}
