// The embedded status page: self-contained, and served with a policy that admits exactly its own
// inline script and style.
#include <doctest/doctest.h>

#include <string>

#include "admin/status_page.hpp"

namespace fluxrelay {

namespace {
bool contains(std::string_view text, std::string_view needle) { return text.find(needle) != std::string_view::npos; }

std::size_t occurrences(std::string_view text, std::string_view needle) {
    std::size_t count = 0;
    for (auto at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + needle.size())) {
        ++count;
    }
    return count;
}
}  // namespace

TEST_CASE("the policy lists the SHA-256 of every inline script and style") {
    const auto policy =
        contentSecurityPolicyFor("<style>body{margin:0}</style><p>hi</p><script>console.log(1)</script>");
    CHECK(contains(policy, "default-src 'none'"));
    CHECK(contains(policy, "script-src 'sha256-CihokcEcBW4atb/CW/XWsvWwbTjqwQlE9nj9ii5ww5M='"));
    CHECK(contains(policy, "style-src 'sha256-IAdwN3biDCQ3brrgp1m8kBEsPQYyqfREKOEfeoREopc='"));
    CHECK(contains(policy, "connect-src 'self'"));
    CHECK_FALSE(contains(policy, "unsafe-inline"));
}

TEST_CASE("a page without inline script allows none") {
    const auto policy = contentSecurityPolicyFor("<p>static</p>");
    CHECK(contains(policy, "script-src 'none'"));
    CHECK(contains(policy, "style-src 'none'"));
}

TEST_CASE("the embedded page is one self-contained document") {
    const auto html = statusPageHtml();
    REQUIRE(html.starts_with("<!doctype html>"));
    CHECK(contains(html, "</html>"));
    // One inline script and one inline style, both covered by the policy.
    CHECK(occurrences(html, "<script>") == 1);
    CHECK(occurrences(html, "<style>") == 1);
    CHECK(occurrences(html, "<script") == 1);
    const auto& policy = statusPageContentSecurityPolicy();
    CHECK(occurrences(policy, "'sha256-") == 2);
    // Nothing loaded from elsewhere: clusters are often offline.
    CHECK_FALSE(contains(html, "src=\"http"));
    CHECK_FALSE(contains(html, "href=\"http"));
    CHECK_FALSE(contains(html, "@import"));
    CHECK_FALSE(contains(html, "url(http"));
    // API text reaches the page through textContent only.
    CHECK_FALSE(contains(html, "innerHTML"));
    CHECK_FALSE(contains(html, "insertAdjacentHTML"));
    CHECK_FALSE(contains(html, "document.write"));
}

}  // namespace fluxrelay
