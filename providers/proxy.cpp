// Forward proxy requests: absolute-form targets, CONNECT authorities, Basic proxy credentials.
#include "providers/proxy.hpp"

#include "core/crypto.hpp"

namespace fluxrelay {

std::optional<HttpProxy> targetProxy(const TargetConfig& target) {
    if (!target.proxy) return std::nullopt;
    return HttpProxy{.url = *target.proxy, .credentials = target.proxyCredentials};
}

std::string requestTarget(const Url& url, bool viaProxy) { return viaProxy ? url.toString() : url.target; }

std::string tunnelAuthority(const Url& url) {
    const bool ipv6 = url.host.find(':') != std::string::npos;
    return (ipv6 ? "[" + url.host + "]" : url.host) + ":" + std::to_string(url.port);
}

std::string proxyAuthorization(std::string_view credentials) { return "Basic " + base64Encode(credentials); }

std::string proxyRefusal(const HttpProxy& proxy, int status, std::string_view reason) {
    const std::string named = "proxy " + proxy.url.hostHeader();
    if (status == kProxyAuthenticationRequired) {
        return named + (proxy.credentials.empty() ? " requires authentication (407): set proxyCredentialsFile"
                                                  : " refused credentials (407): check proxyCredentialsFile");
    }
    return named + " answered " + std::to_string(status) + (reason.empty() ? "" : " " + std::string(reason));
}

}  // namespace fluxrelay
