// Parsing absolute http(s) URLs for outbound clients: scheme, host, port and request target.
#include "core/url.hpp"

#include <cctype>

namespace fluxrelay {

namespace {

std::string lower(std::string_view text) {
    std::string out(text);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::uint16_t defaultPort(std::string_view scheme) { return scheme == "https" ? 443 : 80; }

// Whitespace and control bytes would end up in the request line or Host header.
bool hasUnsafeByte(std::string_view text) {
    for (unsigned char c : text) {
        if (c <= 0x20 || c == 0x7f) return true;
    }
    return false;
}

bool validHostName(std::string_view host) {
    if (host.empty()) return false;
    for (unsigned char c : host) {
        if (!(std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '%' || c >= 0x80)) return false;
    }
    return true;
}

bool validIpv6(std::string_view host) {
    if (host.empty()) return false;
    for (unsigned char c : host) {
        // '%' and the characters after it: a zone id such as "fe80::1%25eth0".
        if (!(std::isalnum(c) || c == ':' || c == '.' || c == '%')) return false;
    }
    return host.find(':') != std::string_view::npos;
}

bool parsePort(std::string_view text, std::uint16_t& out) {
    if (text.empty() || text.size() > 5) return false;
    unsigned value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return false;
    out = static_cast<std::uint16_t>(value);
    return true;
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
    if (hasUnsafeByte(text)) return std::nullopt;
    const std::size_t schemeEnd = text.find("://");
    if (schemeEnd == std::string_view::npos) return std::nullopt;
    Url url;
    url.scheme = lower(text.substr(0, schemeEnd));
    if (url.scheme != "http" && url.scheme != "https") return std::nullopt;

    std::string_view rest = text.substr(schemeEnd + 3);
    // The fragment never goes on the wire.
    rest = rest.substr(0, rest.find('#'));
    const std::size_t authorityEnd = rest.find_first_of("/?");
    const std::string_view authority = rest.substr(0, authorityEnd);
    const std::string_view pathAndQuery = authorityEnd == std::string_view::npos ? "" : rest.substr(authorityEnd);

    // Userinfo has no place to go in Url; rejecting beats silently dropping credentials.
    if (authority.find('@') != std::string_view::npos) return std::nullopt;

    std::string_view host;
    std::string_view portText;
    bool hasPort = false;
    if (!authority.empty() && authority.front() == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        host = authority.substr(1, close - 1);
        if (!validIpv6(host)) return std::nullopt;
        const std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return std::nullopt;
            hasPort = true;
            portText = after.substr(1);
        }
    } else {
        const std::size_t colon = authority.find(':');
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos) {
            hasPort = true;
            portText = authority.substr(colon + 1);
        }
        if (!validHostName(host)) return std::nullopt;
    }
    url.host = std::string(host);

    url.port = defaultPort(url.scheme);
    // "host:" with nothing after the colon means the default port, as Go's net/url reads it.
    if (hasPort && !portText.empty() && !parsePort(portText, url.port)) return std::nullopt;

    if (pathAndQuery.empty()) {
        url.target = "/";
    } else if (pathAndQuery.front() == '?') {
        url.target = "/" + std::string(pathAndQuery);
    } else {
        url.target = std::string(pathAndQuery);
    }
    return url;
}

}  // namespace fluxrelay
