// Splitting an http(s) URL into what a client needs to connect and send.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fluxrelay {

struct Url {
    std::string scheme;  // "http" | "https"
    std::string host;    // without brackets for IPv6
    std::uint16_t port = 0;
    std::string target;  // path and query, "/" when empty

    bool tls() const { return scheme == "https"; }
    // "host:port" as the Host header wants it (port omitted when default for the scheme).
    std::string hostHeader() const;
    std::string toString() const;

    bool operator==(const Url&) const = default;
};

// nullopt for anything but an absolute http(s) URL with a host.
std::optional<Url> parseUrl(std::string_view text);

}  // namespace fluxrelay
