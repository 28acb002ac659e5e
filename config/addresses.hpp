// Addresses as a configuration writes them: listeners, GitHub repositories, the Redis spool, and
// URLs quoted back in messages.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "core/url.hpp"

namespace fluxrelay::config_reading {

// "host:port", "[v6]:port" or ":port" (every IPv4 interface, as Go reads it). The host must be
// an IP address: the listener binds it as is, and a name would fail only at start-up.
std::optional<Endpoint> parseEndpoint(std::string_view text);

// GitHub repositories are also named by their clone URLs (`git@host:owner/repo`, `ssh://git@host/owner/repo`),
// as in Flux's GitRepository; each becomes the https URL of the repository.
std::optional<Url> parseGitHubAddress(std::string_view text);

// redis://HOST[:PORT][/DB] into `redis`; false, with why, for anything else. Credentials stay out
// of the url: they belong in passwordFile.
bool parseRedisUrl(std::string_view text, RedisConfig& redis, std::string& why);

// A URL quoted in an error: credentials in it (`user:password@`, which URLs here may not carry)
// are not repeated into logs and check-config output.
std::string quotedUrl(std::string_view text);

}  // namespace fluxrelay::config_reading
