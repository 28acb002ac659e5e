// Typed values out of the configuration's YAML, each problem collected as a diagnostic at its
// file:line:col instead of thrown. The loader's own parts share it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <re2/re2.h>

#include "config/loader.hpp"
#include "core/duration.hpp"

namespace fluxrelay::config_reading {

using Keys = std::span<const std::string_view>;

// A key that only one type of source, target or route may use.
struct TypedKey {
    std::string_view key;
    std::string_view type;
    // Why the other types have no use for it, after their name: "send one request per event".
    std::string_view othersDoNot;
    std::string_view alsoType;  // a second type it applies to; empty: none
};

// One key of a mapping with its value; the key node carries the position of the key text.
struct Entry {
    std::string name;
    YAML::Node key;
    YAML::Node value;
};

// A mapping whose keys were checked against the keys its context knows.
struct Fields {
    YAML::Mark mark;
    std::vector<Entry> entries;

    const Entry* find(std::string_view name) const;
};

// A string item of a list, with where it was written (to point at a dangling reference).
struct Item {
    std::string text;
    YAML::Mark mark;
};

// A string value of a mapping, with where it (and its name) was written.
struct MapItem {
    std::string name;
    std::string value;
    YAML::Mark mark;
    YAML::Mark nameMark;
};

// yaml-cpp places an empty value at the next token, often on another line: point at its key.
YAML::Mark valueMark(const Entry& entry);

std::string inQuotes(std::string_view text);
// " (did you mean 'X'?)" when one of `known` is close to `name` (closestMatch), else "".
std::string didYouMean(std::string_view name, std::span<const std::string_view> known);

template <class T>
void set(T& out, std::optional<T> value) {
    if (value) out = std::move(*value);
}

template <class T>
void setNumber(T& out, std::optional<std::int64_t> value) {
    if (value) out = static_cast<T>(*value);
}

// Reads typed values out of YAML nodes, expanding ${ENV} and collecting every diagnostic.
class Reader {
public:
    enum class Scope {
        full,
        // The text alone: no file it names is read, no ${ENV} expanded. A value that uses one is
        // taken as absent, and a secret file as holding a secret.
        textOnly,
    };

    // `folder` anchors the relative file names the configuration gives.
    Reader(std::string file, std::filesystem::path folder, Scope scope = Scope::full);

    Scope scope() const { return scope_; }

    // The one document of `text`; nullopt, with why, when there is nothing to go on with.
    std::optional<YAML::Node> document(const std::string& text);

    void error(const YAML::Mark& mark, std::string message);
    void warning(const YAML::Mark& mark, std::string message);

    std::vector<std::string> takeWarnings();
    // Sorted by position, so that the list reads top to bottom like the file.
    std::vector<ConfigDiagnostic> takeDiagnostics();

    // The mapping's entries; unknown and repeated keys are reported and left out.
    std::optional<Fields> mapping(const YAML::Node& node, const YAML::Mark& mark, std::string_view context, Keys keys,
                                  std::span<const TypedKey> typedKeys = {});
    std::optional<Fields> mapping(const Entry& entry, std::string_view context, Keys keys);

    // Keys present that belong to another type than `type`; `describe` words the type ("flux sources").
    void checkApplicable(const Fields& fields, std::span<const TypedKey> typedKeys, std::string_view type,
                         const std::function<std::string(std::string_view)>& describe);

    // ${NAME} → the variable's value. Every unset variable is reported; nullopt if any was (or,
    // with Scope::textOnly, if the text uses any).
    std::optional<std::string> expand(std::string_view text, const YAML::Mark& mark);
    // A scalar's text, expanded; `what` names it in messages ("'name'").
    std::optional<std::string> scalar(const YAML::Node& node, const YAML::Mark& mark, const std::string& what);
    std::optional<std::string> string(const Fields& fields, std::string_view key);
    // An optional key that, when given, must not be empty.
    std::optional<std::string> nonEmpty(const Fields& fields, std::string_view key);
    // False, and reported at the mapping, when `key` is missing.
    bool present(const Fields& fields, std::string_view key, std::string_view context);
    // A key that must be present and not empty.
    std::optional<std::string> required(const Fields& fields, std::string_view key, std::string_view context);

    // One of the spelled-out `choices`; the error lists them.
    template <class Enum>
    std::optional<Enum> choice(const Fields& fields, std::string_view key,
                               std::initializer_list<std::pair<std::string_view, Enum>> choices) {
        std::optional<std::string> text = string(fields, key);
        if (!text) return std::nullopt;
        std::string names;
        std::vector<std::string_view> known;
        for (const auto& [name, value] : choices) {
            if (*text == name) return value;
            names += (names.empty() ? "" : ", ") + std::string(name);
            known.push_back(name);
        }
        error(valueMark(*fields.find(key)), "invalid " + std::string(key) + " " + inQuotes(*text) +
                                                didYouMean(*text, known) + " (one of: " + names + ")");
        return std::nullopt;
    }

    // A choice the mapping must make.
    template <class Enum>
    std::optional<Enum> requiredChoice(const Fields& fields, std::string_view key, std::string_view context,
                                       std::initializer_list<std::pair<std::string_view, Enum>> choices) {
        if (!present(fields, key, context)) return std::nullopt;
        return choice<Enum>(fields, key, choices);
    }

    // YAML 1.2 booleans only: "yes"/"on" are strings there, and a typo should not read as false.
    std::optional<bool> boolean(const Fields& fields, std::string_view key);
    std::optional<std::int64_t> integer(const Fields& fields, std::string_view key, std::int64_t min,
                                        std::int64_t max = std::numeric_limits<std::int64_t>::max());
    std::optional<Duration> duration(const Fields& fields, std::string_view key, bool mayBeZero);
    // RE2's (Go's regexp) syntax; an invalid pattern is reported with RE2's reason.
    std::shared_ptr<const re2::RE2> regex(const std::string& pattern, const YAML::Mark& mark);

    std::optional<std::vector<YAML::Node>> sequence(const Entry& entry);
    std::optional<std::vector<Item>> stringList(const Fields& fields, std::string_view key);
    std::optional<std::vector<std::string>> strings(const Fields& fields, std::string_view key);
    // name → value, in the file's order; values are expanded, names are taken as written.
    std::optional<std::vector<MapItem>> stringMapItems(const Fields& fields, std::string_view key);
    std::optional<std::vector<std::pair<std::string, std::string>>> stringMap(const Fields& fields,
                                                                              std::string_view key);

    // Files are named relative to the config file's folder, so a config and its secrets move together.
    std::string resolve(const std::string& path) const;

private:
    std::string file_;
    std::filesystem::path folder_;
    Scope scope_;
    std::vector<ConfigDiagnostic> diagnostics_;
    std::vector<std::string> warnings_;
};

}  // namespace fluxrelay::config_reading
