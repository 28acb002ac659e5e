// Forward proxy requests: which request-target goes on the wire, what CONNECT asks for, the
// Proxy-Authorization header, and how a proxy's refusal reads.
#include "providers/proxy.hpp"

#include <doctest/doctest.h>

#include <string>

namespace fluxrelay {
namespace {

HttpProxy proxyAt(std::string url, std::string credentials = {}) {
    return HttpProxy{.url = *parseUrl(url), .credentials = std::move(credentials)};
}

}  // namespace

TEST_CASE("a proxy is sent the whole URL, the origin only its path and query") {
    const Url url = *parseUrl("http://alertmanager.monitoring:9093/api/v2/alerts?x=1");
    CHECK(requestTarget(url, false) == "/api/v2/alerts?x=1");
    CHECK(requestTarget(url, true) == "http://alertmanager.monitoring:9093/api/v2/alerts?x=1");
    // The default port is left out, as in the Host header.
    CHECK(requestTarget(*parseUrl("http://am/"), true) == "http://am/");
}

TEST_CASE("CONNECT names the origin's host and port, the port always") {
    CHECK(tunnelAuthority(*parseUrl("https://api.github.com/repos/o/r/statuses/abc")) == "api.github.com:443");
    CHECK(tunnelAuthority(*parseUrl("https://127.0.0.1:8443/")) == "127.0.0.1:8443");
    CHECK(tunnelAuthority(*parseUrl("https://[::1]:9093/")) == "[::1]:9093");
}

TEST_CASE("proxy credentials are sent as Basic") {
    // printf '%s' 'relay:pr0xy:pass' | base64: only the first colon separates the username.
    CHECK(proxyAuthorization("relay:pr0xy:pass") == "Basic cmVsYXk6cHIweHk6cGFzcw==");
    CHECK(proxyAuthorization("Aladdin:open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
}

TEST_CASE("a target's proxy carries its credentials; no proxy, none") {
    TargetConfig target;
    CHECK_FALSE(targetProxy(target).has_value());
    target.proxy = parseUrl("http://proxy.corp:3128");
    target.proxyCredentials = "relay:secret";
    const auto proxy = targetProxy(target);
    REQUIRE(proxy.has_value());
    CHECK(proxy->url.hostHeader() == "proxy.corp:3128");
    CHECK(proxy->credentials == "relay:secret");
}

TEST_CASE("a proxy's refusal says whether credentials were missing or refused, never what they are") {
    CHECK(proxyRefusal(proxyAt("http://proxy.corp:3128"), 407, "Proxy Authentication Required") ==
          "proxy proxy.corp:3128 requires authentication (407): set proxyCredentialsFile");
    const std::string refused = proxyRefusal(proxyAt("http://proxy.corp:3128", "relay:secret"), 407, {});
    CHECK(refused == "proxy proxy.corp:3128 refused credentials (407): check proxyCredentialsFile");
    CHECK(refused.find("secret") == std::string::npos);
    CHECK(proxyRefusal(proxyAt("http://proxy.corp:3128"), 403, "Access violation") ==
          "proxy proxy.corp:3128 answered 403 Access violation");
    CHECK(proxyRefusal(proxyAt("http://proxy.corp/"), 502, {}) == "proxy proxy.corp answered 502");
}

}  // namespace fluxrelay
