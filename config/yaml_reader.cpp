// Reading the configuration's YAML into typed values, with a diagnostic for every problem.
#include "config/yaml_reader.hpp"

#include <re2/re2.h>
#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <set>
#include <sstream>
#include <system_error>
#include <tuple>

#include "core/text.hpp"

namespace fluxrelay::config_reading {

namespace {

bool validEnvName(std::string_view name) {
    if (name.empty() || std::isdigit(static_cast<unsigned char>(name.front()))) return false;
    return std::all_of(name.begin(), name.end(),
                       [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// A misspelt key ("tokenfile", "eventSeverty") is the most common unknown one: name the right one.
std::string unknownKeyMessage(const std::string& name, std::string_view context, Keys keys,
                              std::span<const TypedKey> typedKeys) {
    std::vector<std::string_view> all(keys.begin(), keys.end());
    for (const TypedKey& typed : typedKeys) all.push_back(typed.key);
    return "unknown key " + inQuotes(name) + " in " + std::string(context) + didYouMean(name, all);
}

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

const Entry* Fields::find(std::string_view name) const {
    for (const Entry& entry : entries) {
        if (entry.name == name) return &entry;
    }
    return nullptr;
}

YAML::Mark valueMark(const Entry& entry) { return entry.value.IsNull() ? entry.key.Mark() : entry.value.Mark(); }

std::string inQuotes(std::string_view text) { return "'" + std::string(text) + "'"; }

std::string didYouMean(std::string_view name, std::span<const std::string_view> known) {
    const std::optional<std::string_view> closest = closestMatch(name, known);
    return closest ? " (did you mean " + inQuotes(*closest) + "?)" : std::string();
}

Reader::Reader(std::string file, std::filesystem::path folder, Scope scope)
    : file_(std::move(file)), folder_(std::move(folder)), scope_(scope) {}

std::optional<YAML::Node> Reader::document(const std::string& text) {
    YAML::Node document;
    std::vector<YAML::Mark> documents;
    try {
        // Not YAML::LoadAll: on a stray ',' yaml-cpp 0.7 yields empty documents forever without
        // moving on, and LoadAll collects them until the process runs out of memory.
        documents = documentMarks(text, 2);
        document = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        error(e.mark, e.msg);
        return std::nullopt;
    }
    if (documents.size() == 2 && documents[0].pos == documents[1].pos) {
        error(documents[0], "unexpected ',' outside a [...] or {...} collection");
        return std::nullopt;
    }
    if (documents.empty() || document.IsNull()) {
        error(YAML::Mark(), "the configuration is empty");
        return std::nullopt;
    }
    if (documents.size() > 1) error(documents[1], "only one YAML document is allowed");
    return document;
}

void Reader::error(const YAML::Mark& mark, std::string message) {
    diagnostics_.push_back({file_, std::max(mark.line, 0) + 1, std::max(mark.column, 0) + 1, std::move(message)});
}

void Reader::warning(const YAML::Mark& mark, std::string message) {
    warnings_.push_back(
        ConfigDiagnostic{file_, std::max(mark.line, 0) + 1, std::max(mark.column, 0) + 1, std::move(message)}
            .toString());
}

std::vector<std::string> Reader::takeWarnings() { return std::move(warnings_); }

std::vector<ConfigDiagnostic> Reader::takeDiagnostics() {
    std::stable_sort(diagnostics_.begin(), diagnostics_.end(), [](const auto& a, const auto& b) {
        return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    return std::move(diagnostics_);
}

std::optional<Fields> Reader::mapping(const YAML::Node& node, const YAML::Mark& mark, std::string_view context,
                                      Keys keys, std::span<const TypedKey> typedKeys) {
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

std::optional<Fields> Reader::mapping(const Entry& entry, std::string_view context, Keys keys) {
    return mapping(entry.value, valueMark(entry), context, keys);
}

void Reader::checkApplicable(const Fields& fields, std::span<const TypedKey> typedKeys, std::string_view type,
                             const std::function<std::string(std::string_view)>& describe) {
    for (const TypedKey& typed : typedKeys) {
        const Entry* entry = fields.find(typed.key);
        if (entry == nullptr || typed.type == type || (!typed.alsoType.empty() && typed.alsoType == type)) continue;
        std::string message = inQuotes(typed.key) + " applies only to " + describe(typed.type);
        if (!typed.alsoType.empty()) message += " and " + describe(typed.alsoType);
        if (!typed.othersDoNot.empty()) message += " (" + describe(type) + " " + std::string(typed.othersDoNot) + ")";
        error(entry->key.Mark(), std::move(message));
    }
}

std::optional<std::string> Reader::expand(std::string_view text, const YAML::Mark& mark) {
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
        const char* value = validEnvName(name) && scope_ == Scope::full ? std::getenv(name.c_str()) : nullptr;
        if (!validEnvName(name)) {
            error(mark, "invalid environment variable name " + inQuotes(name));
            ok = false;
        } else if (scope_ == Scope::textOnly) {
            ok = false;  // a value only the environment knows: nothing to check it against
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

std::optional<std::string> Reader::scalar(const YAML::Node& node, const YAML::Mark& mark, const std::string& what) {
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

std::optional<std::string> Reader::string(const Fields& fields, std::string_view key) {
    const Entry* entry = fields.find(key);
    if (entry == nullptr) return std::nullopt;
    return scalar(entry->value, valueMark(*entry), inQuotes(key));
}

std::optional<std::string> Reader::nonEmpty(const Fields& fields, std::string_view key) {
    std::optional<std::string> value = string(fields, key);
    if (value && value->empty()) {
        error(valueMark(*fields.find(key)), inQuotes(key) + " must not be empty");
        return std::nullopt;
    }
    return value;
}

bool Reader::present(const Fields& fields, std::string_view key, std::string_view context) {
    if (fields.find(key) != nullptr) return true;
    error(fields.mark, "missing required key " + inQuotes(key) + " in " + std::string(context));
    return false;
}

std::optional<std::string> Reader::required(const Fields& fields, std::string_view key, std::string_view context) {
    if (!present(fields, key, context)) return std::nullopt;
    return nonEmpty(fields, key);
}

std::optional<bool> Reader::boolean(const Fields& fields, std::string_view key) {
    std::optional<std::string> text = string(fields, key);
    if (!text) return std::nullopt;
    if (*text == "true" || *text == "True" || *text == "TRUE") return true;
    if (*text == "false" || *text == "False" || *text == "FALSE") return false;
    error(valueMark(*fields.find(key)), "expected true or false for " + inQuotes(key));
    return std::nullopt;
}

std::optional<std::int64_t> Reader::integer(const Fields& fields, std::string_view key, std::int64_t min,
                                            std::int64_t max) {
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
        error(mark, inQuotes(key) + (max == std::numeric_limits<std::int64_t>::max()
                                         ? " must be at least " + std::to_string(min)
                                         : " must be between " + std::to_string(min) + " and " + std::to_string(max)));
        return std::nullopt;
    }
    return value;
}

std::optional<Duration> Reader::duration(const Fields& fields, std::string_view key, bool mayBeZero) {
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

std::optional<std::vector<YAML::Node>> Reader::sequence(const Entry& entry) {
    if (!entry.value.IsSequence()) {
        error(valueMark(entry), "expected a list for " + inQuotes(entry.name));
        return std::nullopt;
    }
    return std::vector<YAML::Node>(entry.value.begin(), entry.value.end());
}

std::optional<std::vector<Item>> Reader::stringList(const Fields& fields, std::string_view key) {
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

std::optional<std::vector<std::string>> Reader::strings(const Fields& fields, std::string_view key) {
    std::optional<std::vector<Item>> items = stringList(fields, key);
    if (!items) return std::nullopt;
    std::vector<std::string> out;
    for (Item& item : *items) out.push_back(std::move(item.text));
    return out;
}

std::optional<std::vector<MapItem>> Reader::stringMapItems(const Fields& fields, std::string_view key) {
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
            out.push_back({name.Scalar(), std::move(*text), mark, name.Mark()});
        }
    }
    return out;
}

std::optional<std::vector<std::pair<std::string, std::string>>> Reader::stringMap(const Fields& fields,
                                                                                  std::string_view key) {
    std::optional<std::vector<MapItem>> items = stringMapItems(fields, key);
    if (!items) return std::nullopt;
    std::vector<std::pair<std::string, std::string>> out;
    for (MapItem& item : *items) out.emplace_back(std::move(item.name), std::move(item.value));
    return out;
}

std::string Reader::resolve(const std::string& path) const {
    if (path.empty() || folder_.empty() || std::filesystem::path(path).is_absolute()) return path;
    return (folder_ / path).lexically_normal().string();
}

std::shared_ptr<const re2::RE2> Reader::regex(const std::string& pattern, const YAML::Mark& mark) {
    // Default RE2 syntax (Go's regexp), but no logging of errors: they are reported here, with a position.
    re2::RE2::Options options;
    options.set_log_errors(false);
    auto regex = std::make_shared<const re2::RE2>(pattern, options);
    if (!regex->ok()) {
        error(mark, "invalid regular expression " + inQuotes(pattern) + ": " + regex->error());
        return nullptr;
    }
    return regex;
}

}  // namespace fluxrelay::config_reading
