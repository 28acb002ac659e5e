// The Event's JSON forms: Flux's wire format (as Go writes it) and fluxrelay's storage record.
#include "core/event.hpp"

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/crypto.hpp"
#include "core/text.hpp"

namespace fluxrelay {

namespace {

constexpr int kStorageVersion = 1;

// metav1.Time marshals as UTC with seconds precision; a timestamp that does not parse (which
// parseFluxEvent never lets through) is passed on as received rather than lost.
std::string goTimestamp(const std::string& timestamp) {
    TimePoint parsed;
    return parseRfc3339(timestamp, parsed) ? formatRfc3339(parsed) : timestamp;
}

// Length of the valid UTF-8 sequence at `pos`, 0 when the bytes there are not one.
std::size_t utf8SequenceLength(std::string_view text, std::size_t pos, std::uint32_t& codePoint) {
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
    const unsigned char lead = byte(pos);
    std::size_t length = 0;
    std::uint32_t min = 0;
    if (lead < 0x80) {
        codePoint = lead;
        return 1;
    } else if ((lead & 0xe0) == 0xc0) {
        length = 2, min = 0x80, codePoint = lead & 0x1f;
    } else if ((lead & 0xf0) == 0xe0) {
        length = 3, min = 0x800, codePoint = lead & 0x0f;
    } else if ((lead & 0xf8) == 0xf0) {
        length = 4, min = 0x10000, codePoint = lead & 0x07;
    } else {
        return 0;
    }
    if (pos + length > text.size()) return 0;
    for (std::size_t i = 1; i < length; ++i) {
        if ((byte(pos + i) & 0xc0) != 0x80) return 0;
        codePoint = (codePoint << 6) | (byte(pos + i) & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid, as Go's utf8 package says.
    if (codePoint < min || codePoint > 0x10ffff || (codePoint >= 0xd800 && codePoint <= 0xdfff)) return 0;
    return length;
}

// What a JSON string writer does with bytes that are not UTF-8.
enum class InvalidUtf8 {
    replace,  // U+FFFD for each invalid byte, as Go does
    refuse,   // throw std::invalid_argument naming `what`
};

// True for the ASCII bytes a JSON string carries as they are (Go's HTML-safe set).
constexpr bool plainAscii(unsigned char c) {
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&';
}

// A JSON string literal escaped exactly as Go's encoding/json does with HTML escaping on. Runs of
// plain ASCII, most of any message, are copied whole.
void appendGoString(std::string& out, std::string_view text, InvalidUtf8 invalid = InvalidUtf8::replace,
                    std::string_view what = {}) {
    static constexpr char kHexDigits[] = "0123456789abcdef";
    out.push_back('"');
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t run = pos;
        while (run < text.size() && plainAscii(static_cast<unsigned char>(text[run]))) ++run;
        out.append(text.data() + pos, run - pos);
        pos = run;
        if (pos == text.size()) break;
        const unsigned char c = static_cast<unsigned char>(text[pos]);
        if (c < 0x80) {
            switch (c) {
                case '"':
                    out += "\\\"";
                    break;
                case '\\':
                    out += "\\\\";
                    break;
                case '\b':
                    out += "\\b";
                    break;
                case '\f':
                    out += "\\f";
                    break;
                case '\n':
                    out += "\\n";
                    break;
                case '\r':
                    out += "\\r";
                    break;
                case '\t':
                    out += "\\t";
                    break;
                default:  // <, >, & and the other control characters
                    out += "\\u00";
                    out.push_back(kHexDigits[c >> 4]);
                    out.push_back(kHexDigits[c & 0x0f]);
            }
            ++pos;
            continue;
        }
        std::uint32_t codePoint = 0;
        const std::size_t length = utf8SequenceLength(text, pos, codePoint);
        if (length == 0) {
            if (invalid == InvalidUtf8::refuse) {
                throw std::invalid_argument(std::string(what) + " is not valid UTF-8");
            }
            // Go replaces each invalid byte with U+FFFD.
            out += "\\ufffd";
            ++pos;
        } else if (codePoint == 0x2028 || codePoint == 0x2029) {
            // Line and paragraph separators break JavaScript string literals; Go escapes them.
            out += codePoint == 0x2028 ? "\\u2028" : "\\u2029";
            pos += length;
        } else {
            out.append(text.substr(pos, length));
            pos += length;
        }
    }
    out.push_back('"');
}

// Appends `"name":"value"` (with a leading comma unless first), skipping empty values when
// `omitEmpty`, as Go's `,omitempty` tag does.
void appendField(std::string& out, bool& first, std::string_view name, const std::string& value, bool omitEmpty) {
    if (omitEmpty && value.empty()) return;
    if (!first) out.push_back(',');
    first = false;
    appendGoString(out, name);
    out.push_back(':');
    appendGoString(out, value);
}

// A string of the storage record. Flux's fields are UTF-8 by the time they are stored (the JSON
// parser and the config loader see to it); one that is not is refused rather than stored altered.
void appendStorageString(std::string& out, std::string_view name, std::string_view value) {
    appendGoString(out, value, InvalidUtf8::refuse, name);
}

// `,"name":"value"`, the leading comma unless `first`.
void appendStorageField(std::string& out, std::string_view name, std::string_view value, bool first = false) {
    if (!first) out.push_back(',');
    appendGoString(out, name);
    out.push_back(':');
    appendStorageString(out, name, value);
}

// Raw bytes from the wire (a webhook body, header values) need not be UTF-8, which JSON text
// cannot carry; those go in hex under `<name>Hex` so the record still round-trips byte for byte.
void appendBytesField(std::string& out, std::string_view name, const std::string& value) {
    if (isValidUtf8(value)) {
        appendStorageField(out, name, value);
    } else {
        appendStorageField(out, std::string(name) + "Hex", toHex(value));
    }
}

std::string getBytes(const nlohmann::json& json, const std::string& name) {
    if (const auto it = json.find(name + "Hex"); it != json.end()) {
        std::string bytes;
        if (!fromHex(it->get<std::string>(), bytes))
            throw std::runtime_error("event record has invalid " + name + "Hex");
        return bytes;
    }
    return json.at(name).get<std::string>();
}

void appendFluxRecord(std::string& out, const FluxEvent& flux) {
    const ObjectRef& object = flux.involvedObject;
    out += R"({"involvedObject":{)";
    appendStorageField(out, "kind", object.kind, true);
    appendStorageField(out, "namespace", object.namespace_);
    appendStorageField(out, "name", object.name);
    appendStorageField(out, "uid", object.uid);
    appendStorageField(out, "apiVersion", object.apiVersion);
    appendStorageField(out, "resourceVersion", object.resourceVersion);
    appendStorageField(out, "fieldPath", object.fieldPath);
    out.push_back('}');
    appendStorageField(out, "severity", flux.severity);
    appendStorageField(out, "timestamp", flux.timestamp);
    appendStorageField(out, "message", flux.message);
    appendStorageField(out, "reason", flux.reason);
    out += R"(,"metadata":{)";
    bool first = true;
    for (const auto& [key, value] : flux.metadata) {
        if (!first) out.push_back(',');
        first = false;
        appendStorageString(out, "a metadata key", key);
        out.push_back(':');
        appendStorageString(out, key, value);
    }
    out.push_back('}');
    appendStorageField(out, "reportingController", flux.reportingController);
    appendStorageField(out, "reportingInstance", flux.reportingInstance);
    appendStorageField(out, "dedupToken", flux.dedupToken);
    out += flux.resolveOnly ? R"(,"resolveOnly":true})" : R"(,"resolveOnly":false})";
}

FluxEvent fluxFromStorage(const nlohmann::json& json) {
    const nlohmann::json& object = json.at("involvedObject");
    FluxEvent flux;
    flux.involvedObject.kind = object.at("kind").get<std::string>();
    flux.involvedObject.namespace_ = object.at("namespace").get<std::string>();
    flux.involvedObject.name = object.at("name").get<std::string>();
    flux.involvedObject.uid = object.at("uid").get<std::string>();
    flux.involvedObject.apiVersion = object.at("apiVersion").get<std::string>();
    flux.involvedObject.resourceVersion = object.at("resourceVersion").get<std::string>();
    flux.involvedObject.fieldPath = object.at("fieldPath").get<std::string>();
    flux.severity = json.at("severity").get<std::string>();
    flux.timestamp = json.at("timestamp").get<std::string>();
    flux.message = json.at("message").get<std::string>();
    flux.reason = json.at("reason").get<std::string>();
    flux.metadata = json.at("metadata").get<std::map<std::string, std::string>>();
    flux.reportingController = json.at("reportingController").get<std::string>();
    flux.reportingInstance = json.at("reportingInstance").get<std::string>();
    // Added after the first records were written; absent means none.
    flux.dedupToken = json.value("dedupToken", std::string());
    flux.resolveOnly = json.value("resolveOnly", false);
    return flux;
}

}  // namespace

std::string ObjectRef::group() const {
    // As Kubernetes' schema.ParseGroupVersion: "v1" is the core group, "g/v" names group g, and
    // anything with more slashes is invalid, which Flux then treats as no group.
    const std::size_t slash = apiVersion.find('/');
    if (slash == std::string::npos || apiVersion.find('/', slash + 1) != std::string::npos) return "";
    return apiVersion.substr(0, slash);
}

nlohmann::json toFluxJson(const FluxEvent& event) {
    const ObjectRef& object = event.involvedObject;
    nlohmann::json involved = nlohmann::json::object();
    // corev1.ObjectReference tags every field `,omitempty`.
    const auto putIfSet = [&involved](const char* name, const std::string& value) {
        if (!value.empty()) involved[name] = value;
    };
    putIfSet("kind", object.kind);
    putIfSet("namespace", object.namespace_);
    putIfSet("name", object.name);
    putIfSet("uid", object.uid);
    putIfSet("apiVersion", object.apiVersion);
    putIfSet("resourceVersion", object.resourceVersion);
    putIfSet("fieldPath", object.fieldPath);

    nlohmann::json json = nlohmann::json::object();
    json["involvedObject"] = std::move(involved);
    json["severity"] = event.severity;
    // metav1.Time writes null for the zero time; the field itself has no omitempty.
    json["timestamp"] =
        event.timestamp.empty() ? nlohmann::json(nullptr) : nlohmann::json(goTimestamp(event.timestamp));
    json["message"] = event.message;
    json["reason"] = event.reason;
    if (!event.metadata.empty()) json["metadata"] = event.metadata;
    json["reportingController"] = event.reportingController;
    if (!event.reportingInstance.empty()) json["reportingInstance"] = event.reportingInstance;
    return json;
}

std::string toFluxJsonText(const FluxEvent& event) {
    const ObjectRef& object = event.involvedObject;
    std::string out = "{\"involvedObject\":{";
    bool first = true;
    appendField(out, first, "kind", object.kind, true);
    appendField(out, first, "namespace", object.namespace_, true);
    appendField(out, first, "name", object.name, true);
    appendField(out, first, "uid", object.uid, true);
    appendField(out, first, "apiVersion", object.apiVersion, true);
    appendField(out, first, "resourceVersion", object.resourceVersion, true);
    appendField(out, first, "fieldPath", object.fieldPath, true);
    out += "}";
    first = false;
    appendField(out, first, "severity", event.severity, false);
    if (event.timestamp.empty()) {
        out += ",\"timestamp\":null";
    } else {
        appendField(out, first, "timestamp", goTimestamp(event.timestamp), false);
    }
    appendField(out, first, "message", event.message, false);
    appendField(out, first, "reason", event.reason, false);
    if (!event.metadata.empty()) {
        // Go sorts map keys byte-wise, which is std::map's order for std::string.
        out += ",\"metadata\":{";
        bool firstEntry = true;
        for (const auto& [key, value] : event.metadata) {
            appendField(out, firstEntry, key, value, false);
        }
        out += "}";
    }
    appendField(out, first, "reportingController", event.reportingController, false);
    appendField(out, first, "reportingInstance", event.reportingInstance, true);
    out += "}";
    return out;
}

std::string toStorageText(const Event& event) {
    std::string out;
    out.reserve(512 + (event.flux() ? event.flux()->message.size() : event.github()->body.size()));
    out += R"({"v":)" + std::to_string(kStorageVersion);
    appendStorageField(out, "id", event.id);
    appendStorageField(out, "source", event.source);
    // RFC3339Nano keeps every nanosecond, so the record reads back to the same time point.
    appendStorageField(out, "receivedAt", formatRfc3339Nano(event.receivedAt));
    if (const FluxEvent* flux = event.flux()) {
        out += R"(,"kind":"flux","flux":)";
        appendFluxRecord(out, *flux);
    } else if (const GitHubEvent* github = event.github()) {
        out += R"(,"kind":"github","github":{"deleted":)";
        out += github->deleted ? "true" : "false";
        appendBytesField(out, "event", github->event);
        appendBytesField(out, "deliveryId", github->deliveryId);
        appendBytesField(out, "ref", github->ref);
        appendBytesField(out, "body", github->body);
        out.push_back('}');
    }
    out.push_back('}');
    return out;
}

namespace {

Event fromStorageJson(const nlohmann::json& json) {
    // Storage only ever holds records toStorageJson wrote; anything else is corruption, which
    // surfaces as nlohmann::json::exception or std::runtime_error for storage to quarantine.
    if (json.at("v").get<int>() != kStorageVersion) {
        throw std::runtime_error("unsupported event record version " + json.at("v").dump());
    }
    Event event;
    event.id = json.at("id").get<std::string>();
    event.source = json.at("source").get<std::string>();
    const std::string receivedAt = json.at("receivedAt").get<std::string>();
    if (!parseRfc3339(receivedAt, event.receivedAt)) {
        throw std::runtime_error("event record has an invalid receivedAt: " + receivedAt);
    }
    const std::string kind = json.at("kind").get<std::string>();
    if (kind == "flux") {
        event.payload = fluxFromStorage(json.at("flux"));
    } else if (kind == "github") {
        const nlohmann::json& github = json.at("github");
        event.payload = GitHubEvent{
            .event = getBytes(github, "event"),
            .deliveryId = getBytes(github, "deliveryId"),
            .ref = getBytes(github, "ref"),
            .deleted = github.at("deleted").get<bool>(),
            .body = getBytes(github, "body"),
        };
    } else {
        throw std::runtime_error("event record has an unknown kind: " + kind);
    }
    return event;
}

}  // namespace

Event fromStorageText(std::string_view text) { return fromStorageJson(nlohmann::json::parse(text)); }

std::string newEventId() {
    const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
    std::string bytes(6, '\0');
    for (int i = 5; i >= 0; --i) {
        bytes[static_cast<std::size_t>(i)] =
            static_cast<char>((static_cast<std::uint64_t>(millis) >> (8 * (5 - i))) & 0xff);
    }
    return toHex(bytes + randomBytes(10));
}

}  // namespace fluxrelay
