// Unit tests for the flux source: Flux's signature vector, metadata normalization, every rejection.
#include "gateway/flux_source.hpp"

#include <doctest/doctest.h>

#include <map>
#include <string>

#include "core/crypto.hpp"

using namespace fluxrelay;

namespace {

// Flux's published generic-hmac test vector.
constexpr std::string_view vectorKey = "7152fed34dd6149a7c75a276c510da27cb6f82b0";
constexpr std::string_view vectorBody =
    R"({"involvedObject":{"kind":"GitRepository","namespace":"gitops-system","name":"webapp"},"severity":"info",)"
    R"("timestamp":"2022-09-30T06:40:29Z","message":"message","reason":"reason","metadata":{"test":"metadata"},)"
    R"("reportingController":"source-controller","reportingInstance":"source-controller-xyz"})";
constexpr std::string_view vectorSignature = "sha256=65b018549b1254e7226d1c08f9567ee45bc9de0fc4e7b1a40253f9a018b08be7";

std::string lower(std::string_view text) {
    std::string out(text);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// An HTTP request as the session hands it over: header names looked up case-insensitively.
struct FakeRequest {
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;

    FakeRequest(std::string requestBody, std::map<std::string, std::string> requestHeaders)
        : body(std::move(requestBody)) {
        for (auto& [name, value] : requestHeaders) headers[lower(name)] = value;
    }

    InboundRequest inbound() const {
        return InboundRequest{
            .body = body,
            .header = [this](std::string_view name) -> std::optional<std::string_view> {
                const auto it = headers.find(lower(name));
                if (it == headers.end()) return std::nullopt;
                return std::string_view(it->second);
            },
        };
    }
};

FluxEvent parseOk(std::string_view body) {
    auto result = parseFluxEvent(body);
    if (const auto* error = std::get_if<std::string>(&result)) {
        FAIL_CHECK("unexpected parse error: " << *error);
        return {};
    }
    return std::get<FluxEvent>(result);
}

std::string parseError(std::string_view body) {
    auto result = parseFluxEvent(body);
    if (const auto* error = std::get_if<std::string>(&result)) return *error;
    return "(parsed)";
}

// A minimal valid event body with `extra` members spliced in after the required ones.
std::string eventBody(std::string_view apiVersion, std::string_view metadataJson) {
    return R"({"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"apps","apiVersion":")" +
           std::string(apiVersion) +
           R"("},"severity":"info","timestamp":null,"message":"m","reason":"r","reportingController":"c","metadata":)" +
           std::string(metadataJson) + "}";
}

Rejection rejection(const SourceConfig& source, const FakeRequest& request) {
    auto result = acceptFluxRequest(source, request.inbound());
    if (auto* rejected = std::get_if<Rejection>(&result)) return *rejected;
    FAIL_CHECK("request was accepted");
    return {};
}

}  // namespace

TEST_CASE("Flux's published test vector verifies") {
    CHECK(verifyFluxSignature(vectorKey, vectorSignature, vectorBody));
    CHECK(toHex(hmac(HashAlgorithm::sha256, vectorKey, vectorBody)) ==
          "65b018549b1254e7226d1c08f9567ee45bc9de0fc4e7b1a40253f9a018b08be7");
}

TEST_CASE("the signature covers the raw body and the key") {
    std::string body(vectorBody);
    body.back() = ' ';
    CHECK_FALSE(verifyFluxSignature(vectorKey, vectorSignature, body));
    CHECK_FALSE(verifyFluxSignature(vectorBody.substr(1), vectorSignature, vectorBody));
    CHECK_FALSE(verifyFluxSignature(vectorKey, vectorSignature, std::string(vectorBody) + "\n"));
}

TEST_CASE("sha384 and sha512 signatures, upper-case hex") {
    const std::string sha384 = "sha384=" + toHex(hmac(HashAlgorithm::sha384, vectorKey, vectorBody));
    const std::string sha512 = "sha512=" + toHex(hmac(HashAlgorithm::sha512, vectorKey, vectorBody));
    CHECK(verifyFluxSignature(vectorKey, sha384, vectorBody));
    CHECK(verifyFluxSignature(vectorKey, sha512, vectorBody));
    CHECK(verifyFluxSignature(vectorKey, "sha256=65B018549B1254E7226D1C08F9567EE45BC9DE0FC4E7B1A40253F9A018B08BE7",
                              vectorBody));
    // A digest of one algorithm under another's name.
    CHECK_FALSE(verifyFluxSignature(vectorKey, "sha512=" + sha384.substr(7), vectorBody));
}

TEST_CASE("malformed X-Signature headers are false, never an exception") {
    const std::string hex = std::string(vectorSignature.substr(7));
    for (const std::string& header : {
             std::string(""),
             std::string("sha256"),
             hex,                                                                // no '='
             "sha1=" + toHex(hmac(HashAlgorithm::sha1, vectorKey, vectorBody)),  // not accepted here
             "md5=" + hex,
             "SHA256=" + hex,
             "sha256 =" + hex,
             "sha256= " + hex,
             std::string("sha256="),
             "sha256=" + hex.substr(1),  // odd length
             "sha256=" + hex.substr(2),  // too short
             "sha256=" + hex + "00",     // too long
             "sha256=zz" + hex.substr(2),
             "=" + hex,
         }) {
        CHECK_MESSAGE(!verifyFluxSignature(vectorKey, header, vectorBody), header);
    }
}

TEST_CASE("parseFluxEvent reads the vector body") {
    const FluxEvent event = parseOk(vectorBody);
    CHECK(event.involvedObject.kind == "GitRepository");
    CHECK(event.involvedObject.namespace_ == "gitops-system");
    CHECK(event.involvedObject.name == "webapp");
    CHECK(event.severity == "info");
    CHECK(event.timestamp == "2022-09-30T06:40:29Z");
    CHECK(event.message == "message");
    CHECK(event.reason == "reason");
    CHECK(event.metadata == std::map<std::string, std::string>{{"test", "metadata"}});
    CHECK(event.reportingController == "source-controller");
    CHECK(event.reportingInstance == "source-controller-xyz");
    CHECK(event.dedupToken.empty());
    // Written back as Go would, it is the same bytes Flux signed.
    CHECK(toFluxJsonText(event) == vectorBody);
}

TEST_CASE("parseFluxEvent reads every optional field, and null as absent") {
    const FluxEvent event = parseOk(
        R"({"involvedObject":{"kind":"HelmRelease","namespace":"apps","name":"podinfo","uid":"u-1",)"
        R"("apiVersion":"helm.toolkit.fluxcd.io/v2","resourceVersion":"42","fieldPath":"spec"},)"
        R"("severity":"error","timestamp":"2024-05-06T07:08:09.5+02:00","message":"failed","reason":"InstallFailed",)"
        R"("reportingController":"helm-controller","reportingInstance":null,"metadata":null,"extra":[1,{"x":2}]})");
    CHECK(event.involvedObject.uid == "u-1");
    CHECK(event.involvedObject.apiVersion == "helm.toolkit.fluxcd.io/v2");
    CHECK(event.involvedObject.resourceVersion == "42");
    CHECK(event.involvedObject.fieldPath == "spec");
    CHECK(event.severity == "error");
    CHECK(event.timestamp == "2024-05-06T07:08:09.5+02:00");
    CHECK(event.reportingInstance.empty());
    CHECK(event.metadata.empty());

    const FluxEvent minimal =
        parseOk(R"({"involvedObject":{"kind":"Bucket","name":"b"},"severity":"trace","message":"","reason":"",)"
                R"("reportingController":""})");
    CHECK(minimal.timestamp.empty());
    CHECK(minimal.involvedObject.namespace_.empty());
}

TEST_CASE("metadata from kustomize-controller: its own group prefix is stripped") {
    const FluxEvent event = parseOk(
        eventBody("kustomize.toolkit.fluxcd.io/v1",
                  R"({"kustomize.toolkit.fluxcd.io/revision":"main@sha1:0123456789abcdef0123456789abcdef01234567",)"
                  R"("kustomize.toolkit.fluxcd.io/originRevision":"v1.2.3@sha1:abc"})"));
    CHECK(event.metadata ==
          std::map<std::string, std::string>{{"revision", "main@sha1:0123456789abcdef0123456789abcdef01234567"},
                                             {"originRevision", "v1.2.3@sha1:abc"}});
}

TEST_CASE("metadata from helm-controller: helm group kept, other groups dropped") {
    const FluxEvent event =
        parseOk(eventBody("helm.toolkit.fluxcd.io/v2", R"({"helm.toolkit.fluxcd.io/revision":"6.5.4",)"
                                                       R"("helm.toolkit.fluxcd.io/appVersion":"1.0",)"
                                                       R"("kustomize.toolkit.fluxcd.io/revision":"foreign",)"
                                                       R"("source.toolkit.fluxcd.io/digest":"sha256:x",)"
                                                       R"("example.com/team":"a"})"));
    CHECK(event.metadata == std::map<std::string, std::string>{{"revision", "6.5.4"}, {"appVersion", "1.0"}});
}

TEST_CASE("event.toolkit.fluxcd.io keys are stripped; the object's group wins conflicts") {
    const FluxEvent event = parseOk(eventBody("kustomize.toolkit.fluxcd.io/v1",
                                              R"({"event.toolkit.fluxcd.io/cluster":"home",)"
                                              R"("event.toolkit.fluxcd.io/revision":"from-event-group",)"
                                              R"("revision":"unprefixed",)"
                                              R"("kustomize.toolkit.fluxcd.io/revision":"from-object-group",)"
                                              R"("event.toolkit.fluxcd.io/summary":"from-event-group",)"
                                              R"("summary":"unprefixed"})"));
    CHECK(event.metadata == std::map<std::string, std::string>{
                                {"cluster", "home"}, {"revision", "from-object-group"}, {"summary", "unprefixed"}});
}

TEST_CASE("un-prefixed metadata, as notification-controller forwards it, is kept as it is") {
    const FluxEvent event =
        parseOk(eventBody("source.toolkit.fluxcd.io/v1", R"({"revision":"main@sha1:abc","summary":"prod cluster",)"
                                                         R"("commit_status":"update"})"));
    CHECK(event.metadata == std::map<std::string, std::string>{{"revision", "main@sha1:abc"},
                                                               {"summary", "prod cluster"},
                                                               {"commit_status", "update"}});
}

TEST_CASE("checksum, digest and token are dropped; the token is kept for dedup") {
    FluxEvent event =
        parseOk(eventBody("source.toolkit.fluxcd.io/v1", R"({"source.toolkit.fluxcd.io/checksum":"c",)"
                                                         R"("source.toolkit.fluxcd.io/digest":"sha256:d",)"
                                                         R"("source.toolkit.fluxcd.io/token":"group-token",)"
                                                         R"("token":"bare-token","Digest":"D","checksum":"c2",)"
                                                         R"("event.toolkit.fluxcd.io/digest":"e",)"
                                                         R"("source.toolkit.fluxcd.io/revision":"r"})"));
    CHECK(event.metadata == std::map<std::string, std::string>{{"revision", "r"}});
    CHECK(event.dedupToken == "group-token");

    event = parseOk(eventBody("source.toolkit.fluxcd.io/v1", R"({"token":"bare-token"})"));
    CHECK(event.metadata.empty());
    CHECK(event.dedupToken == "bare-token");

    // Another group's token is neither metadata nor a dedup token.
    event = parseOk(eventBody("source.toolkit.fluxcd.io/v1", R"({"helm.toolkit.fluxcd.io/token":"t"})"));
    CHECK(event.metadata.empty());
    CHECK(event.dedupToken.empty());
}

TEST_CASE("an object without an API group: only un-prefixed and event-group keys remain") {
    const FluxEvent event =
        parseOk(eventBody("v1", R"({"a":"1","event.toolkit.fluxcd.io/b":"2","apps/c":"3","x.io/d":"4"})"));
    CHECK(event.metadata == std::map<std::string, std::string>{{"a", "1"}, {"b", "2"}});
}

TEST_CASE("every shape error names the field") {
    const std::string object = R"("involvedObject":{"kind":"K","name":"n"})";
    const std::string rest = R"("message":"m","reason":"r","reportingController":"c")";
    const auto body = [&](std::string_view members) { return "{" + std::string(members) + "}"; };
    const std::map<std::string, std::string> cases = {
        {"[]", "body must be a JSON object"},
        {"\"text\"", "body must be a JSON object"},
        {"null", "body must be a JSON object"},
        {body(R"("severity":"info",)" + rest), "involvedObject is required"},
        {body(R"("involvedObject":null,"severity":"info",)" + rest), "involvedObject is required"},
        {body(R"("involvedObject":"x","severity":"info",)" + rest), "involvedObject must be an object"},
        {body(R"("involvedObject":{"name":"n"},"severity":"info",)" + rest), "involvedObject.kind is required"},
        {body(R"("involvedObject":{"kind":"","name":"n"},"severity":"info",)" + rest),
         "involvedObject.kind is required"},
        {body(R"("involvedObject":{"kind":1,"name":"n"},"severity":"info",)" + rest),
         "involvedObject.kind must be a string"},
        {body(R"("involvedObject":{"kind":"K"},"severity":"info",)" + rest), "involvedObject.name is required"},
        {body(R"("involvedObject":{"kind":"K","name":""},"severity":"info",)" + rest),
         "involvedObject.name is required"},
        {body(R"("involvedObject":{"kind":"K","name":"n","namespace":3},"severity":"info",)" + rest),
         "involvedObject.namespace must be a string"},
        {body(R"("involvedObject":{"kind":"K","name":"n","uid":{}},"severity":"info",)" + rest),
         "involvedObject.uid must be a string"},
        {body(R"("involvedObject":{"kind":"K","name":"n","apiVersion":true},"severity":"info",)" + rest),
         "involvedObject.apiVersion must be a string"},
        {body(R"("involvedObject":{"kind":"K","name":"n","resourceVersion":1},"severity":"info",)" + rest),
         "involvedObject.resourceVersion must be a string"},
        {body(R"("involvedObject":{"kind":"K","name":"n","fieldPath":[]},"severity":"info",)" + rest),
         "involvedObject.fieldPath must be a string"},
        {body(object + "," + rest), "severity is required"},
        {body(object + R"(,"severity":2,)" + rest), "severity must be a string"},
        {body(object + R"(,"severity":"warning",)" + rest), "severity must be one of trace, info, error"},
        {body(object + R"(,"severity":"Info",)" + rest), "severity must be one of trace, info, error"},
        {body(object + R"(,"severity":"info","timestamp":"yesterday",)" + rest),
         "timestamp must be an RFC3339 time string or null"},
        {body(object + R"(,"severity":"info","timestamp":"",)" + rest),
         "timestamp must be an RFC3339 time string or null"},
        {body(object + R"(,"severity":"info","timestamp":1664520029,)" + rest),
         "timestamp must be an RFC3339 time string or null"},
        {body(object + R"(,"severity":"info","reason":"r","reportingController":"c")"), "message is required"},
        {body(object + R"(,"severity":"info","message":1,"reason":"r","reportingController":"c")"),
         "message must be a string"},
        {body(object + R"(,"severity":"info","message":"m","reportingController":"c")"), "reason is required"},
        {body(object + R"(,"severity":"info","message":"m","reason":["r"],"reportingController":"c")"),
         "reason must be a string"},
        {body(object + R"(,"severity":"info","message":"m","reason":"r")"), "reportingController is required"},
        {body(object + R"(,"severity":"info","message":"m","reason":"r","reportingController":false)"),
         "reportingController must be a string"},
        {body(object + R"(,"severity":"info","reportingInstance":7,)" + rest), "reportingInstance must be a string"},
        {body(object + R"(,"severity":"info","metadata":"x",)" + rest), "metadata must be an object of strings"},
        {body(object + R"(,"severity":"info","metadata":["x"],)" + rest), "metadata must be an object of strings"},
        {body(object + R"(,"severity":"info","metadata":{"ok":"1","foo":1},)" + rest), "metadata.foo must be a string"},
        {body(object + R"(,"severity":"info","metadata":{"foo":null},)" + rest), "metadata.foo must be a string"},
        {body(object + R"(,"severity":"info","metadata":{"kustomize.toolkit.fluxcd.io/x":{}},)" + rest),
         "metadata.kustomize.toolkit.fluxcd.io/x must be a string"},
    };
    // Not a structured binding: doctest's message lambda captures it, which clang 14 cannot.
    for (const auto& entry : cases) {
        CHECK_MESSAGE(parseError(entry.first) == entry.second, entry.first);
    }
}

TEST_CASE("the one-pass reader: the last duplicate wins, unknown members of any shape are skipped, key order is free") {
    // A repeated member replaces the earlier one whole, as Go's decoder and a parsed tree do.
    const auto repeated = parseFluxEvent(
        R"({"involvedObject":{"kind":"Old","name":"old","uid":"u"},"severity":"error","message":"first",)"
        R"("metadata":{"a":"1","b":"2"},"unknown":{"involvedObject":{"kind":"X"},"list":[{"severity":1},[null]]},)"
        R"("involvedObject":{"kind":"K","name":"n"},"message":"m","reason":"r","reportingController":"c",)"
        R"("metadata":{"b":"3","b":"4"},"severity":"info","extra":[1,{"a":{"b":"c"}}]})");
    REQUIRE(std::holds_alternative<FluxEvent>(repeated));
    const FluxEvent& event = std::get<FluxEvent>(repeated);
    CHECK(event.involvedObject.kind == "K");
    CHECK(event.involvedObject.name == "n");
    CHECK(event.involvedObject.uid.empty());
    CHECK(event.severity == "info");
    CHECK(event.message == "m");
    CHECK(event.metadata == std::map<std::string, std::string>{{"b", "4"}});

    // A member that was an object and then something else is the something else, and back.
    CHECK(parseError(R"({"involvedObject":{"kind":"K","name":"n"},"involvedObject":"x","severity":"info",)"
                     R"("message":"m","reason":"r","reportingController":"c"})") == "involvedObject must be an object");
    CHECK(std::holds_alternative<FluxEvent>(
        parseFluxEvent(R"({"metadata":"x","metadata":{"a":"1"},"involvedObject":{"kind":"K","name":"n"},)"
                       R"("severity":"info","message":"m","reason":"r","reportingController":"c"})")));

    // Errors are checked in a fixed order, whatever order the members come in.
    CHECK(parseError(R"({"reportingController":1,"severity":"bad","involvedObject":{"name":"n"}})") ==
          "involvedObject.kind is required");
}

TEST_CASE("JSON syntax errors say so") {
    for (const std::string_view input : {"", "{", "{\"a\":}", "not json", "{} {}", "{\"a\":1,}"}) {
        const std::string error = parseError(input);
        CHECK_MESSAGE(error.starts_with("body is not valid JSON: "), input);
        CHECK(error.find("[json.exception") == std::string::npos);
    }
}

TEST_CASE("hostile bodies are rejected or accepted, never thrown") {
    const std::string deep(100'000, '[');
    const std::string deepObject = [] {
        std::string out;
        for (int i = 0; i < 10'000; ++i) out += "{\"a\":";
        return out;
    }();
    const std::string hugeString = R"({"involvedObject":{"kind":"K","name":"n"},"severity":"info","message":")" +
                                   std::string(2'000'000, 'x') + R"(","reason":"r","reportingController":"c"})";
    const std::string unterminated = "{\"message\":\"" + std::string(1'000'000, 'y');
    const std::string badUtf8 = "{\"message\":\"\xff\xfe\xc3\"}";
    const std::string badUtf8Key = "{\"\xc0\xaf\":1}";
    const std::string loneSurrogate = R"({"message":"\ud800"})";
    const std::string hugeNumber = R"({"n":1e999999})";
    const std::string nul = std::string("{\"a\":\"\0\"}", 9);

    CHECK(parseError(deep).starts_with("body is not valid JSON: nested deeper than"));
    CHECK(parseError(deepObject).starts_with("body is not valid JSON: nested deeper than"));
    CHECK(parseOk(hugeString).message.size() == 2'000'000);
    for (const std::string* input : {&unterminated, &badUtf8, &badUtf8Key, &loneSurrogate, &hugeNumber, &nul}) {
        std::string error;
        CHECK_NOTHROW(error = parseError(*input));
        CHECK(error.starts_with("body is not valid JSON: "));
        // Quoted client bytes are cut short and never break the JSON error response's UTF-8.
        CHECK(error.size() < 400);
        CHECK(error.find('\xff') == std::string::npos);
        CHECK(error.find('\xc0') == std::string::npos);
    }
    // A string value's brackets do not count as nesting.
    CHECK(parseError(R"({"x":")" + std::string(1000, '[') + R"("})") == "involvedObject is required");
}

TEST_CASE("every single-byte mutation of the vector body parses or fails with a message") {
    for (std::size_t pos = 0; pos < vectorBody.size(); ++pos) {
        for (const char replacement : {'"', '{', '}', '[', ':', ',', '\\', '1', 'n', '\0', '\x80'}) {
            std::string body(vectorBody);
            body[pos] = replacement;
            std::variant<FluxEvent, std::string> result;
            CHECK_NOTHROW(result = parseFluxEvent(body));
            if (const auto* error = std::get_if<std::string>(&result)) CHECK_FALSE(error->empty());
        }
        CHECK_NOTHROW(parseFluxEvent(vectorBody.substr(0, pos)));
    }
}

TEST_CASE("acceptFluxRequest accepts a signed, authorized JSON request") {
    SourceConfig source{
        .name = "flux", .hmacKey = std::string(vectorKey), .requiredHeaders = {{"Authorization", "Bearer s3cret"}}};
    const FakeRequest request(std::string(vectorBody), {{"authorization", "Bearer s3cret"},
                                                        {"x-signature", std::string(vectorSignature)},
                                                        {"Content-Type", "application/json; charset=utf-8"}});
    auto result = acceptFluxRequest(source, request.inbound());
    REQUIRE(std::holds_alternative<FluxEvent>(result));
    CHECK(std::get<FluxEvent>(result).involvedObject.name == "webapp");
}

TEST_CASE("acceptFluxRequest without a key or required headers needs only JSON") {
    const SourceConfig source{.name = "flux"};
    for (const char* contentType : {"application/json", "Application/JSON", "application/json;charset=UTF-8",
                                    " application/json ; charset=utf-8"}) {
        const FakeRequest request(std::string(vectorBody), {{"Content-Type", contentType}});
        CHECK_MESSAGE(std::holds_alternative<FluxEvent>(acceptFluxRequest(source, request.inbound())), contentType);
    }
}

TEST_CASE("required headers: missing or different is 401, naming the header and never the value") {
    const SourceConfig source{.name = "flux",
                              .requiredHeaders = {{"Authorization", "Bearer s3cret"}, {"X-Cluster", "home"}}};
    const std::map<std::string, std::string> good = {
        {"Authorization", "Bearer s3cret"}, {"X-Cluster", "home"}, {"Content-Type", "application/json"}};

    auto headers = good;
    headers.erase("Authorization");
    Rejection r = rejection(source, FakeRequest(std::string(vectorBody), headers));
    CHECK(r.status == 401);
    CHECK(r.error == "missing or invalid Authorization header");
    CHECK(r.reason == "header");

    for (const char* wrong : {"Bearer s3creT", "Bearer s3cret ", "Bearer", ""}) {
        headers = good;
        headers["Authorization"] = wrong;
        r = rejection(source, FakeRequest(std::string(vectorBody), headers));
        CHECK(r.status == 401);
        CHECK(r.error == "missing or invalid Authorization header");
        CHECK(r.error.find("s3cret") == std::string::npos);
    }

    headers = good;
    headers["X-Cluster"] = "work";
    r = rejection(source, FakeRequest(std::string(vectorBody), headers));
    CHECK(r.error == "missing or invalid X-Cluster header");
    CHECK(r.error.find("home") == std::string::npos);
}

TEST_CASE("signature: missing or wrong is 401 without saying which part") {
    const SourceConfig source{.name = "flux", .hmacKey = std::string(vectorKey)};

    Rejection r = rejection(source, FakeRequest(std::string(vectorBody), {{"Content-Type", "application/json"}}));
    CHECK(r.status == 401);
    CHECK(r.error == "missing X-Signature header");
    CHECK(r.reason == "signature");

    std::string tampered(vectorSignature);
    tampered.back() = '0';
    for (const std::string& signature : {tampered, std::string("sha256"), std::string("md5=00"), std::string("")}) {
        r = rejection(source, FakeRequest(std::string(vectorBody),
                                          {{"Content-Type", "application/json"}, {"X-Signature", signature}}));
        CHECK(r.status == 401);
        CHECK(r.error == "invalid X-Signature");
        CHECK(r.reason == "signature");
    }

    // Signed with another key.
    const std::string other = "sha256=" + toHex(hmac(HashAlgorithm::sha256, "other", vectorBody));
    r = rejection(source,
                  FakeRequest(std::string(vectorBody), {{"Content-Type", "application/json"}, {"X-Signature", other}}));
    CHECK(r.error == "invalid X-Signature");
}

TEST_CASE("Content-Type other than application/json is 415 naming what was sent") {
    const SourceConfig source{.name = "flux"};
    Rejection r = rejection(source, FakeRequest(std::string(vectorBody), {}));
    CHECK(r.status == 415);
    CHECK(r.error == "missing Content-Type; send application/json");
    CHECK(r.reason == "content_type");

    r = rejection(source, FakeRequest(std::string(vectorBody), {{"Content-Type", "text/plain; charset=utf-8"}}));
    CHECK(r.status == 415);
    CHECK(r.error == "unsupported Content-Type \"text/plain; charset=utf-8\"; send application/json");
    CHECK(r.reason == "content_type");

    for (const char* other :
         {"application/jsonx", "application/x-www-form-urlencoded", "", "json", "application/json-seq"}) {
        r = rejection(source, FakeRequest(std::string(vectorBody), {{"Content-Type", other}}));
        CHECK_MESSAGE(r.status == 415, other);
    }

    // What the client sent is quoted safely and briefly.
    r = rejection(source,
                  FakeRequest(std::string(vectorBody), {{"Content-Type", "text/\xff" + std::string(500, 'a')}}));
    CHECK(r.status == 415);
    CHECK(r.error.find('\xff') == std::string::npos);
    CHECK(r.error.size() < 250);
}

TEST_CASE("bad bodies are 400 with the reason label of the failure") {
    const SourceConfig source{.name = "flux"};
    Rejection r = rejection(source, FakeRequest("{", {{"Content-Type", "application/json"}}));
    CHECK(r.status == 400);
    CHECK(r.error.starts_with("body is not valid JSON: "));
    CHECK(r.reason == "bad_json");

    r = rejection(source, FakeRequest(R"({"involvedObject":{"kind":"K"}})", {{"Content-Type", "application/json"}}));
    CHECK(r.status == 400);
    CHECK(r.error == "involvedObject.name is required");
    CHECK(r.reason == "bad_event");

    r = rejection(source, FakeRequest("[1]", {{"Content-Type", "application/json"}}));
    CHECK(r.error == "body must be a JSON object");
    CHECK(r.reason == "bad_event");
}

TEST_CASE("checks run in order: headers, signature, Content-Type, body") {
    const SourceConfig source{.name = "flux", .hmacKey = "key", .requiredHeaders = {{"Authorization", "Bearer t"}}};
    // Everything wrong: the header is reported.
    CHECK(rejection(source, FakeRequest("{", {})).reason == "header");
    // Header right: the signature.
    CHECK(rejection(source, FakeRequest("{", {{"Authorization", "Bearer t"}})).reason == "signature");
    // Signature right too: the Content-Type.
    const std::string signature = "sha256=" + toHex(hmac(HashAlgorithm::sha256, "key", "{"));
    CHECK(rejection(source, FakeRequest("{", {{"Authorization", "Bearer t"}, {"X-Signature", signature}})).reason ==
          "content_type");
    // Only the body is left.
    CHECK(rejection(source, FakeRequest("{", {{"Authorization", "Bearer t"},
                                              {"X-Signature", signature},
                                              {"Content-Type", "application/json"}}))
              .reason == "bad_json");
}
