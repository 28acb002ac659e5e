// Parsing the addresses a configuration names: IP endpoints by hand, URLs with Boost.URL.
#include "config/addresses.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <system_error>

#include <boost/url.hpp>

#include "config/yaml_reader.hpp"

namespace fluxrelay::config_reading {

namespace urls = boost::urls;

std::optional<Endpoint> parseEndpoint(std::string_view text) {
    std::string_view host;
    std::string_view port;
    if (text.starts_with('[')) {
        const std::size_t close = text.find(']');
        if (close == std::string_view::npos || text.substr(close + 1, 1) != ":") return std::nullopt;
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
        unsigned char address[16];
        if (inet_pton(AF_INET6, std::string(host).c_str(), address) != 1) return std::nullopt;
    } else {
        const std::size_t colon = text.rfind(':');
        if (colon == std::string_view::npos) return std::nullopt;
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (host.empty()) host = "0.0.0.0";
        if (host == "localhost") host = "127.0.0.1";
        unsigned char address[4];
        if (inet_pton(AF_INET, std::string(host).c_str(), address) != 1) return std::nullopt;
    }
    unsigned value = 0;
    const auto [stop, problem] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || problem != std::errc{} || stop != port.data() + port.size() || value > 65535) {
        return std::nullopt;
    }
    return Endpoint{std::string(host), static_cast<std::uint16_t>(value)};
}

std::optional<Url> parseGitHubAddress(std::string_view text) {
    std::string https(text);
    if (const auto ssh = urls::parse_uri(text); ssh && ssh->scheme() == "ssh") {
        urls::url url(*ssh);
        // The user is ssh's, and the ssh port says nothing about the API's.
        url.remove_userinfo().remove_port().set_scheme_id(urls::scheme::https);
        https = url.buffer();
    } else if (text.find("://") == std::string_view::npos) {
        // scp's `user@host:path`, which is no URL.
        const std::size_t at = text.find('@');
        const std::size_t colon = text.find(':', at == std::string_view::npos ? 0 : at);
        if (at == std::string_view::npos || colon == std::string_view::npos) return std::nullopt;
        https =
            "https://" + std::string(text.substr(at + 1, colon - at - 1)) + "/" + std::string(text.substr(colon + 1));
    }
    std::optional<Url> url = parseUrl(https);
    if (!url) return std::nullopt;
    // The path must name a repository: at least /owner/repo.
    const auto target = urls::parse_origin_form(url->target);
    if (!target) return std::nullopt;
    const urls::segments_encoded_view segments = target->encoded_segments();
    if (std::count_if(segments.begin(), segments.end(), [](urls::pct_string_view s) { return !s.empty(); }) < 2) {
        return std::nullopt;
    }
    return url;
}

bool parseRedisUrl(std::string_view text, RedisConfig& redis, std::string& why) {
    if (text.starts_with("rediss://")) {
        why = "TLS to Redis is not supported; use redis:// on a trusted network";
        return false;
    }
    const auto url = urls::parse_uri(text);
    // After the host only a database number: "host:6379x" reads in Boost 1.81 as a path "x".
    if (!url || url->scheme() != "redis" || !url->has_authority() || url->has_query() || url->has_fragment() ||
        (!url->encoded_path().empty() && !url->encoded_path().starts_with('/'))) {
        why = "expected redis://HOST:PORT/DB";
        return false;
    }
    if (url->has_userinfo()) {
        why = "credentials do not belong in the url: use username and passwordFile";
        return false;
    }
    if (url->encoded_host_address().empty()) {
        why = "no host";
        return false;
    }
    redis.host = url->encoded_host_address();
    if (!url->port().empty()) {
        // Zero both for port 0 and for a number past 65535.
        if (url->port_number() == 0) {
            why = "invalid port " + inQuotes(url->port());
            return false;
        }
        redis.port = url->port_number();
    }
    const std::string_view path = url->encoded_path();
    if (const std::string_view database = path.empty() ? path : path.substr(1); !database.empty()) {
        int value = 0;
        const auto [stop, problem] = std::from_chars(database.data(), database.data() + database.size(), value);
        if (problem != std::errc{} || stop != database.data() + database.size() || value < 0) {
            why = "invalid database number " + inQuotes(database);
            return false;
        }
        redis.database = value;
    }
    return true;
}

// By hand, not with a URL parser: the text is quoted because it is no valid URL, and a password
// with an unencoded '@' or ':' in it makes exactly such a text.
std::string quotedUrl(std::string_view text) {
    const std::size_t scheme = text.find("://");
    if (scheme == std::string_view::npos) return inQuotes(text);
    const std::size_t start = scheme + 3;
    const std::string_view authority = text.substr(start, text.find_first_of("/?#", start) - start);
    const std::size_t at = authority.rfind('@');
    if (at == std::string_view::npos) return inQuotes(text);
    return inQuotes(std::string(text.substr(0, start)) + "<redacted>" + std::string(text.substr(start + at)));
}

}  // namespace fluxrelay::config_reading
