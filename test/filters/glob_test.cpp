// Unit tests for globMatch: the glob language of eventSources and branches.
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "filters/glob.hpp"

using fluxrelay::globMatch;

TEST_CASE("glob: literals match only themselves") {
    CHECK(globMatch("flux-system", "flux-system"));
    CHECK_FALSE(globMatch("flux-system", "flux-system2"));
    CHECK_FALSE(globMatch("flux-system", "flux-syste"));
    CHECK_FALSE(globMatch("Apps", "apps"));  // Kubernetes names are case-sensitive
    CHECK(globMatch("", ""));
    CHECK_FALSE(globMatch("", "a"));
}

TEST_CASE("glob: * matches any run, including empty and slashes") {
    CHECK(globMatch("*", ""));
    CHECK(globMatch("*", "anything/at/all"));
    CHECK(globMatch("apps-*", "apps-"));
    CHECK(globMatch("apps-*", "apps-frontend"));
    CHECK_FALSE(globMatch("apps-*", "app-frontend"));
    CHECK(globMatch("*-system", "flux-system"));
    CHECK(globMatch("release/*", "release/2024/q1"));
    CHECK(globMatch("refs/tags/v*", "refs/tags/v1.2.3"));
    CHECK(globMatch("a*b*c", "abc"));
    CHECK(globMatch("a*b*c", "a-b-b-c"));
    CHECK_FALSE(globMatch("a*b*c", "a-b-b-c-d"));
    CHECK(globMatch("**", "x"));
}

TEST_CASE("glob: ? matches exactly one character") {
    CHECK(globMatch("v?", "v1"));
    CHECK_FALSE(globMatch("v?", "v"));
    CHECK_FALSE(globMatch("v?", "v12"));
    CHECK(globMatch("app?-*", "app1-x"));
    // One character, not one byte: "é" is two bytes in UTF-8.
    CHECK(globMatch("caf?", "caf\xC3\xA9"));
    CHECK_FALSE(globMatch("caf??", "caf\xC3\xA9"));
    CHECK(globMatch("*?", "\xC3\xA9"));
}

TEST_CASE("glob: no character classes; brackets are literal") {
    CHECK(globMatch("[ab]", "[ab]"));
    CHECK_FALSE(globMatch("[ab]", "a"));
}

TEST_CASE("glob: a pathological pattern stays linear-ish, not exponential") {
    const std::string text(20000, 'a');
    const std::string pattern = "a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
    const auto start = std::chrono::steady_clock::now();
    CHECK_FALSE(globMatch(pattern, text));
    CHECK(globMatch(pattern.substr(0, pattern.size() - 1), text));
    const auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(elapsed < std::chrono::seconds(2));
}
