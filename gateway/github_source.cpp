// The `github` source: authenticates a webhook delivery, then reads just enough of its JSON to route it.
#include "gateway/github_source.hpp"
#include "core/text.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <utility>

namespace fluxrelay {

namespace {

// GitHub payloads are a handful of objects deep; far deeper is an attempt to waste the parser's time.
constexpr int kMaxNestingDepth = 64;
// Delivery ids are GUIDs; they end up in storage keys, so anything else is bounded and printable.
constexpr std::size_t kMaxDeliveryIdBytes = 128;
constexpr std::size_t kMaxEventNameBytes = 64;

std::string_view trimBlanks(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    return text;
}

// Header values are quoted in errors: printable ASCII only, and short.
bool printableToken(std::string_view text, std::size_t maxBytes) {
    if (text.empty() || text.size() > maxBytes) return false;
    for (const char c : text) {
        if (c <= 0x20 || c >= 0x7f) return false;
    }
    return true;
}

std::string quotedForError(std::string_view text) {
    std::string out = "\"";
    for (const char c : text.substr(0, 80)) out += (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? c : '?';
    if (text.size() > 80) out += "...";
    return out + "\"";
}

int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// application/x-www-form-urlencoded decoding, as Go's url.QueryUnescape.
bool formDecode(std::string_view text, std::string& out) {
    out.clear();
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '+') {
            out += ' ';
        } else if (c == '%') {
            if (i + 2 >= text.size()) return false;
            const int high = hexValue(text[i + 1]);
            const int low = hexValue(text[i + 2]);
            if (high < 0 || low < 0) return false;
            out += static_cast<char>(high * 16 + low);
            i += 2;
        } else {
            out += c;
        }
    }
    return true;
}

// Reads a GitHub payload without building a document: checks it is one well-formed JSON object
// (nlohmann's SAX parser, which also rejects invalid UTF-8) and keeps the top-level `ref` and
// `deleted`, the only fields routing looks at.
class PayloadScanner final : public nlohmann::json_sax<nlohmann::json> {
public:
    std::string error;  // set when the scan stopped early
    bool isObject = false;
    std::optional<std::string> ref;
    std::optional<bool> deleted;
    bool refNotString = false;
    bool deletedNotBool = false;

    bool null() override { return scalar(Kind::null); }
    bool boolean(bool value) override {
        if (atTopLevelKey("deleted")) deleted = value;
        return scalar(Kind::boolean);
    }
    bool number_integer(number_integer_t) override { return scalar(Kind::other); }
    bool number_unsigned(number_unsigned_t) override { return scalar(Kind::other); }
    bool number_float(number_float_t, const string_t&) override { return scalar(Kind::other); }
    bool string(string_t& value) override {
        if (atTopLevelKey("ref")) ref = std::move(value);
        return scalar(Kind::string);
    }
    bool binary(binary_t&) override { return scalar(Kind::other); }

    bool start_object(std::size_t) override {
        if (depth_ == 0) isObject = true;
        return open();
    }
    bool key(string_t& value) override {
        if (depth_ == 1) key_ = value;
        return true;
    }
    bool end_object() override { return close(); }
    bool start_array(std::size_t) override { return open(); }
    bool end_array() override { return close(); }

    bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) override {
        error = "payload is not valid JSON (at byte " + std::to_string(position) + ")";
        return false;
    }

private:
    enum class Kind { null, boolean, string, other };

    bool atTopLevelKey(std::string_view name) const { return depth_ == 1 && key_ == name; }

    // A top-level ref or deleted of the wrong type is noted; null counts as absent, as in Go.
    bool scalar(Kind kind) {
        if (depth_ == 0) {
            error = "payload must be a JSON object";
            return false;
        }
        noteType(kind);
        return true;
    }

    void noteType(std::optional<Kind> kind) {
        if (depth_ != 1) return;
        if (key_ == "ref" && kind != Kind::string && kind != Kind::null) refNotString = true;
        if (key_ == "deleted" && kind != Kind::boolean && kind != Kind::null) deletedNotBool = true;
    }

    bool open() {
        if (depth_ == 0 && !isObject) {
            error = "payload must be a JSON object";
            return false;
        }
        noteType(std::nullopt);
        if (++depth_ > kMaxNestingDepth) {
            error = "payload is nested deeper than " + std::to_string(kMaxNestingDepth) + " levels";
            return false;
        }
        return true;
    }

    bool close() {
        --depth_;
        return true;
    }

    int depth_ = 0;
    std::string key_;
};

Rejection reject(int status, std::string error, std::string reason) {
    return Rejection{.status = status, .error = std::move(error), .reason = std::move(reason)};
}

bool signatureValid(const SourceConfig& source, const InboundRequest& request) {
    if (source.secret.empty()) return true;
    // As GitHub's own libraries: the sha256 header wins whenever it is there.
    if (const auto sha256 = request.header("X-Hub-Signature-256")) {
        return verifyGitHubSignature(HashAlgorithm::sha256, source.secret, *sha256, request.body);
    }
    if (source.allowSha1) {
        if (const auto sha1 = request.header("X-Hub-Signature")) {
            return verifyGitHubSignature(HashAlgorithm::sha1, source.secret, *sha1, request.body);
        }
    }
    return false;
}

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
    return out;
}

}  // namespace

bool verifyGitHubSignature(HashAlgorithm algorithm, std::string_view secret, std::string_view header,
                           std::string_view body) {
    const std::string_view prefix = algorithm == HashAlgorithm::sha1 ? "sha1=" : "sha256=";
    if (algorithm != HashAlgorithm::sha1 && algorithm != HashAlgorithm::sha256) return false;
    if (!header.starts_with(prefix)) return false;
    std::string given;
    if (!fromHex(header.substr(prefix.size()), given)) return false;
    // The digest's length is public (it follows from the algorithm); its bytes are compared in
    // constant time.
    return constantTimeEquals(hmac(algorithm, secret, body), given);
}

std::optional<std::string> formField(std::string_view body, std::string_view name) {
    while (true) {
        const std::size_t amp = body.find('&');
        const std::string_view pair = body.substr(0, amp);
        const std::size_t equals = pair.find('=');
        std::string key;
        if (formDecode(pair.substr(0, equals), key) && key == name) {
            std::string value;
            if (equals == std::string_view::npos) return value;
            if (!formDecode(pair.substr(equals + 1), value)) return std::nullopt;
            return value;
        }
        if (amp == std::string_view::npos) return std::nullopt;
        body.remove_prefix(amp + 1);
    }
}

std::variant<GitHubEvent, GitHubPing, Rejection> acceptGitHubRequest(const SourceConfig& source,
                                                                     const InboundRequest& request) {
    // First, so that a caller without the secret learns nothing else about what is accepted here.
    if (!signatureValid(source, request)) {
        return reject(401,
                      source.allowSha1 ? "missing or invalid X-Hub-Signature-256 (or X-Hub-Signature)"
                                       : "missing or invalid X-Hub-Signature-256",
                      "signature");
    }

    const auto eventHeader = request.header("X-GitHub-Event");
    if (!eventHeader || eventHeader->empty()) return reject(400, "X-GitHub-Event header is required", "bad_event");
    if (!printableToken(*eventHeader, kMaxEventNameBytes)) {
        return reject(400, "X-GitHub-Event must be an event name such as push", "bad_event");
    }
    const auto deliveryHeader = request.header("X-GitHub-Delivery");
    if (!deliveryHeader || deliveryHeader->empty()) {
        return reject(400, "X-GitHub-Delivery header is required", "bad_event");
    }
    if (!printableToken(*deliveryHeader, kMaxDeliveryIdBytes)) {
        return reject(
            400, "X-GitHub-Delivery must be at most " + std::to_string(kMaxDeliveryIdBytes) + " printable characters",
            "bad_event");
    }

    const auto contentType = request.header("Content-Type");
    const std::string_view mediaType = contentType ? trimBlanks(contentType->substr(0, contentType->find(';'))) : "";
    std::string payload;
    if (equalsIgnoreCase(mediaType, "application/json")) {
        payload = request.body;
    } else if (equalsIgnoreCase(mediaType, "application/x-www-form-urlencoded")) {
        // The signature covered the form body as sent; the event is the JSON inside it.
        std::optional<std::string> field = formField(request.body, "payload");
        if (!field) return reject(400, "form body needs a url-encoded payload field", "bad_json");
        payload = std::move(*field);
    } else {
        return reject(
            415,
            (contentType ? "unsupported Content-Type " + quotedForError(*contentType) : "missing Content-Type") +
                "; send application/json or application/x-www-form-urlencoded",
            "content_type");
    }

    PayloadScanner scanner;
    const bool parsed = nlohmann::json::sax_parse(payload, &scanner);
    if (!parsed || !scanner.isObject) {
        return reject(400, scanner.error.empty() ? "payload must be a JSON object" : scanner.error, "bad_json");
    }

    GitHubEvent event{.event = std::string(*eventHeader), .deliveryId = std::string(*deliveryHeader)};
    if (event.event == "ping") return GitHubPing{std::move(event.deliveryId)};

    if (!source.events.empty()) {
        bool listed = false;
        // Flux's Receiver compares event names case-insensitively too.
        for (const auto& name : source.events) listed = listed || equalsIgnoreCase(name, event.event);
        if (!listed) {
            return reject(400,
                          "GitHub event " + quotedForError(event.event) + " is not accepted by source " + source.name +
                              " (events: " + joined(source.events) +
                              "); deselect it in the webhook's settings or add it to the source's events",
                          "event_type");
        }
    }

    if (event.event == "push") {
        if (scanner.refNotString) return reject(400, "ref must be a string", "bad_event");
        if (scanner.deletedNotBool) return reject(400, "deleted must be true or false", "bad_event");
        if (!scanner.ref || scanner.ref->empty()) return reject(400, "ref is required in a push payload", "bad_event");
        event.ref = std::move(*scanner.ref);
        event.deleted = scanner.deleted.value_or(false);
    }
    event.body = std::move(payload);
    return event;
}

}  // namespace fluxrelay
