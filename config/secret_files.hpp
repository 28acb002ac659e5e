// Files the configuration names: read relative to its folder, and a secret's refused or warned
// about by who else may write or read it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "config/yaml_reader.hpp"

namespace fluxrelay::config_reading {

// How a secret file's end is cleaned up: an editor's final newline is never part of a secret, but
// some secrets (an HMAC key) keep any other whitespace.
enum class SecretTrim { trailingWhitespace, oneLineEnding };

// A file read later by someone else (certificates): resolved, and checked now so that
// check-config finds a missing one instead of the first connection.
std::optional<std::string> readableFile(Reader& reader, const Fields& fields, std::string_view key);

// A secret given inline (`inlineKey`, may use ${ENV}) or read from a file (`fileKey`); empty if neither.
// An empty secret is an error: it would silently switch authentication off.
std::string readSecret(Reader& reader, const Fields& fields, std::string_view inlineKey, std::string_view fileKey,
                       SecretTrim trim);

}  // namespace fluxrelay::config_reading
