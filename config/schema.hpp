// The configuration's shape, written down once: the loader takes every mapping's keys (and which
// type of source, target or route each belongs to) from here, and `fluxrelay schema` prints the
// same description as a JSON Schema for editors and CI. A key added to one is in the other.
// What JSON Schema cannot say (a route naming a missing target, a key that depends on the
// source a route names, files and their permissions) the loader alone checks.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/yaml_reader.hpp"

namespace fluxrelay::config_schema {

enum class Kind {
    string,
    nonEmpty,  // a string that must not be empty
    boolean,
    integer,   // within [min, max]
    duration,  // Go's form: 30s, 5m, 1h30m
    choice,    // one of `choices`
    stringList,
    stringMap,    // name → string
    mapping,      // `section`
    mappingList,  // a list of `section`
};

struct Section;

struct Key {
    std::string_view name;
    Kind kind = Kind::string;
    std::string_view description;
    bool required = false;
    const Section* section = nullptr;                             // mapping, mappingList
    std::span<const std::string_view> choices{};                  // choice
    std::int64_t min = std::numeric_limits<std::int64_t>::min();  // integer
    std::int64_t max = std::numeric_limits<std::int64_t>::max();
    // The one type of source or target (for a route: of its source) whose key this is, and why the
    // others have no use for it ("send one request per event"); empty: every type's.
    std::string_view onlyFor{};
    std::string_view othersDoNot{};
    std::string_view alsoFor{};  // a second type whose key it is too (the GitHub App: both GitHub targets)
    // stringMap: the form its names must have (a regular expression) and the names it may not use.
    std::string_view namePattern{};
    std::span<const std::string_view> reservedNames{};
};

struct Section {
    std::string_view name;  // as messages and the schema's $defs name it
    std::string_view description;
    std::span<const Key> keys;
    // The key whose value is the type the `onlyFor` keys depend on ("type"); empty where the type
    // is not in the mapping itself (a route's comes from its source).
    std::string_view typeKey{};
};

extern const Section kConfiguration, kServer, kListenerTls, kAdmin, kStorage, kRedis, kSource, kRateLimit, kTarget,
    kRetry, kGitHubApp, kReceiver, kResource, kRoute, kEventSource, kMatch, kDedup;

// The keys every type may use, for Reader::mapping.
std::vector<std::string_view> keysOf(const Section& section);
// The keys of one type only, for Reader::mapping and Reader::checkApplicable.
std::vector<config_reading::TypedKey> typedKeysOf(const Section& section);

// The whole description as a JSON Schema, draft 2020-12.
nlohmann::json jsonSchema();

}  // namespace fluxrelay::config_schema
