// YAML → Config: strict parsing and validation that reports every problem as file:line:col.
#include "config/loader.hpp"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cassert>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>
#include <set>
#include <span>
#include <sstream>
#include <system_error>
#include <tuple>

namespace fluxrelay {

std::string ConfigDiagnostic::toString() const {
    return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

namespace {

std::string joinDiagnostics(const std::vector<ConfigDiagnostic>& diagnostics) {
    std::string text;
    for (const ConfigDiagnostic& diagnostic : diagnostics) {
        if (!text.empty()) text += '\n';
        text += diagnostic.toString();
    }
    return text;
}

}  // namespace

ConfigError::ConfigError(std::vector<ConfigDiagnostic> diagnostics)
    : std::runtime_error(joinDiagnostics(diagnostics)), diagnostics_(std::move(diagnostics)) {}

const SourceConfig* Config::sourceByPath(std::string_view path) const {
    for (const SourceConfig& source : sources) {
        if (source.path == path) return &source;
    }
    return nullptr;
}

const SourceConfig* Config::sourceByName(std::string_view name) const {
    for (const SourceConfig& source : sources) {
        if (source.name == name) return &source;
    }
    return nullptr;
}

const TargetConfig* Config::targetByName(std::string_view name) const {
    for (const TargetConfig& target : targets) {
        if (target.name == name) return &target;
    }
    return nullptr;
}

std::string_view toString(SourceType type) {
    switch (type) {
        case SourceType::flux:
            return "flux";
        case SourceType::github:
            return "github";
    }
    return "unknown";
}

std::string_view toString(TargetType type) {
    switch (type) {
        case TargetType::alertmanager:
            return "alertmanager";
        case TargetType::github:
            return "github";
        case TargetType::fluxReceiver:
            return "flux-receiver";
        case TargetType::kubernetes:
            return "kubernetes";
    }
    return "unknown";
}

std::string_view toString(DedupMode mode) {
    switch (mode) {
        case DedupMode::none:
            return "none";
        case DedupMode::flux:
            return "flux";
        case DedupMode::normalized:
            return "normalized";
        case DedupMode::transitions:
            return "transitions";
    }
    return "unknown";
}

std::string_view toString(MatchField field) {
    switch (field) {
        case MatchField::reason:
            return "reason";
        case MatchField::kind:
            return "kind";
        case MatchField::name:
            return "name";
        case MatchField::namespace_:
            return "namespace";
        case MatchField::reportingController:
            return "reportingController";
        case MatchField::metadata:
            return "metadata";
    }
    return "unknown";
}

namespace {

namespace fs = std::filesystem;

using Keys = std::initializer_list<std::string_view>;

// A key that only one type of source, target or route may use.
struct TypedKey {
    std::string_view key;
    std::string_view type;
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

    const Entry* find(std::string_view name) const {
        for (const Entry& entry : entries) {
            if (entry.name == name) return &entry;
        }
        return nullptr;
    }
};

// A string item of a list, with where it was written (to point at a dangling reference).
struct Item {
    std::string text;
    YAML::Mark mark;
};

// A string value of a mapping, with where it was written.
struct MapItem {
    std::string name;
    std::string value;
    YAML::Mark mark;
};

// yaml-cpp places an empty value at the next token, often on another line: point at its key.
YAML::Mark valueMark(const Entry& entry) { return entry.value.IsNull() ? entry.key.Mark() : entry.value.Mark(); }

std::string inQuotes(std::string_view text) { return "'" + std::string(text) + "'"; }

// A URL quoted in an error: credentials in it (`user:password@`, which URLs here may not carry)
// are not repeated into logs and check-config output.
std::string quotedUrl(std::string_view text) {
    const std::size_t scheme = text.find("://");
    if (scheme == std::string_view::npos) return inQuotes(text);
    const std::size_t start = scheme + 3;
    const std::string_view authority = text.substr(start, text.find_first_of("/?#", start) - start);
    const std::size_t at = authority.rfind('@');
    if (at == std::string_view::npos) return inQuotes(text);
    return inQuotes(std::string(text.substr(0, start)) + "<redacted>" + std::string(text.substr(start + at)));
}

bool sameIgnoringCase(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

bool validEnvName(std::string_view name) {
    if (name.empty() || std::isdigit(static_cast<unsigned char>(name.front()))) return false;
    return std::all_of(name.begin(), name.end(),
                       [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

struct FileCloser {
    void operator()(std::FILE* file) const { std::fclose(file); }
};

std::optional<std::string> readWholeFile(const std::string& path, std::string& why) {
    std::error_code ignored;
    if (fs::is_directory(path, ignored)) {
        why = "is a directory";
        return std::nullopt;
    }
    const std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
    if (!file) {
        why = std::generic_category().message(errno);
        return std::nullopt;
    }
    std::string content;
    char buffer[4096];
    std::size_t count = 0;
    while ((count = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) content.append(buffer, count);
    if (std::ferror(file.get())) {
        why = "read error";
        return std::nullopt;
    }
    return content;
}

// Who else may touch a secret file. Refused: a file every user may write, since whoever rewrites
// it can forge events or capture tokens. Warned about: one others may read, or the group may
// write. Nothing is said for a file on a read-only file system: Kubernetes mounts Secrets
// read-only, 0644 by default and through symlinks (followed here), and that is the usual case.
struct SecretFileExposure {
    std::string refusal;
    std::string warning;
};

SecretFileExposure secretFileExposure(const std::string& path) {
    struct stat info {};
    struct statvfs volume {};
    if (::stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) return {};
    if (::statvfs(path.c_str(), &volume) == 0 && (volume.f_flag & ST_RDONLY) != 0) return {};
    const unsigned mode = info.st_mode & 07777;
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", mode);
    const std::string shown = " (mode " + std::string(octal) + ")";
    if ((mode & S_IWOTH) != 0) {
        return {.refusal = "is writable by every user" + shown + ": anyone on this host could replace it; chmod o-w",
                .warning = {}};
    }
    if ((mode & S_IWGRP) != 0) {
        return {.refusal = {},
                .warning = "is writable by its group" + shown + "; chmod g-w unless that group is trusted"};
    }
    if ((mode & S_IROTH) != 0) {
        return {.refusal = {}, .warning = "is readable by every user" + shown + "; chmod 600 (or o-r)"};
    }
    return {};
}

// How a secret file's end is cleaned up; see Reader::secret.
enum class SecretTrim { trailingWhitespace, oneLineEnding };

void trimSecret(std::string& secret, SecretTrim trim) {
    if (trim == SecretTrim::trailingWhitespace) {
        while (!secret.empty() && std::isspace(static_cast<unsigned char>(secret.back()))) secret.pop_back();
        return;
    }
    if (secret.ends_with("\r\n")) {
        secret.resize(secret.size() - 2);
    } else if (secret.ends_with('\n')) {
        secret.pop_back();
    }
}

// Reads typed values out of YAML nodes, expanding ${ENV} and collecting every diagnostic.
class Reader {
public:
    Reader(std::string file, fs::path folder) : file_(std::move(file)), folder_(std::move(folder)) {}

    void error(const YAML::Mark& mark, std::string message) {
        diagnostics_.push_back({file_, std::max(mark.line, 0) + 1, std::max(mark.column, 0) + 1, std::move(message)});
    }

    void warning(const YAML::Mark& mark, std::string message) {
        warnings_.push_back(
            ConfigDiagnostic{file_, std::max(mark.line, 0) + 1, std::max(mark.column, 0) + 1, std::move(message)}
                .toString());
    }

    std::vector<std::string> takeWarnings() { return std::move(warnings_); }

    // A file holding a secret: refused or warned about by who else may write or read it.
    void checkSecretFile(const Entry& entry, std::string_view key, const std::string& path) {
        const SecretFileExposure exposure = secretFileExposure(path);
        if (!exposure.refusal.empty())
            error(entry.key.Mark(), std::string(key) + " " + inQuotes(path) + " " + exposure.refusal);
        if (!exposure.warning.empty())
            warning(entry.key.Mark(), std::string(key) + " " + inQuotes(path) + " " + exposure.warning);
    }

    // Sorted by position, so that the list reads top to bottom like the file.
    std::vector<ConfigDiagnostic> takeDiagnostics() {
        std::stable_sort(diagnostics_.begin(), diagnostics_.end(), [](const auto& a, const auto& b) {
            return std::tie(a.line, a.column) < std::tie(b.line, b.column);
        });
        return std::move(diagnostics_);
    }

    // The mapping's entries; unknown and repeated keys are reported and left out.
    std::optional<Fields> mapping(const YAML::Node& node, const YAML::Mark& mark, std::string_view context, Keys keys,
                                  std::span<const TypedKey> typedKeys = {}) {
        if (!node.IsMap()) {
            error(mark, "expected a mapping for " + std::string(context));
            return std::nullopt;
        }
        auto known = [&](std::string_view name) {
            return std::find(keys.begin(), keys.end(), name) != keys.end() ||
                   std::any_of(typedKeys.begin(), typedKeys.end(), [&](const TypedKey& k) { return k.key == name; });
        };
        Fields fields{node.Mark(), {}};
        // By value: yaml-cpp's iterator hands out temporaries, which a reference would outlive.
        for (const auto& pair : node) {
            const YAML::Node key = pair.first;
            if (!key.IsScalar()) {
                error(key.Mark(), "keys in " + std::string(context) + " must be strings");
            } else if (!known(key.Scalar())) {
                error(key.Mark(), unknownKeyMessage(key.Scalar(), context, keys, typedKeys));
            } else if (fields.find(key.Scalar()) != nullptr) {
                error(key.Mark(), "duplicate key " + inQuotes(key.Scalar()) + " in " + std::string(context));
            } else {
                fields.entries.push_back({key.Scalar(), key, pair.second});
            }
        }
        return fields;
    }

    std::optional<Fields> mapping(const Entry& entry, std::string_view context, Keys keys) {
        return mapping(entry.value, valueMark(entry), context, keys);
    }

    // Keys present that belong to another type than `type`; `describe` words the type ("flux sources").
    void checkApplicable(const Fields& fields, std::span<const TypedKey> typedKeys, std::string_view type,
                         const std::function<std::string(std::string_view)>& describe) {
        for (const TypedKey& typed : typedKeys) {
            const Entry* entry = fields.find(typed.key);
            if (entry != nullptr && typed.type != type) {
                error(entry->key.Mark(), inQuotes(typed.key) + " applies only to " + describe(typed.type));
            }
        }
    }

    // ${NAME} → the variable's value. Every unset variable is reported; nullopt if any was.
    std::optional<std::string> expand(std::string_view text, const YAML::Mark& mark) {
        std::string out;
        bool ok = true;
        std::size_t position = 0;
        for (;;) {
            const std::size_t open = text.find("${", position);
            if (open == std::string_view::npos) break;
            const std::size_t close = text.find('}', open + 2);
            if (close == std::string_view::npos) {
                error(mark, "unterminated '${' (expected '${NAME}')");
                return std::nullopt;
            }
            out.append(text.substr(position, open - position));
            const std::string name(text.substr(open + 2, close - open - 2));
            const char* value = validEnvName(name) ? std::getenv(name.c_str()) : nullptr;
            if (!validEnvName(name)) {
                error(mark, "invalid environment variable name " + inQuotes(name));
                ok = false;
            } else if (value == nullptr) {
                error(mark, "environment variable " + inQuotes(name) + " is not set");
                ok = false;
            } else {
                out += value;
            }
            position = close + 1;
        }
        out.append(text.substr(position));
        if (!ok) return std::nullopt;
        return out;
    }

    // A scalar's text, expanded; `what` names it in messages ("'name'").
    std::optional<std::string> scalar(const YAML::Node& node, const YAML::Mark& mark, const std::string& what) {
        if (node.IsNull()) {
            error(mark, what + " has no value");
            return std::nullopt;
        }
        if (!node.IsScalar()) {
            error(mark, "expected a string for " + what);
            return std::nullopt;
        }
        return expand(node.Scalar(), mark);
    }

    std::optional<std::string> string(const Fields& fields, std::string_view key) {
        const Entry* entry = fields.find(key);
        if (entry == nullptr) return std::nullopt;
        return scalar(entry->value, valueMark(*entry), inQuotes(key));
    }

    // An optional key that, when given, must not be empty.
    std::optional<std::string> nonEmpty(const Fields& fields, std::string_view key) {
        std::optional<std::string> value = string(fields, key);
        if (value && value->empty()) {
            error(valueMark(*fields.find(key)), inQuotes(key) + " must not be empty");
            return std::nullopt;
        }
        return value;
    }

    // False, and reported at the mapping, when `key` is missing.
    bool present(const Fields& fields, std::string_view key, std::string_view context) {
        if (fields.find(key) != nullptr) return true;
        error(fields.mark, "missing required key " + inQuotes(key) + " in " + std::string(context));
        return false;
    }

    // A key that must be present and not empty.
    std::optional<std::string> required(const Fields& fields, std::string_view key, std::string_view context) {
        if (!present(fields, key, context)) return std::nullopt;
        return nonEmpty(fields, key);
    }

    // One of the spelled-out `choices`; the error lists them.
    template <class Enum>
    std::optional<Enum> choice(const Fields& fields, std::string_view key,
                               std::initializer_list<std::pair<std::string_view, Enum>> choices) {
        std::optional<std::string> text = string(fields, key);
        if (!text) return std::nullopt;
        std::string names;
        for (const auto& [name, value] : choices) {
            if (*text == name) return value;
            names += (names.empty() ? "" : ", ") + std::string(name);
        }
        error(valueMark(*fields.find(key)),
              "invalid " + std::string(key) + " " + inQuotes(*text) + " (one of: " + names + ")");
        return std::nullopt;
    }

    // YAML 1.2 booleans only: "yes"/"on" are strings there, and a typo should not read as false.
    std::optional<bool> boolean(const Fields& fields, std::string_view key) {
        std::optional<std::string> text = string(fields, key);
        if (!text) return std::nullopt;
        if (*text == "true" || *text == "True" || *text == "TRUE") return true;
        if (*text == "false" || *text == "False" || *text == "FALSE") return false;
        error(valueMark(*fields.find(key)), "expected true or false for " + inQuotes(key));
        return std::nullopt;
    }

    std::optional<std::int64_t> integer(const Fields& fields, std::string_view key, std::int64_t min,
                                        std::int64_t max = std::numeric_limits<std::int64_t>::max()) {
        std::optional<std::string> text = string(fields, key);
        if (!text) return std::nullopt;
        const YAML::Mark mark = valueMark(*fields.find(key));
        std::int64_t value = 0;
        const char* end = text->data() + text->size();
        const auto [stop, problem] = std::from_chars(text->data(), end, value);
        if (problem != std::errc{} || stop != end) {
            error(mark, "expected an integer for " + inQuotes(key));
            return std::nullopt;
        }
        if (value < min || value > max) {
            error(mark,
                  inQuotes(key) + (max == std::numeric_limits<std::int64_t>::max()
                                       ? " must be at least " + std::to_string(min)
                                       : " must be between " + std::to_string(min) + " and " + std::to_string(max)));
            return std::nullopt;
        }
        return value;
    }

    std::optional<Duration> duration(const Fields& fields, std::string_view key, bool mayBeZero) {
        std::optional<std::string> text = string(fields, key);
        if (!text) return std::nullopt;
        const YAML::Mark mark = valueMark(*fields.find(key));
        std::optional<Duration> value = parseDuration(*text);
        if (!value) {
            error(mark,
                  "invalid duration " + inQuotes(*text) + " for " + inQuotes(key) + " (expected e.g. 30s, 5m, 1h30m)");
            return std::nullopt;
        }
        if (!mayBeZero && value->count() == 0) {
            error(mark, inQuotes(key) + " must be longer than 0s");
            return std::nullopt;
        }
        return value;
    }

    std::optional<std::vector<YAML::Node>> sequence(const Entry& entry) {
        if (!entry.value.IsSequence()) {
            error(valueMark(entry), "expected a list for " + inQuotes(entry.name));
            return std::nullopt;
        }
        return std::vector<YAML::Node>(entry.value.begin(), entry.value.end());
    }

    std::optional<std::vector<Item>> stringList(const Fields& fields, std::string_view key) {
        const Entry* entry = fields.find(key);
        if (entry == nullptr) return std::nullopt;
        std::optional<std::vector<YAML::Node>> nodes = sequence(*entry);
        if (!nodes) return std::nullopt;
        std::vector<Item> items;
        for (const YAML::Node& node : *nodes) {
            const YAML::Mark mark = node.IsNull() ? entry->key.Mark() : node.Mark();
            if (std::optional<std::string> text = scalar(node, mark, "an item of " + inQuotes(key))) {
                items.push_back({std::move(*text), mark});
            }
        }
        return items;
    }

    std::optional<std::vector<std::string>> strings(const Fields& fields, std::string_view key) {
        std::optional<std::vector<Item>> items = stringList(fields, key);
        if (!items) return std::nullopt;
        std::vector<std::string> out;
        for (Item& item : *items) out.push_back(std::move(item.text));
        return out;
    }

    // name → value, in the file's order; values are expanded, names are taken as written.
    std::optional<std::vector<MapItem>> stringMapItems(const Fields& fields, std::string_view key) {
        const Entry* entry = fields.find(key);
        if (entry == nullptr) return std::nullopt;
        if (!entry->value.IsMap()) {
            error(valueMark(*entry), "expected a mapping for " + inQuotes(key));
            return std::nullopt;
        }
        std::vector<MapItem> out;
        std::set<std::string> seen;
        for (const auto& pair : entry->value) {
            const YAML::Node name = pair.first;
            const YAML::Node value = pair.second;
            if (!name.IsScalar()) {
                error(name.Mark(), "keys in " + inQuotes(key) + " must be strings");
                continue;
            }
            if (!seen.insert(name.Scalar()).second) {
                error(name.Mark(), "duplicate key " + inQuotes(name.Scalar()) + " in " + inQuotes(key));
                continue;
            }
            const YAML::Mark mark = value.IsNull() ? name.Mark() : value.Mark();
            const std::string what = inQuotes(std::string(key) + "." + name.Scalar());
            if (std::optional<std::string> text = scalar(value, mark, what)) {
                out.push_back({name.Scalar(), std::move(*text), mark});
            }
        }
        return out;
    }

    std::optional<std::vector<std::pair<std::string, std::string>>> stringMap(const Fields& fields,
                                                                              std::string_view key) {
        std::optional<std::vector<MapItem>> items = stringMapItems(fields, key);
        if (!items) return std::nullopt;
        std::vector<std::pair<std::string, std::string>> out;
        for (MapItem& item : *items) out.emplace_back(std::move(item.name), std::move(item.value));
        return out;
    }

    // Files are named relative to the config file's folder, so a config and its secrets move together.
    std::string resolve(const std::string& path) const {
        if (path.empty() || folder_.empty() || fs::path(path).is_absolute()) return path;
        return (folder_ / path).lexically_normal().string();
    }

    // A file read later by someone else (certificates): resolved, and checked now so that
    // check-config finds a missing one instead of the first connection.
    std::optional<std::string> readableFile(const Fields& fields, std::string_view key) {
        std::optional<std::string> path = string(fields, key);
        if (!path) return std::nullopt;
        if (path->empty()) {
            error(valueMark(*fields.find(key)), inQuotes(key) + " must not be empty");
            return std::nullopt;
        }
        const std::string resolved = resolve(*path);
        std::string why;
        if (!readWholeFile(resolved, why)) {
            error(fields.find(key)->key.Mark(), cannotRead(key, resolved, why));
        } else if (key == "keyFile") {
            checkSecretFile(*fields.find(key), key, resolved);
        }
        return resolved;
    }

    // A secret given inline (`inlineKey`, may use ${ENV}) or read from a file (`fileKey`); empty if neither.
    // An empty secret is an error: it would silently switch authentication off.
    std::string secret(const Fields& fields, std::string_view inlineKey, std::string_view fileKey, SecretTrim trim) {
        const Entry* inlineEntry = fields.find(inlineKey);
        const Entry* fileEntry = fields.find(fileKey);
        if (inlineEntry != nullptr && fileEntry != nullptr) {
            const Entry* later = inlineEntry->key.Mark().pos > fileEntry->key.Mark().pos ? inlineEntry : fileEntry;
            error(later->key.Mark(), inQuotes(inlineKey) + " and " + inQuotes(fileKey) + " are mutually exclusive");
            return {};
        }
        if (inlineEntry != nullptr) {
            std::optional<std::string> value = string(fields, inlineKey);
            if (value && value->empty()) error(valueMark(*inlineEntry), inQuotes(inlineKey) + " must not be empty");
            return value.value_or("");
        }
        if (fileEntry == nullptr) return {};
        std::optional<std::string> path = string(fields, fileKey);
        if (!path) return {};
        const std::string resolved = resolve(*path);
        std::string why;
        std::optional<std::string> content = readWholeFile(resolved, why);
        if (!content) {
            error(fileEntry->key.Mark(), cannotRead(fileKey, resolved, why));
            return {};
        }
        checkSecretFile(*fileEntry, fileKey, resolved);
        trimSecret(*content, trim);
        if (content->empty())
            error(fileEntry->key.Mark(), std::string(fileKey) + " " + inQuotes(resolved) + " is empty");
        return *content;
    }

private:
    static std::string cannotRead(std::string_view key, const std::string& path, const std::string& why) {
        return "cannot read " + std::string(key) + " " + inQuotes(path) + ": " + why;
    }

    // A misspelt case ("tokenfile") is the most common unknown key: name the right one.
    static std::string unknownKeyMessage(const std::string& name, std::string_view context, Keys keys,
                                         std::span<const TypedKey> typedKeys) {
        std::string message = "unknown key " + inQuotes(name) + " in " + std::string(context);
        std::vector<std::string_view> all(keys.begin(), keys.end());
        for (const TypedKey& typed : typedKeys) all.push_back(typed.key);
        for (std::string_view key : all) {
            if (sameIgnoringCase(key, name)) return message + " (did you mean " + inQuotes(key) + "?)";
        }
        return message;
    }

    std::string file_;
    fs::path folder_;
    std::vector<ConfigDiagnostic> diagnostics_;
    std::vector<std::string> warnings_;
};

template <class T>
void set(T& out, std::optional<T> value) {
    if (value) out = std::move(*value);
}

template <class T>
void setNumber(T& out, std::optional<std::int64_t> value) {
    if (value) out = static_cast<T>(*value);
}

// "host:port", "[v6]:port" or ":port" (every IPv4 interface, as Go reads it). The host must be
// an IP address: the listener binds it as is, and a name would fail only at start-up.
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

std::optional<Endpoint> listen(Reader& reader, const Fields& fields) {
    std::optional<std::string> text = reader.string(fields, "listen");
    if (!text) return std::nullopt;
    std::optional<Endpoint> endpoint = parseEndpoint(*text);
    if (!endpoint) {
        reader.error(valueMark(*fields.find("listen")), "invalid listen address " + inQuotes(*text) +
                                                            " (expected IP:PORT, e.g. 0.0.0.0:8080 or [::]:8080)");
    }
    return endpoint;
}

// GitHub repositories are also named by their clone URLs (`git@host:owner/repo`, `ssh://git@host/owner/repo`),
// as in Flux's GitRepository; each becomes the https URL of the repository.
std::optional<Url> parseGitHubAddress(std::string_view text) {
    std::string https(text);
    if (text.starts_with("ssh://")) {
        std::string_view rest = text.substr(6);
        const std::size_t slash = rest.find('/');
        if (slash == std::string_view::npos) return std::nullopt;
        std::string_view authority = rest.substr(0, slash);
        authority = authority.substr(authority.find('@') + 1);  // npos + 1 == 0: no user
        authority = authority.substr(0, authority.find(':'));   // the ssh port says nothing about the API's
        https = "https://" + std::string(authority) + std::string(rest.substr(slash));
    } else if (text.find("://") == std::string_view::npos) {
        const std::size_t at = text.find('@');
        const std::size_t colon = text.find(':', at == std::string_view::npos ? 0 : at);
        if (at == std::string_view::npos || colon == std::string_view::npos) return std::nullopt;
        https =
            "https://" + std::string(text.substr(at + 1, colon - at - 1)) + "/" + std::string(text.substr(colon + 1));
    }
    std::optional<Url> url = parseUrl(https);
    if (!url) return std::nullopt;
    // The path must name a repository: at least /owner/repo.
    const std::string path = url->target.substr(0, url->target.find('?'));
    std::size_t segments = 0;
    for (std::size_t i = 0; i < path.size(); ++i) {
        if (path[i] != '/' && (i == 0 || path[i - 1] == '/')) ++segments;
    }
    if (segments < 2) return std::nullopt;
    return url;
}

std::shared_ptr<const re2::RE2> compileRegex(Reader& reader, const std::string& pattern, const YAML::Mark& mark) {
    // Default RE2 syntax (Go's regexp), but no logging of errors: they are reported here, with a position.
    re2::RE2::Options options;
    options.set_log_errors(false);
    auto regex = std::make_shared<const re2::RE2>(pattern, options);
    if (!regex->ok()) {
        reader.error(mark, "invalid regular expression " + inQuotes(pattern) + ": " + regex->error());
        return nullptr;
    }
    return regex;
}

constexpr TypedKey kSourceKeys[] = {
    {"hmacKey", "flux"},      {"hmacKeyFile", "flux"}, {"requiredHeaders", "flux"}, {"secret", "github"},
    {"secretFile", "github"}, {"allowSha1", "github"}, {"events", "github"},
};

constexpr TypedKey kTargetKeys[] = {
    {"resolve", "alertmanager"},
    {"refireInterval", "alertmanager"},
    {"severityMap", "alertmanager"},
    {"context", "github"},
    {"app", "github"},
    {"receiver", "flux-receiver"},
    {"resources", "kubernetes"},
};

constexpr TypedKey kRouteKeys[] = {
    {"eventSeverity", "flux"}, {"eventSources", "flux"},  {"inclusionList", "flux"}, {"exclusionList", "flux"},
    {"match", "flux"},         {"eventMetadata", "flux"}, {"summary", "flux"},       {"dedup", "flux"},
    {"events", "github"},      {"branches", "github"},    {"debounce", "github"},
};

// Builds the Config section by section; sources and targets come first so that routes can
// check what they name, whatever order the file has.
class Parser {
public:
    explicit Parser(Reader& reader) : reader_(reader) {}

    Config parse(const YAML::Node& root) {
        std::optional<Fields> fields = reader_.mapping(root, root.Mark(), "configuration",
                                                       {"server", "admin", "storage", "sources", "targets", "routes"});
        if (!fields) return std::move(config_);
        if (const Entry* entry = fields->find("server")) parseServer(*entry);
        if (const Entry* entry = fields->find("admin")) parseAdmin(*entry);
        if (const Entry* entry = fields->find("storage")) parseStorage(*entry);
        if (const Entry* entry = fields->find("sources")) parseList(*entry, &Parser::parseSource);
        if (const Entry* entry = fields->find("targets")) parseList(*entry, &Parser::parseTarget);
        if (const Entry* entry = fields->find("routes")) parseList(*entry, &Parser::parseRoute);
        return std::move(config_);
    }

private:
    void parseList(const Entry& entry, void (Parser::*parseItem)(const YAML::Node&)) {
        if (std::optional<std::vector<YAML::Node>> items = reader_.sequence(entry)) {
            for (const YAML::Node& item : *items) (this->*parseItem)(item);
        }
    }

    // ---- server, admin, storage

    void parseServer(const Entry& entry) {
        std::optional<Fields> fields = reader_.mapping(entry, "server",
                                                       {"listen", "tls", "maxBodyBytes", "ioThreads", "maxConnections",
                                                        "readTimeout", "idleTimeout", "writeTimeout"});
        if (!fields) return;
        ServerConfig& server = config_.server;
        set(server.listen, listen(reader_, *fields));
        if (const Entry* tls = fields->find("tls")) server.tls = parseListenerTls(*tls, "server.tls");
        setNumber(server.maxBodyBytes, reader_.integer(*fields, "maxBodyBytes", 1));
        setNumber(server.ioThreads, reader_.integer(*fields, "ioThreads", 1, 1024));
        setNumber(server.maxConnections, reader_.integer(*fields, "maxConnections", 1, 1'000'000));
        set(server.readTimeout, reader_.duration(*fields, "readTimeout", false));
        set(server.idleTimeout, reader_.duration(*fields, "idleTimeout", false));
        set(server.writeTimeout, reader_.duration(*fields, "writeTimeout", false));
    }

    // server.tls and admin.tls: `what` names the section in messages.
    std::optional<ServerTls> parseListenerTls(const Entry& entry, std::string_view what) {
        std::optional<Fields> fields = reader_.mapping(entry, what, {"certFile", "keyFile", "clientCAFile"});
        if (!fields) return std::nullopt;
        ServerTls tls;
        reader_.present(*fields, "certFile", what);
        reader_.present(*fields, "keyFile", what);
        set(tls.certFile, reader_.readableFile(*fields, "certFile"));
        set(tls.keyFile, reader_.readableFile(*fields, "keyFile"));
        set(tls.clientCAFile, reader_.readableFile(*fields, "clientCAFile"));
        return tls;
    }

    void parseAdmin(const Entry& entry) {
        std::optional<Fields> fields = reader_.mapping(entry, "admin", {"listen", "tls", "token", "tokenFile"});
        if (!fields) return;
        set(config_.admin.listen, listen(reader_, *fields));
        if (const Entry* tls = fields->find("tls")) config_.admin.tls = parseListenerTls(*tls, "admin.tls");
        config_.admin.token = reader_.secret(*fields, "token", "tokenFile", SecretTrim::trailingWhitespace);
    }

    void parseStorage(const Entry& entry) {
        std::optional<Fields> fields =
            reader_.mapping(entry, "storage", {"path", "sync", "retention", "maxQueuedDeliveries", "redis"});
        if (!fields) return;
        StorageConfig& storage = config_.storage;
        // The data folder is where the process runs (like the default), not next to a config
        // that is often a read-only mount.
        set(storage.path, reader_.nonEmpty(*fields, "path"));
        set(storage.sync,
            reader_.choice<SyncMode>(*fields, "sync", {{"normal", SyncMode::normal}, {"full", SyncMode::full}}));
        set(storage.retention, reader_.duration(*fields, "retention", false));
        setNumber(storage.maxQueuedDeliveries, reader_.integer(*fields, "maxQueuedDeliveries", 1));
        if (const Entry* redis = fields->find("redis")) storage.redis = parseRedis(*redis);
    }

    std::optional<RedisConfig> parseRedis(const Entry& entry) {
        std::optional<Fields> fields =
            reader_.mapping(entry, "storage.redis",
                            {"url", "keyPrefix", "username", "password", "passwordFile", "claimIdle", "timeout"});
        if (!fields) return std::nullopt;
        RedisConfig redis;
        if (std::optional<std::string> url = reader_.required(*fields, "url", "storage.redis")) {
            std::string why;
            if (!parseRedisUrl(*url, redis, why)) {
                reader_.error(valueMark(*fields->find("url")), "invalid Redis url " + quotedUrl(*url) + ": " + why);
            }
        }
        set(redis.keyPrefix, reader_.nonEmpty(*fields, "keyPrefix"));
        set(redis.username, reader_.nonEmpty(*fields, "username"));
        redis.password = reader_.secret(*fields, "password", "passwordFile", SecretTrim::trailingWhitespace);
        if (!redis.username.empty() && redis.password.empty()) {
            reader_.error(fields->find("username")->key.Mark(),
                          inQuotes("username") + " needs " + inQuotes("password") + " or " + inQuotes("passwordFile"));
        }
        set(redis.claimIdle, reader_.duration(*fields, "claimIdle", false));
        set(redis.timeout, reader_.duration(*fields, "timeout", false));
        return redis;
    }

    // redis://HOST[:PORT][/DB]. Credentials stay out of the url: they belong in passwordFile.
    static bool parseRedisUrl(std::string_view text, RedisConfig& redis, std::string& why) {
        constexpr std::string_view scheme = "redis://";
        if (text.starts_with("rediss://")) {
            why = "TLS to Redis is not supported; use redis:// on a trusted network";
            return false;
        }
        if (!text.starts_with(scheme)) {
            why = "expected redis://HOST:PORT/DB";
            return false;
        }
        std::string_view rest = text.substr(scheme.size());
        if (rest.find('@') != std::string_view::npos) {
            why = "credentials do not belong in the url: use username and passwordFile";
            return false;
        }
        std::string_view database;
        if (const std::size_t slash = rest.find('/'); slash != std::string_view::npos) {
            database = rest.substr(slash + 1);
            rest = rest.substr(0, slash);
        }
        std::string_view host = rest;
        std::string_view port;
        if (rest.starts_with('[')) {
            const std::size_t close = rest.find(']');
            if (close == std::string_view::npos) {
                why = "unclosed [ in the host";
                return false;
            }
            host = rest.substr(1, close - 1);
            if (rest.substr(close + 1).starts_with(':')) port = rest.substr(close + 2);
        } else if (const std::size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
            host = rest.substr(0, colon);
            port = rest.substr(colon + 1);
        }
        if (host.empty()) {
            why = "no host";
            return false;
        }
        redis.host = std::string(host);
        if (!port.empty()) {
            unsigned value = 0;
            const auto [stop, problem] = std::from_chars(port.data(), port.data() + port.size(), value);
            if (problem != std::errc{} || stop != port.data() + port.size() || value == 0 || value > 65535) {
                why = "invalid port " + inQuotes(port);
                return false;
            }
            redis.port = static_cast<std::uint16_t>(value);
        }
        if (!database.empty()) {
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

    // ---- sources

    void parseSource(const YAML::Node& node) {
        std::optional<Fields> fields =
            reader_.mapping(node, node.Mark(), "source", {"name", "type", "path", "rateLimit"}, kSourceKeys);
        if (!fields) return;
        SourceConfig source;
        std::optional<std::string> name = reader_.required(*fields, "name", "source");
        std::optional<SourceType> type = requiredChoice<SourceType>(
            *fields, "type", "source", {{"flux", SourceType::flux}, {"github", SourceType::github}});
        if (type) {
            source.type = *type;
            reader_.checkApplicable(*fields, kSourceKeys, toString(*type),
                                    [](std::string_view t) { return std::string(t) + " sources"; });
        }
        if (std::optional<std::string> path = reader_.required(*fields, "path", "source")) {
            if (checkSourcePath(*path, valueMark(*fields->find("path")))) source.path = *path;
        }
        if (const Entry* rateLimit = fields->find("rateLimit")) source.rateLimit = parseRateLimit(*rateLimit);
        // Type unknown: read the keys of both types anyway, to report their errors too.
        if (!type || *type == SourceType::flux) parseFluxSource(*fields, source);
        if (!type || *type == SourceType::github) parseGitHubSource(*fields, source);
        if (!name || !claimName(sourceNames_, "source", *name, valueMark(*fields->find("name")))) return;
        source.name = *name;
        sourceTypes_[source.name] = type;
        config_.sources.push_back(std::move(source));
    }

    bool checkSourcePath(const std::string& path, const YAML::Mark& mark) {
        if (!path.starts_with('/')) {
            reader_.error(mark, "path " + inQuotes(path) + " must start with '/'");
        } else if (path == "/healthz" || path == "/readyz") {
            reader_.error(mark, "path " + inQuotes(path) + " is reserved for health checks");
        } else if (path.find_first_of("?# \t") != std::string::npos) {
            reader_.error(mark, "path " + inQuotes(path) + " must not contain a query, fragment or blank");
        } else if (auto [it, inserted] = sourcePaths_.emplace(path, mark); !inserted) {
            reader_.error(mark, "path " + inQuotes(path) + " is already used by another source (line " +
                                    std::to_string(it->second.line + 1) + ")");
        } else {
            return true;
        }
        return false;
    }

    std::optional<RateLimit> parseRateLimit(const Entry& entry) {
        std::optional<Fields> fields = reader_.mapping(entry, "rateLimit", {"requestsPerSecond", "burst"});
        if (!fields || !reader_.present(*fields, "requestsPerSecond", "rateLimit")) return std::nullopt;
        std::optional<std::int64_t> rate = reader_.integer(*fields, "requestsPerSecond", 1, 1'000'000);
        std::optional<std::int64_t> burst = reader_.integer(*fields, "burst", 1, 1'000'000);
        if (!rate || (fields->find("burst") != nullptr && !burst)) return std::nullopt;
        return RateLimit{.requestsPerSecond = static_cast<int>(*rate),
                         .burst = static_cast<int>(burst.value_or(*rate))};
    }

    void parseFluxSource(const Fields& fields, SourceConfig& source) {
        // Flux signs with the Secret's bytes as they are, so only a final line ending (an editor's
        // or `echo`'s, never part of a key made with --from-literal) is dropped; any other
        // whitespace is key material.
        source.hmacKey = reader_.secret(fields, "hmacKey", "hmacKeyFile", SecretTrim::oneLineEnding);
        set(source.requiredHeaders, reader_.stringMap(fields, "requiredHeaders"));
    }

    void parseGitHubSource(const Fields& fields, SourceConfig& source) {
        source.secret = reader_.secret(fields, "secret", "secretFile", SecretTrim::trailingWhitespace);
        set(source.allowSha1, reader_.boolean(fields, "allowSha1"));
        set(source.events, reader_.strings(fields, "events"));
    }

    // ---- targets

    void parseTarget(const YAML::Node& node) {
        std::optional<Fields> fields =
            reader_.mapping(node, node.Mark(), "target",
                            {"name", "type", "address", "timeout", "caFile", "certFile", "keyFile",
                             "insecureSkipVerify", "proxy", "headers", "retry", "concurrency", "maxBatch", "token",
                             "tokenFile", "username", "password", "passwordFile", "proxyCredentialsFile"},
                            kTargetKeys);
        if (!fields) return;
        TargetConfig target;
        std::optional<std::string> name = reader_.required(*fields, "name", "target");
        std::optional<TargetType> type = requiredChoice<TargetType>(*fields, "type", "target",
                                                                    {{"alertmanager", TargetType::alertmanager},
                                                                     {"github", TargetType::github},
                                                                     {"flux-receiver", TargetType::fluxReceiver},
                                                                     {"kubernetes", TargetType::kubernetes}});
        if (type) {
            target.type = *type;
            reader_.checkApplicable(*fields, kTargetKeys, toString(*type),
                                    [](std::string_view t) { return std::string(t) + " targets"; });
        }
        parseAddress(*fields, type, target);
        parseTargetAuth(*fields, target);
        parseTransport(*fields, target);
        if (!type || *type == TargetType::alertmanager) {
            set(target.resolve, reader_.boolean(*fields, "resolve"));
            // Resolving replays each object's firing alerts in event order: one worker keeps it.
            if (target.resolve && fields->find("concurrency") == nullptr) {
                target.concurrency = 1;
            } else if (target.resolve && target.concurrency > 1) {
                reader_.error(valueMark(*fields->find("concurrency")),
                              "'resolve: true' needs concurrency 1 (firing alerts are tracked in event order)");
            }
            set(target.refireInterval, reader_.duration(*fields, "refireInterval", false));
            if (const Entry* refire = fields->find("refireInterval"); refire != nullptr && !target.resolve) {
                reader_.error(refire->key.Mark(), "'refireInterval' applies only with 'resolve: true'");
            }
            if (auto severities = reader_.stringMap(*fields, "severityMap")) {
                target.severityMap.insert(severities->begin(), severities->end());
            }
        }
        if (!type || *type == TargetType::github) parseGitHubTarget(*fields, target, type.has_value());
        if (!type || *type == TargetType::fluxReceiver) parseReceiverTarget(*fields, target, type.has_value());
        if (!type || *type == TargetType::kubernetes) parseKubernetesTarget(*fields, target, type.has_value());
        if (!name || !claimName(targetNames_, "target", *name, valueMark(*fields->find("name")))) return;
        target.name = *name;
        targetTypes_[target.name] = type;
        if (target.insecureSkipVerify) {
            // Logged at every start and reload, and shown by check-config: easy to leave on by mistake.
            reader_.warning(fields->find("insecureSkipVerify")->key.Mark(),
                            "target " + inQuotes(target.name) +
                                ": insecureSkipVerify is true, its server's TLS certificate and host name are not "
                                "verified");
        }
        config_.targets.push_back(std::move(target));
    }

    void parseAddress(const Fields& fields, std::optional<TargetType> type, TargetConfig& target) {
        const bool optional = type == TargetType::kubernetes;  // in-cluster API server by default
        std::optional<std::string> text =
            optional ? reader_.string(fields, "address") : reader_.required(fields, "address", "target");
        if (!text) return;
        std::optional<Url> url = type == TargetType::github ? parseGitHubAddress(*text) : parseUrl(*text);
        if (!url) {
            reader_.error(
                valueMark(*fields.find("address")),
                "invalid address " + quotedUrl(*text) +
                    (type == TargetType::github ? " (expected a repository URL, e.g. https://github.com/owner/repo)"
                                                : " (expected an absolute http or https URL)"));
            return;
        }
        target.address = std::move(*url);
        target.addressText = std::move(*text);
    }

    void parseTargetAuth(const Fields& fields, TargetConfig& target) {
        target.token = reader_.secret(fields, "token", "tokenFile", SecretTrim::trailingWhitespace);
        set(target.username, reader_.string(fields, "username"));
        target.password = reader_.secret(fields, "password", "passwordFile", SecretTrim::trailingWhitespace);
        const Entry* username = fields.find("username");
        const Entry* password =
            fields.find("password") != nullptr ? fields.find("password") : fields.find("passwordFile");
        const Entry* token = fields.find("token") != nullptr ? fields.find("token") : fields.find("tokenFile");
        if ((username == nullptr) != (password == nullptr)) {
            const Entry* present = username != nullptr ? username : password;
            reader_.error(present->key.Mark(), "'username' and 'password'/'passwordFile' go together");
        }
        if (token != nullptr && username != nullptr) {
            reader_.error(token->key.Mark(),
                          "a target authenticates with a token or with username and password, not both");
        }
    }

    void parseTransport(const Fields& fields, TargetConfig& target) {
        set(target.timeout, reader_.duration(fields, "timeout", false));
        set(target.caFile, reader_.readableFile(fields, "caFile"));
        set(target.certFile, reader_.readableFile(fields, "certFile"));
        set(target.keyFile, reader_.readableFile(fields, "keyFile"));
        if ((fields.find("certFile") == nullptr) != (fields.find("keyFile") == nullptr)) {
            const Entry* present =
                fields.find("certFile") != nullptr ? fields.find("certFile") : fields.find("keyFile");
            reader_.error(present->key.Mark(), "'certFile' and 'keyFile' go together");
        }
        set(target.insecureSkipVerify, reader_.boolean(fields, "insecureSkipVerify"));
        if (std::optional<std::string> proxy = reader_.string(fields, "proxy")) {
            target.proxy = parseUrl(*proxy);
            if (!target.proxy) {
                reader_.error(valueMark(*fields.find("proxy")),
                              "invalid proxy " + quotedUrl(*proxy) + " (expected an http URL without credentials)");
            } else if (target.proxy->tls()) {
                // Requests reach the proxy in the clear; an https target's TLS runs end to end through it.
                reader_.error(valueMark(*fields.find("proxy")),
                              "proxy " + quotedUrl(*proxy) +
                                  ": only http proxies are supported (https targets are tunnelled through them "
                                  "with CONNECT)");
                target.proxy.reset();
            }
        }
        // File only, never inline: the credentials stay out of the config and of every message.
        target.proxyCredentials = reader_.secret(fields, {}, "proxyCredentialsFile", SecretTrim::trailingWhitespace);
        if (const Entry* credentials = fields.find("proxyCredentialsFile")) {
            if (fields.find("proxy") == nullptr) {
                reader_.error(credentials->key.Mark(), "'proxyCredentialsFile' applies only with 'proxy'");
            } else if (!target.proxyCredentials.empty() && target.proxyCredentials.find(':') == std::string::npos) {
                reader_.error(credentials->key.Mark(), "proxyCredentialsFile must hold username:password");
            }
        }
        set(target.headers, reader_.stringMap(fields, "headers"));
        if (const Entry* retry = fields.find("retry")) parseRetry(*retry, target.retry);
        // Commit statuses of one commit must land in order, and the skip-identical memory is only
        // right if they do: one at a time unless asked otherwise.
        if (target.type == TargetType::github) {
            target.concurrency = 1;
        }
        setNumber(target.concurrency, reader_.integer(fields, "concurrency", 1, std::numeric_limits<int>::max()));
        setNumber(target.maxBatch, reader_.integer(fields, "maxBatch", 1, std::numeric_limits<int>::max()));
    }

    void parseRetry(const Entry& entry, RetryPolicy& retry) {
        std::optional<Fields> fields =
            reader_.mapping(entry, "retry", {"maxAttempts", "maxAge", "initialInterval", "maxInterval"});
        if (!fields) return;
        setNumber(retry.maxAttempts, reader_.integer(*fields, "maxAttempts", 0, std::numeric_limits<int>::max()));
        set(retry.maxAge, reader_.duration(*fields, "maxAge", false));
        set(retry.initialInterval, reader_.duration(*fields, "initialInterval", false));
        set(retry.maxInterval, reader_.duration(*fields, "maxInterval", false));
        if (retry.initialInterval > retry.maxInterval) {
            const Entry* at = fields->find("initialInterval") != nullptr ? fields->find("initialInterval")
                                                                         : fields->find("maxInterval");
            reader_.error(valueMark(*at), "retry.initialInterval (" + formatDuration(retry.initialInterval) +
                                              ") is longer than retry.maxInterval (" +
                                              formatDuration(retry.maxInterval) + ")");
        }
    }

    // `typeKnown` false: the keys are only checked, the type's requirements are not.
    void parseGitHubTarget(const Fields& fields, TargetConfig& target, bool typeKnown) {
        if (std::optional<std::string> context = reader_.nonEmpty(fields, "context")) {
            target.context = *context;
        }
        if (const Entry* app = fields.find("app")) target.app = parseGitHubApp(*app);
        const Entry* token = fields.find("token") != nullptr ? fields.find("token") : fields.find("tokenFile");
        if (!typeKnown) return;
        if (token != nullptr && fields.find("app") != nullptr) {
            reader_.error(fields.find("app")->key.Mark(), "a github target uses either a token or an app, not both");
        } else if (token == nullptr && fields.find("app") == nullptr) {
            reader_.error(fields.mark, "a github target needs 'tokenFile' (or 'token') or 'app'");
        }
    }

    std::optional<GitHubAppConfig> parseGitHubApp(const Entry& entry) {
        std::optional<Fields> fields =
            reader_.mapping(entry, "app", {"appID", "installationID", "privateKeyFile", "privateKey"});
        if (!fields) return std::nullopt;
        GitHubAppConfig app;
        reader_.present(*fields, "appID", "app");
        reader_.present(*fields, "installationID", "app");
        setNumber(app.appId, reader_.integer(*fields, "appID", 1));
        setNumber(app.installationId, reader_.integer(*fields, "installationID", 1));
        if (fields->find("privateKeyFile") == nullptr && fields->find("privateKey") == nullptr) {
            reader_.error(fields->mark, "missing required key 'privateKeyFile' in app");
        }
        // PEM is line-based: trailing blank lines mean nothing.
        app.privateKey = reader_.secret(*fields, "privateKey", "privateKeyFile", SecretTrim::trailingWhitespace);
        return app;
    }

    void parseReceiverTarget(const Fields& fields, TargetConfig& target, bool typeKnown) {
        if (const Entry* receiver = fields.find("receiver")) {
            if (std::optional<Fields> receiverFields = reader_.mapping(*receiver, "receiver", {"name", "namespace"})) {
                set(target.receiverName, reader_.required(*receiverFields, "name", "receiver"));
                set(target.receiverNamespace, reader_.required(*receiverFields, "namespace", "receiver"));
            }
        } else if (typeKnown && target.addressText.find("/hook/") == std::string::npos) {
            // The hook path is computed from the receiver, unless the address already has it.
            reader_.error(fields.mark, "a flux-receiver target needs 'receiver: {name, namespace}'");
        }
        if (typeKnown && fields.find("token") == nullptr && fields.find("tokenFile") == nullptr) {
            reader_.error(fields.mark, "a flux-receiver target needs 'tokenFile' (or 'token'): the Receiver's token");
        }
    }

    void parseKubernetesTarget(const Fields& fields, TargetConfig& target, bool typeKnown) {
        if (typeKnown) kubernetesDefaults(fields, target);
        const Entry* resources = fields.find("resources");
        if (resources == nullptr) {
            if (typeKnown) reader_.present(fields, "resources", "target");
            return;
        }
        std::optional<std::vector<YAML::Node>> items = reader_.sequence(*resources);
        if (!items) return;
        if (items->empty()) reader_.error(valueMark(*resources), "'resources' must not be empty");
        for (const YAML::Node& item : *items) {
            std::optional<Fields> f =
                reader_.mapping(item, item.Mark(), "resource", {"apiVersion", "kind", "name", "namespace"});
            if (!f) continue;
            ObjectSelector selector;
            set(selector.apiVersion, reader_.required(*f, "apiVersion", "resource"));
            set(selector.kind, reader_.required(*f, "kind", "resource"));
            set(selector.name, reader_.required(*f, "name", "resource"));
            set(selector.namespace_, reader_.required(*f, "namespace", "resource"));
            target.resources.push_back(std::move(selector));
        }
    }

    // In a pod by default: the API server from the service environment, the token and CA of the
    // pod's service account (the CA for any https address without caFile). Tokens are projected
    // and rotate, so the provider reads the file again while running; the in-cluster one is not
    // read now, since check-config may run elsewhere.
    void kubernetesDefaults(const Fields& fields, TargetConfig& target) {
        static constexpr std::string_view serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";
        if (fields.find("tokenFile") != nullptr) {
            if (!target.token.empty()) target.tokenFile = reader_.resolve(*reader_.string(fields, "tokenFile"));
        } else if (fields.find("token") == nullptr) {
            target.tokenFile = std::string(serviceAccountDir) + "/token";
        }
        if (fields.find("address") == nullptr) {
            // As client-go finds the API server in a pod; the service's DNS name where the variables
            // are missing (they are, for check-config on a workstation).
            const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
            const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
            std::string text = "https://kubernetes.default.svc";
            if (host != nullptr && *host != '\0' && port != nullptr && *port != '\0') {
                const std::string hostText(host);
                text = "https://" + (hostText.find(':') != std::string::npos ? "[" + hostText + "]" : hostText) + ":" +
                       port;
            }
            if (std::optional<Url> url = parseUrl(text)) {
                target.address = std::move(*url);
                target.addressText = std::move(text);
            } else {
                reader_.error(fields.mark, "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT make no valid URL (" +
                                               inQuotes(text) + "): set the target's 'address'");
            }
        }
        if (target.caFile.empty() && target.address.tls()) target.caFile = std::string(serviceAccountDir) + "/ca.crt";
    }

    // ---- routes

    void parseRoute(const YAML::Node& node) {
        std::optional<Fields> fields =
            reader_.mapping(node, node.Mark(), "route", {"name", "source", "targets"}, kRouteKeys);
        if (!fields) return;
        RouteConfig route;
        std::optional<std::string> name = reader_.required(*fields, "name", "route");
        const std::string label = name ? "route " + inQuotes(*name) : "route";
        std::optional<SourceType> sourceType;
        if (std::optional<std::string> source = reader_.required(*fields, "source", "route")) {
            route.source = *source;
            auto it = sourceTypes_.find(*source);
            if (it == sourceTypes_.end()) {
                reader_.error(valueMark(*fields->find("source")), label + ": unknown source " + inQuotes(*source));
            } else {
                sourceType = it->second;
            }
        }
        if (sourceType) {
            reader_.checkApplicable(*fields, kRouteKeys, toString(*sourceType),
                                    [](std::string_view t) { return "routes with a " + std::string(t) + " source"; });
        }
        if (!sourceType || *sourceType == SourceType::flux) parseFluxRoute(*fields, route);
        if (!sourceType || *sourceType == SourceType::github) parseGitHubRoute(*fields, route);
        parseRouteTargets(*fields, label, sourceType, route);
        if (!name || !claimName(routeNames_, "route", *name, valueMark(*fields->find("name")))) return;
        route.name = *name;
        config_.routes.push_back(std::move(route));
    }

    void parseRouteTargets(const Fields& fields, const std::string& label, std::optional<SourceType> sourceType,
                           RouteConfig& route) {
        if (!reader_.present(fields, "targets", "route")) return;
        std::optional<std::vector<Item>> items = reader_.stringList(fields, "targets");
        if (!items) return;
        if (items->empty()) reader_.error(valueMark(*fields.find("targets")), "'targets' must not be empty");
        std::set<std::string> seen;
        for (Item& item : *items) {
            auto it = targetTypes_.find(item.text);
            if (it == targetTypes_.end()) {
                reader_.error(item.mark, label + ": unknown target " + inQuotes(item.text));
            } else if (!seen.insert(item.text).second) {
                reader_.error(item.mark, label + ": target " + inQuotes(item.text) + " is listed twice");
            } else if (sourceType && it->second && !accepts(*it->second, *sourceType)) {
                reader_.error(item.mark, label + ": " + std::string(toString(*it->second)) + " target " +
                                             inQuotes(item.text) + " cannot take events of a " +
                                             std::string(toString(*sourceType)) + " source");
            }
            route.targets.push_back(std::move(item.text));
        }
    }

    // Alertmanager alerts and commit statuses are made from Flux events; a Receiver trigger and a
    // Kubernetes reconcile request answer a GitHub delivery (the same rule as targetAccepts).
    static bool accepts(TargetType target, SourceType source) {
        switch (target) {
            case TargetType::alertmanager:
            case TargetType::github:
                return source == SourceType::flux;
            case TargetType::fluxReceiver:
            case TargetType::kubernetes:
                return source == SourceType::github;
        }
        return false;
    }

    void parseFluxRoute(const Fields& fields, RouteConfig& route) {
        set(route.eventSeverity,
            reader_.choice<Severity>(fields, "eventSeverity", {{"info", Severity::info}, {"error", Severity::error}}));
        if (const Entry* sources = fields.find("eventSources")) parseEventSources(*sources, route);
        set(route.inclusionList, patterns(fields, "inclusionList"));
        set(route.exclusionList, patterns(fields, "exclusionList"));
        if (const Entry* match = fields.find("match")) parseMatch(*match, route);
        if (auto metadata = reader_.stringMap(fields, "eventMetadata")) {
            route.eventMetadata.insert(metadata->begin(), metadata->end());
        }
        // Flux Alert's deprecated spec.summary, kept for imported Alerts; eventMetadata wins.
        if (std::optional<std::string> summary = reader_.string(fields, "summary")) {
            route.eventMetadata.emplace("summary", *summary);
        }
        if (const Entry* dedup = fields.find("dedup")) parseDedup(*dedup, route.dedup);
    }

    void parseGitHubRoute(const Fields& fields, RouteConfig& route) {
        set(route.events, reader_.strings(fields, "events"));
        set(route.branches, reader_.strings(fields, "branches"));
        set(route.debounce, reader_.duration(fields, "debounce", true));
    }

    void parseEventSources(const Entry& entry, RouteConfig& route) {
        std::optional<std::vector<YAML::Node>> items = reader_.sequence(entry);
        if (!items) return;
        for (const YAML::Node& item : *items) {
            std::optional<Fields> fields =
                reader_.mapping(item, item.Mark(), "eventSources entry", {"kind", "name", "namespace"});
            if (!fields) continue;
            EventSourceSelector selector;
            set(selector.kind, reader_.required(*fields, "kind", "eventSources entry"));
            set(selector.name, reader_.nonEmpty(*fields, "name"));
            set(selector.namespace_, reader_.nonEmpty(*fields, "namespace"));
            route.eventSources.push_back(std::move(selector));
        }
    }

    std::optional<std::vector<Pattern>> patterns(const Fields& fields, std::string_view key) {
        std::optional<std::vector<Item>> items = reader_.stringList(fields, key);
        if (!items) return std::nullopt;
        std::vector<Pattern> out;
        for (Item& item : *items) {
            if (auto regex = compileRegex(reader_, item.text, item.mark)) out.push_back({std::move(item.text), regex});
        }
        return out;
    }

    void parseMatch(const Entry& entry, RouteConfig& route) {
        static constexpr std::pair<std::string_view, MatchField> kFields[] = {
            {"reason", MatchField::reason},
            {"kind", MatchField::kind},
            {"name", MatchField::name},
            {"namespace", MatchField::namespace_},
            {"reportingController", MatchField::reportingController},
        };
        std::optional<Fields> fields =
            reader_.mapping(entry, "match", {"reason", "kind", "name", "namespace", "reportingController", "metadata"});
        if (!fields) return;
        // In the file's order, so that explain reports matchers as the user wrote them.
        for (const Entry& field : fields->entries) {
            if (field.name == "metadata") {
                parseMetadataMatch(*fields, route);
                continue;
            }
            const auto* known = std::find_if(std::begin(kFields), std::end(kFields),
                                             [&](const auto& f) { return f.first == field.name; });
            assert(known != std::end(kFields));  // mapping() let only these keys through
            std::optional<std::string> pattern = reader_.string(*fields, field.name);
            if (!pattern) continue;
            if (auto regex = compileRegex(reader_, *pattern, valueMark(field))) {
                route.match.push_back({known->second, "", *pattern, regex});
            }
        }
    }

    void parseMetadataMatch(const Fields& fields, RouteConfig& route) {
        std::optional<std::vector<MapItem>> metadata = reader_.stringMapItems(fields, "metadata");
        if (!metadata) return;
        for (MapItem& item : *metadata) {
            if (auto regex = compileRegex(reader_, item.value, item.mark)) {
                route.match.push_back({MatchField::metadata, std::move(item.name), std::move(item.value), regex});
            }
        }
    }

    void parseDedup(const Entry& entry, DedupConfig& dedup) {
        std::optional<Fields> fields = reader_.mapping(entry, "dedup", {"mode", "window", "renotify", "threshold"});
        if (!fields) return;
        set(dedup.mode, reader_.choice<DedupMode>(*fields, "mode",
                                                  {{"flux", DedupMode::flux},
                                                   {"normalized", DedupMode::normalized},
                                                   {"transitions", DedupMode::transitions},
                                                   {"none", DedupMode::none}}));
        set(dedup.window, reader_.duration(*fields, "window", false));
        set(dedup.renotify, reader_.duration(*fields, "renotify", true));
        setNumber(dedup.threshold, reader_.integer(*fields, "threshold", 0, std::numeric_limits<int>::max()));
        if (const Entry* renotify = fields->find("renotify");
            renotify != nullptr && dedup.mode != DedupMode::transitions) {
            reader_.error(renotify->key.Mark(), "'renotify' applies only to dedup mode 'transitions'");
        }
    }

    // ---- shared

    template <class Enum>
    std::optional<Enum> requiredChoice(const Fields& fields, std::string_view key, std::string_view context,
                                       std::initializer_list<std::pair<std::string_view, Enum>> choices) {
        if (!reader_.present(fields, key, context)) return std::nullopt;
        return reader_.choice<Enum>(fields, key, choices);
    }

    // False (and reported) when `name` is already taken by another item of the same kind.
    bool claimName(std::map<std::string, YAML::Mark>& names, std::string_view kind, const std::string& name,
                   const YAML::Mark& mark) {
        auto [it, inserted] = names.emplace(name, mark);
        if (!inserted) {
            reader_.error(mark, "duplicate " + std::string(kind) + " name " + inQuotes(name) +
                                    " (first defined at line " + std::to_string(it->second.line + 1) + ")");
        }
        return inserted;
    }

    Reader& reader_;
    Config config_;
    std::map<std::string, YAML::Mark> sourceNames_;
    std::map<std::string, YAML::Mark> targetNames_;
    std::map<std::string, YAML::Mark> routeNames_;
    std::map<std::string, YAML::Mark> sourcePaths_;
    // Types by name for the routes' checks; nullopt: the item's own type was invalid.
    std::map<std::string, std::optional<SourceType>> sourceTypes_;
    std::map<std::string, std::optional<TargetType>> targetTypes_;
};

// Where each of the first `limit` documents of a YAML stream starts: the mark of its root node (or
// of the document when it is empty), as YAML::Node::Mark() gives it.
class DocumentMarks final : public YAML::EventHandler {
public:
    std::vector<YAML::Mark> marks;

    void OnDocumentStart(const YAML::Mark& mark) override {
        marks.push_back(mark);
        rootSeen_ = false;
    }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
    void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
    void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string&) override {
        node(mark);
    }
    void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {
        node(mark);
    }
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
        node(mark);
    }
    void OnMapEnd() override {}

private:
    void node(const YAML::Mark& mark) {
        if (!rootSeen_ && !marks.empty()) marks.back() = mark;
        rootSeen_ = true;
    }

    bool rootSeen_ = false;
};

std::vector<YAML::Mark> documentMarks(const std::string& text, std::size_t limit) {
    std::istringstream stream(text);
    YAML::Parser parser(stream);
    DocumentMarks handler;
    while (handler.marks.size() < limit && parser.HandleNextDocument(handler)) {
    }
    return std::move(handler.marks);
}

}  // namespace

ConfigPtr loadConfigText(const std::string& text, const std::string& file) {
    Reader reader(file, fs::path(file).parent_path());
    YAML::Node document;
    std::vector<YAML::Mark> documents;
    try {
        // Not YAML::LoadAll: on a stray ',' yaml-cpp 0.7 yields empty documents forever without
        // moving on, and LoadAll collects them until the process runs out of memory.
        documents = documentMarks(text, 2);
        document = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        reader.error(e.mark, e.msg);
        throw ConfigError(reader.takeDiagnostics());
    }
    if (documents.size() == 2 && documents[0].pos == documents[1].pos) {
        reader.error(documents[0], "unexpected ',' outside a [...] or {...} collection");
        throw ConfigError(reader.takeDiagnostics());
    }
    if (documents.empty() || document.IsNull()) {
        reader.error(YAML::Mark(), "the configuration is empty");
        throw ConfigError(reader.takeDiagnostics());
    }
    if (documents.size() > 1) reader.error(documents[1], "only one YAML document is allowed");
    Config config = Parser(reader).parse(document);
    config.file = file;
    config.warnings = reader.takeWarnings();
    std::vector<ConfigDiagnostic> diagnostics = reader.takeDiagnostics();
    if (!diagnostics.empty()) throw ConfigError(std::move(diagnostics));
    return std::make_shared<const Config>(std::move(config));
}

ConfigPtr loadConfigFile(const std::string& path) {
    std::string why;
    std::optional<std::string> text = readWholeFile(path, why);
    if (!text) throw ConfigError({{path, 1, 1, "cannot read the configuration: " + why}});
    return loadConfigText(*text, path);
}

}  // namespace fluxrelay
