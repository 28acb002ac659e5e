// Parsing absolute http(s) URLs for outbound clients: scheme, host, port and request target.
#include "core/url.hpp"

#include <algorithm>
#include <cctype>

#include <boost/url.hpp>

namespace fluxrelay {

namespace urls = boost::urls;

namespace {

std::uint16_t defaultPort(std::string_view scheme) { return scheme == "https" ? 443 : 80; }

// RFC 3986 also allows sub-delimiters ("a!b", "a;b") in a host name; no resolver takes them.
bool validHostName(std::string_view host) {
    return !host.empty() && std::all_of(host.begin(), host.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '%';
    });
}

}  // namespace

std::string Url::hostHeader() const {
    const bool ipv6 = host.find(':') != std::string::npos;
    std::string out = ipv6 ? "[" + host + "]" : host;
    if (port != defaultPort(scheme)) out += ":" + std::to_string(port);
    return out;
}

std::string Url::toString() const { return scheme + "://" + hostHeader() + target; }

std::optional<Url> parseUrl(std::string_view text) {
    const auto parsed = urls::parse_uri(text);
    if (!parsed) return std::nullopt;
    const urls::url_view& view = *parsed;
    Url url;
    if (view.scheme_id() == urls::scheme::http) {
        url.scheme = "http";
    } else if (view.scheme_id() == urls::scheme::https) {
        url.scheme = "https";
    } else {
        return std::nullopt;
    }
    // Userinfo has no place to go in Url; rejecting beats silently dropping credentials.
    if (view.has_userinfo()) return std::nullopt;

    switch (view.host_type()) {
        case urls::host_type::ipv4:
        case urls::host_type::ipv6:
            url.host = view.encoded_host_address();
            break;
        case urls::host_type::name:
            if (!validHostName(view.encoded_host())) return std::nullopt;
            url.host = view.encoded_host();
            break;
        default:
            return std::nullopt;
    }

    url.port = defaultPort(url.scheme);
    // "host:" with nothing after the colon means the default port, as Go's net/url reads it.
    if (!view.port().empty()) {
        // Zero both for port 0 and for a number past 65535.
        if (view.port_number() == 0) return std::nullopt;
        url.port = view.port_number();
    }

    // Boost 1.81 reads "host:80a/" as port 80 and the path "a/": after an authority the path
    // must begin with '/', or the port (or host) held more than it should.
    const std::string_view path = view.encoded_path();
    if (!path.empty() && path.front() != '/') return std::nullopt;
    // The fragment never goes on the wire.
    url.target = view.encoded_target();
    if (path.empty()) url.target.insert(0, "/");
    return url;
}

}  // namespace fluxrelay
