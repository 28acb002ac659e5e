// A target's forward proxy: what goes on the wire to it, and how its refusals read. Pure: the
// connection that uses it is providers/http_client.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace fluxrelay {

// The status with which a proxy asks for (other) credentials.
inline constexpr int kProxyAuthenticationRequired = 407;

struct HttpProxy {
    Url url;
    std::string credentials;  // "username:password", empty when the proxy takes none
};

// The proxy a target's requests go through, if it has one.
std::optional<HttpProxy> targetProxy(const TargetConfig& target);

// The request line's target: the path alone to the origin itself, the whole URL to a proxy, which
// must learn from it where to forward the request.
std::string requestTarget(const Url& url, bool viaProxy);

// The host:port a CONNECT asks the proxy to open a tunnel to; the port is always written.
std::string tunnelAuthority(const Url& url);

// The Proxy-Authorization value for "username:password" credentials (Basic).
std::string proxyAuthorization(std::string_view credentials);

// Why the proxy did not carry a request: 407 says whether credentials were missing or refused,
// any other status is named with its reason.
std::string proxyRefusal(const HttpProxy& proxy, int status, std::string_view reason);

}  // namespace fluxrelay
