// The `flux` source: authenticates a request, then turns a Flux Event body into a FluxEvent.
#include "gateway/flux_source.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <utility>

#include "core/crypto.hpp"
#include "core/text.hpp"
#include "core/time.hpp"

namespace fluxrelay {

namespace {

constexpr std::string_view eventGroupPrefix = "event.toolkit.fluxcd.io/";
// Flux events are two objects deep; anything far deeper is an attempt to exhaust memory.
constexpr int maxNestingDepth = 64;
// Error texts quote client input; a bounded excerpt is enough to find the problem.
constexpr std::size_t maxQuotedBytes = 120;
constexpr std::size_t maxLastReadBytes = 40;

struct ParseFailure {
    std::string error;
    std::string reason;  // "bad_json" | "bad_event"
};

// Client bytes made safe to put in an error: bytes that are not UTF-8 (the JSON response could
// not carry them) become '?', and long text is cut.
std::string excerpt(std::string_view text, std::size_t maxBytes = maxQuotedBytes) {
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

// A member of `object` that is present and not null; Go's decoder treats null as absent.
const nlohmann::json* member(const nlohmann::json& object, const char* name) {
    const auto it = object.find(name);
    if (it == object.end() || it->is_null()) return nullptr;
    return &*it;
}

// Reads an optional string member into `out`; false (with `error` set) when it is not a string.
bool optionalString(const nlohmann::json& object, const char* name, std::string_view path, std::string& out,
                    std::string& error) {
    const nlohmann::json* value = member(object, name);
    if (value == nullptr) return true;
    if (!value->is_string()) {
        error = std::string(path) + " must be a string";
        return false;
    }
    out = value->get<std::string>();
    return true;
}

bool requiredString(const nlohmann::json& object, const char* name, std::string_view path, bool nonEmpty,
                    std::string& out, std::string& error) {
    const nlohmann::json* value = member(object, name);
    if (value == nullptr) {
        error = std::string(path) + " is required";
        return false;
    }
    if (!value->is_string()) {
        error = std::string(path) + " must be a string";
        return false;
    }
    out = value->get<std::string>();
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

// SPEC §3.1, as notification-controller combines metadata (Flux RFC 0008), lowest precedence
// first: event.toolkit.fluxcd.io/ keys, then un-prefixed keys (what notification-controller
// forwards, already combined), then keys of the object's own API group, which win.
NormalizedMetadata normalizeMetadata(const std::map<std::string, std::string>& raw, const std::string& group) {
    // With no group this is "/", as in Flux, where `GroupVersionKind().Group + "/"` is the prefix.
    const std::string objectGroupPrefix = group + "/";
    NormalizedMetadata result;
    for (const auto& [key, value] : raw) {
        if (key.starts_with(eventGroupPrefix)) result.metadata[key.substr(eventGroupPrefix.size())] = value;
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
    if (!nestingWithin(body, maxNestingDepth)) {
        return ParseFailure{"body is not valid JSON: nested deeper than " + std::to_string(maxNestingDepth) + " levels",
                            "bad_json"};
    }
    nlohmann::json json;
    try {
        json = nlohmann::json::parse(body);
    } catch (const nlohmann::json::exception& e) {
        // what() starts with "[json.exception.parse_error.101] ", which tells a client nothing.
        std::string_view detail = e.what();
        if (const std::size_t close = detail.find("] "); detail.starts_with("[json.") && close != detail.npos) {
            detail.remove_prefix(close + 2);
        }
        // The parser quotes what it last read, which can be most of the body.
        constexpr std::string_view lastRead = "; last read: ";
        const std::size_t split = detail.find(lastRead);
        std::string message = excerpt(detail.substr(0, split), 2 * maxQuotedBytes);
        if (split != std::string_view::npos) {
            message += std::string(lastRead) + excerpt(detail.substr(split + lastRead.size()), maxLastReadBytes);
        }
        return ParseFailure{"body is not valid JSON: " + message, "bad_json"};
    }
    if (!json.is_object()) return badEvent("body must be a JSON object");

    FluxEvent event;
    std::string error;

    const nlohmann::json* involved = member(json, "involvedObject");
    if (involved == nullptr) return badEvent("involvedObject is required");
    if (!involved->is_object()) return badEvent("involvedObject must be an object");
    ObjectRef& object = event.involvedObject;
    if (!requiredString(*involved, "kind", "involvedObject.kind", true, object.kind, error) ||
        !requiredString(*involved, "name", "involvedObject.name", true, object.name, error) ||
        !optionalString(*involved, "namespace", "involvedObject.namespace", object.namespace_, error) ||
        !optionalString(*involved, "uid", "involvedObject.uid", object.uid, error) ||
        !optionalString(*involved, "apiVersion", "involvedObject.apiVersion", object.apiVersion, error) ||
        !optionalString(*involved, "resourceVersion", "involvedObject.resourceVersion", object.resourceVersion,
                        error) ||
        !optionalString(*involved, "fieldPath", "involvedObject.fieldPath", object.fieldPath, error)) {
        return badEvent(error);
    }

    if (!requiredString(json, "severity", "severity", false, event.severity, error)) return badEvent(error);
    if (event.severity != "trace" && event.severity != "info" && event.severity != "error") {
        return badEvent("severity must be one of trace, info, error");
    }

    if (const nlohmann::json* timestamp = member(json, "timestamp")) {
        TimePoint parsed;
        if (!timestamp->is_string() || !parseRfc3339(timestamp->get_ref<const std::string&>(), parsed)) {
            return badEvent("timestamp must be an RFC3339 time string or null");
        }
        event.timestamp = timestamp->get<std::string>();
    }

    if (!requiredString(json, "message", "message", false, event.message, error) ||
        !requiredString(json, "reason", "reason", false, event.reason, error) ||
        !requiredString(json, "reportingController", "reportingController", false, event.reportingController, error) ||
        !optionalString(json, "reportingInstance", "reportingInstance", event.reportingInstance, error)) {
        return badEvent(error);
    }

    std::map<std::string, std::string> rawMetadata;
    if (const nlohmann::json* metadata = member(json, "metadata")) {
        if (!metadata->is_object()) return badEvent("metadata must be an object of strings");
        for (const auto& [key, value] : metadata->items()) {
            if (!value.is_string()) return badEvent("metadata." + excerpt(key) + " must be a string");
            rawMetadata.emplace(key, value.get<std::string>());
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
