// The `flux` source: authenticates a request, then turns a Flux Event body into a FluxEvent.
#include "gateway/flux_source.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>

#include "core/crypto.hpp"
#include "core/text.hpp"
#include "core/time.hpp"

namespace fluxrelay {

namespace {

constexpr std::string_view kEventGroupPrefix = "event.toolkit.fluxcd.io/";
// Flux events are two objects deep; anything far deeper is an attempt to exhaust memory.
constexpr int kMaxNestingDepth = 64;
// Error texts quote client input; a bounded excerpt is enough to find the problem.
constexpr std::size_t kMaxQuotedBytes = 120;
constexpr std::size_t kMaxLastReadBytes = 40;

struct ParseFailure {
    std::string error;
    std::string reason;  // "bad_json" | "bad_event"
};

// Client bytes made safe to put in an error: bytes that are not UTF-8 (the JSON response could
// not carry them) become '?', and long text is cut.
std::string excerpt(std::string_view text, std::size_t maxBytes = kMaxQuotedBytes) {
    std::string out;
    std::size_t pos = 0;
    while (pos < text.size() && out.size() < maxBytes) {
        const std::size_t length = utf8SequenceLength(text.substr(pos));
        if (length == 0) {
            out.push_back('?');
            ++pos;
        } else {
            out.append(text.substr(pos, length));
            pos += length;
        }
    }
    if (pos < text.size()) out += "...";
    return out;
}

// Rejects nesting nlohmann would happily build: its parser is iterative, so depth costs memory,
// not stack, but a 3 MiB body of '[' is still millions of allocations for nothing.
bool nestingWithin(std::string_view body, int limit) {
    int depth = 0;
    bool inString = false;
    bool escaped = false;
    for (const char c : body) {
        if (inString) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                inString = false;
            }
        } else if (c == '"') {
            inString = true;
        } else if (c == '{' || c == '[') {
            if (++depth > limit) return false;
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return true;
}

// One member of the body as the reader found it. Go's decoder treats null as absent.
struct Field {
    enum class Kind { absent, null, string, other };
    Kind kind = Kind::absent;
    std::string text;  // when a string

    bool present() const { return kind != Kind::absent && kind != Kind::null; }
};

// A Flux event body read in one pass, with no JSON tree: the members the event is made of, each
// as found (duplicates: the last wins, as with Go and a parsed tree); the rest is skipped. What
// they must be is checked afterwards, in a fixed order, so errors do not depend on key order.
struct RawEvent {
    bool isObject = false;
    Field involvedObject;  // kind other: an object, unless `involvedIsObject` is false
    bool involvedIsObject = false;
    Field kind, namespace_, name, uid, apiVersion, resourceVersion, fieldPath;
    Field severity, timestamp, message, reason, reportingController, reportingInstance;
    Field metadata;  // as involvedObject
    bool metadataIsObject = false;
    std::map<std::string, Field> metadataEntries;
};

// nlohmann's SAX interface over RawEvent. Depth 1 is the body's object, depth 2 the members of
// involvedObject and metadata; anything deeper only counts as "not a string" for its member.
class RawEventReader final : public nlohmann::json_sax<nlohmann::json> {
public:
    explicit RawEventReader(RawEvent& event) : event_(event) {}

    std::string parseError;  // nlohmann's message, when the body is not JSON

    bool null() override { return scalar(Field::Kind::null, nullptr); }
    bool boolean(bool) override { return scalar(Field::Kind::other, nullptr); }
    bool number_integer(number_integer_t) override { return scalar(Field::Kind::other, nullptr); }
    bool number_unsigned(number_unsigned_t) override { return scalar(Field::Kind::other, nullptr); }
    bool number_float(number_float_t, const string_t&) override { return scalar(Field::Kind::other, nullptr); }
    bool binary(binary_t&) override { return scalar(Field::Kind::other, nullptr); }
    bool string(string_t& value) override { return scalar(Field::Kind::string, &value); }

    bool start_object(std::size_t) override {
        if (depth_ == 0) {
            event_.isObject = true;
        } else if (depth_ == 1 && key_ == "involvedObject") {
            event_.involvedObject = {Field::Kind::other, {}};
            event_.involvedIsObject = true;
            for (Field* field : involvedFields()) *field = {};
            section_ = Section::involvedObject;
        } else if (depth_ == 1 && key_ == "metadata") {
            event_.metadata = {Field::Kind::other, {}};
            event_.metadataIsObject = true;
            event_.metadataEntries.clear();
            section_ = Section::metadata;
        } else {
            scalar(Field::Kind::other, nullptr);
        }
        ++depth_;
        return true;
    }
    bool start_array(std::size_t) override {
        scalar(Field::Kind::other, nullptr);
        ++depth_;
        return true;
    }
    bool end_object() override { return end(); }
    bool end_array() override { return end(); }
    bool key(string_t& name) override {
        if (depth_ == 1) {
            key_ = std::move(name);
        } else if (depth_ == 2) {
            innerKey_ = std::move(name);
        }
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& error) override {
        parseError = error.what();
        return false;
    }

private:
    enum class Section { none, involvedObject, metadata };

    // A value, or the start of a container (other), at the current depth.
    bool scalar(Field::Kind kind, string_t* text) {
        Field* field = nullptr;
        if (depth_ == 1) {
            if (key_ == "involvedObject") {
                event_.involvedIsObject = false;
                field = &event_.involvedObject;
            } else if (key_ == "metadata") {
                event_.metadataIsObject = false;
                field = &event_.metadata;
            } else {
                field = topField(key_);
            }
        } else if (depth_ == 2 && section_ == Section::involvedObject) {
            field = involvedField(innerKey_);
        } else if (depth_ == 2 && section_ == Section::metadata) {
            field = &event_.metadataEntries[innerKey_];
        }
        if (field != nullptr) {
            field->kind = kind;
            field->text = text ? std::move(*text) : std::string();
        }
        return true;
    }

    bool end() {
        if (--depth_ <= 1) section_ = Section::none;
        return true;
    }

    Field* topField(std::string_view name) {
        if (name == "severity") return &event_.severity;
        if (name == "timestamp") return &event_.timestamp;
        if (name == "message") return &event_.message;
        if (name == "reason") return &event_.reason;
        if (name == "reportingController") return &event_.reportingController;
        if (name == "reportingInstance") return &event_.reportingInstance;
        return nullptr;
    }
    Field* involvedField(std::string_view name) {
        if (name == "kind") return &event_.kind;
        if (name == "namespace") return &event_.namespace_;
        if (name == "name") return &event_.name;
        if (name == "uid") return &event_.uid;
        if (name == "apiVersion") return &event_.apiVersion;
        if (name == "resourceVersion") return &event_.resourceVersion;
        if (name == "fieldPath") return &event_.fieldPath;
        return nullptr;
    }
    std::array<Field*, 7> involvedFields() {
        return {&event_.kind,       &event_.namespace_,      &event_.name,     &event_.uid,
                &event_.apiVersion, &event_.resourceVersion, &event_.fieldPath};
    }

    RawEvent& event_;
    int depth_ = 0;
    Section section_ = Section::none;
    std::string key_;
    std::string innerKey_;
};

// Reads an optional string member into `out`; false (with `error` set) when it is not a string.
bool optionalString(Field& field, std::string_view path, std::string& out, std::string& error) {
    if (!field.present()) return true;
    if (field.kind != Field::Kind::string) {
        error = std::string(path) + " must be a string";
        return false;
    }
    out = std::move(field.text);
    return true;
}

bool requiredString(Field& field, std::string_view path, bool nonEmpty, std::string& out, std::string& error) {
    if (!field.present()) {
        error = std::string(path) + " is required";
        return false;
    }
    if (!optionalString(field, path, out, error)) return false;
    if (nonEmpty && out.empty()) {
        error = std::string(path) + " is required";
        return false;
    }
    return true;
}

struct NormalizedMetadata {
    std::map<std::string, std::string> metadata;
    std::string dedupToken;
};

// As notification-controller combines metadata (Flux RFC 0008), lowest precedence
// first: event.toolkit.fluxcd.io/ keys, then un-prefixed keys (what notification-controller
// forwards, already combined), then keys of the object's own API group, which win.
NormalizedMetadata normalizeMetadata(const std::map<std::string, std::string>& raw, const std::string& group) {
    // With no group this is "/", as in Flux, where `GroupVersionKind().Group + "/"` is the prefix.
    const std::string objectGroupPrefix = group + "/";
    NormalizedMetadata result;
    for (const auto& [key, value] : raw) {
        if (key.starts_with(kEventGroupPrefix)) result.metadata[key.substr(kEventGroupPrefix.size())] = value;
    }
    for (const auto& [key, value] : raw) {
        if (key.find('/') == std::string::npos) result.metadata[key] = value;
    }
    for (const auto& [key, value] : raw) {
        if (key.starts_with(objectGroupPrefix)) result.metadata[key.substr(objectGroupPrefix.size())] = value;
    }

    // notification-controller's rate limiter keys on `<group>/token`; an un-prefixed `token` is
    // that same value after a forwarder stripped the prefix.
    if (const auto it = raw.find(objectGroupPrefix + "token"); it != raw.end()) {
        result.dedupToken = it->second;
    } else if (const auto bare = raw.find("token"); bare != raw.end()) {
        result.dedupToken = bare->second;
    }

    // Flux drops checksum and digest comparing case-insensitively, and the token by exact key.
    std::erase_if(result.metadata, [](const auto& entry) {
        return equalsIgnoreCase(entry.first, "checksum") || equalsIgnoreCase(entry.first, "digest") ||
               entry.first == "token";
    });
    return result;
}

std::variant<FluxEvent, ParseFailure> parseEvent(std::string_view body) {
    const auto badEvent = [](std::string error) { return ParseFailure{std::move(error), "bad_event"}; };
    if (!nestingWithin(body, kMaxNestingDepth)) {
        return ParseFailure{
            "body is not valid JSON: nested deeper than " + std::to_string(kMaxNestingDepth) + " levels", "bad_json"};
    }
    RawEvent raw;
    RawEventReader reader(raw);
    if (!nlohmann::json::sax_parse(body, &reader)) {
        // what() starts with "[json.exception.parse_error.101] ", which tells a client nothing.
        std::string_view detail = reader.parseError;
        if (const std::size_t close = detail.find("] "); detail.starts_with("[json.") && close != detail.npos) {
            detail.remove_prefix(close + 2);
        }
        // The parser quotes what it last read, which can be most of the body.
        constexpr std::string_view kLastRead = "; last read: ";
        const std::size_t split = detail.find(kLastRead);
        std::string message = excerpt(detail.substr(0, split), 2 * kMaxQuotedBytes);
        if (split != std::string_view::npos) {
            message += std::string(kLastRead) + excerpt(detail.substr(split + kLastRead.size()), kMaxLastReadBytes);
        }
        return ParseFailure{"body is not valid JSON: " + message, "bad_json"};
    }
    if (!raw.isObject) return badEvent("body must be a JSON object");

    FluxEvent event;
    std::string error;

    if (!raw.involvedObject.present()) return badEvent("involvedObject is required");
    if (!raw.involvedIsObject) return badEvent("involvedObject must be an object");
    ObjectRef& object = event.involvedObject;
    if (!requiredString(raw.kind, "involvedObject.kind", true, object.kind, error) ||
        !requiredString(raw.name, "involvedObject.name", true, object.name, error) ||
        !optionalString(raw.namespace_, "involvedObject.namespace", object.namespace_, error) ||
        !optionalString(raw.uid, "involvedObject.uid", object.uid, error) ||
        !optionalString(raw.apiVersion, "involvedObject.apiVersion", object.apiVersion, error) ||
        !optionalString(raw.resourceVersion, "involvedObject.resourceVersion", object.resourceVersion, error) ||
        !optionalString(raw.fieldPath, "involvedObject.fieldPath", object.fieldPath, error)) {
        return badEvent(error);
    }

    if (!requiredString(raw.severity, "severity", false, event.severity, error)) return badEvent(error);
    if (event.severity != "trace" && event.severity != "info" && event.severity != "error") {
        return badEvent("severity must be one of trace, info, error");
    }

    if (raw.timestamp.present()) {
        TimePoint parsed;
        if (raw.timestamp.kind != Field::Kind::string || !parseRfc3339(raw.timestamp.text, parsed)) {
            return badEvent("timestamp must be an RFC3339 time string or null");
        }
        event.timestamp = std::move(raw.timestamp.text);
    }

    if (!requiredString(raw.message, "message", false, event.message, error) ||
        !requiredString(raw.reason, "reason", false, event.reason, error) ||
        !requiredString(raw.reportingController, "reportingController", false, event.reportingController, error) ||
        !optionalString(raw.reportingInstance, "reportingInstance", event.reportingInstance, error)) {
        return badEvent(error);
    }

    std::map<std::string, std::string> rawMetadata;
    if (raw.metadata.present()) {
        if (!raw.metadataIsObject) return badEvent("metadata must be an object of strings");
        for (auto& [key, value] : raw.metadataEntries) {
            if (value.kind != Field::Kind::string) return badEvent("metadata." + excerpt(key) + " must be a string");
            rawMetadata.emplace(key, std::move(value.text));
        }
    }
    NormalizedMetadata normalized = normalizeMetadata(rawMetadata, object.group());
    event.metadata = std::move(normalized.metadata);
    event.dedupToken = std::move(normalized.dedupToken);
    return event;
}

Rejection reject(int status, std::string error, std::string reason) {
    return Rejection{.status = status, .error = std::move(error), .reason = std::move(reason)};
}

}  // namespace

bool verifyFluxSignature(std::string_view key, std::string_view signatureHeader, std::string_view body) {
    const std::size_t equals = signatureHeader.find('=');
    if (equals == std::string_view::npos) return false;
    const std::string_view algorithmName = signatureHeader.substr(0, equals);
    // Names as Flux's generic-hmac and go-github spell them: lower case.
    std::optional<HashAlgorithm> algorithm;
    if (algorithmName == "sha256") {
        algorithm = HashAlgorithm::sha256;
    } else if (algorithmName == "sha384") {
        algorithm = HashAlgorithm::sha384;
    } else if (algorithmName == "sha512") {
        algorithm = HashAlgorithm::sha512;
    } else {
        return false;
    }
    std::string given;
    if (!fromHex(signatureHeader.substr(equals + 1), given)) return false;
    // The length of a digest is public (it follows from the algorithm), so comparing it first
    // reveals nothing; the bytes themselves are compared in constant time.
    return constantTimeEquals(hmac(*algorithm, key, body), given);
}

std::variant<FluxEvent, std::string> parseFluxEvent(std::string_view body) {
    auto parsed = parseEvent(body);
    if (auto* failure = std::get_if<ParseFailure>(&parsed)) return std::move(failure->error);
    return std::move(std::get<FluxEvent>(parsed));
}

std::variant<FluxEvent, Rejection> acceptFluxRequest(const SourceConfig& source, const InboundRequest& request) {
    for (const auto& [name, expected] : source.requiredHeaders) {
        const std::optional<std::string_view> value = request.header(name);
        if (!value || !secretEquals(*value, expected)) {
            return reject(401, "missing or invalid " + name + " header", "header");
        }
    }

    if (!source.hmacKey.empty()) {
        const std::optional<std::string_view> signature = request.header("X-Signature");
        if (!signature) return reject(401, "missing X-Signature header", "signature");
        if (!verifyFluxSignature(source.hmacKey, *signature, request.body)) {
            return reject(401, "invalid X-Signature", "signature");
        }
    }

    const std::optional<std::string_view> contentType = request.header("Content-Type");
    if (!contentType) return reject(415, "missing Content-Type; send application/json", "content_type");
    std::string_view mediaType = contentType->substr(0, contentType->find(';'));
    while (!mediaType.empty() && (mediaType.front() == ' ' || mediaType.front() == '\t')) mediaType.remove_prefix(1);
    while (!mediaType.empty() && (mediaType.back() == ' ' || mediaType.back() == '\t')) mediaType.remove_suffix(1);
    if (!equalsIgnoreCase(mediaType, "application/json")) {
        return reject(415, "unsupported Content-Type \"" + excerpt(*contentType) + "\"; send application/json",
                      "content_type");
    }

    auto parsed = parseEvent(request.body);
    if (auto* failure = std::get_if<ParseFailure>(&parsed)) {
        return reject(400, std::move(failure->error), std::move(failure->reason));
    }
    return std::move(std::get<FluxEvent>(parsed));
}

}  // namespace fluxrelay
