// Fuzzes the GitHub webhook source (gateway/github_source): headers, JSON and form bodies.
//
// Input: header lines "Name: value\n", a blank line, then the body, e.g.
//   X-GitHub-Event: push\nX-GitHub-Delivery: 1\nContent-Type: application/json\n\n{"ref":"refs/heads/main"}
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/text.hpp"
#include "fuzz/check.hpp"
#include "gateway/github_source.hpp"

namespace {

using namespace fluxrelay;

struct Input {
    std::vector<std::pair<std::string_view, std::string_view>> headers;
    std::string_view body;

    std::optional<std::string_view> header(std::string_view name) const {
        for (const auto& [key, value] : headers) {
            if (equalsIgnoreCase(key, name)) return value;
        }
        return std::nullopt;
    }
};

Input split(std::string_view data) {
    Input input;
    const std::size_t end = data.find("\n\n");
    std::string_view head = data.substr(0, end);
    input.body = end == std::string_view::npos ? std::string_view() : data.substr(end + 2);
    while (!head.empty()) {
        const std::size_t newline = head.find('\n');
        const std::string_view line = head.substr(0, newline);
        head = newline == std::string_view::npos ? std::string_view() : head.substr(newline + 1);
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        input.headers.emplace_back(line.substr(0, colon), value);
    }
    return input;
}

bool printable(std::string_view text, std::size_t maxBytes) {
    if (text.empty() || text.size() > maxBytes) return false;
    for (const char c : text) {
        if (c <= 0x20 || c >= 0x7f) return false;
    }
    return true;
}

using Result = std::variant<GitHubEvent, GitHubPing, Rejection>;

void checkResult(const Result& result, const Input& input) {
    if (const auto* rejection = std::get_if<Rejection>(&result)) {
        FUZZ_CHECK(rejection->status == 400 || rejection->status == 401 || rejection->status == 415);
        FUZZ_CHECK(!rejection->error.empty() && !rejection->reason.empty());
        FUZZ_CHECK(isValidUtf8(rejection->error));
        return;
    }
    if (const auto* ping = std::get_if<GitHubPing>(&result)) {
        FUZZ_CHECK(printable(ping->deliveryId, 128));
        return;
    }
    const auto& event = std::get<GitHubEvent>(result);
    FUZZ_CHECK(printable(event.event, 64));
    FUZZ_CHECK(printable(event.deliveryId, 128));
    FUZZ_CHECK(event.event != "ping");
    if (event.event == "push") {
        FUZZ_CHECK(!event.ref.empty());
    } else {
        FUZZ_CHECK(event.ref.empty() && !event.deleted);
    }
    // What a flux-receiver target forwards: one JSON object, and for a JSON delivery the exact bytes.
    FUZZ_CHECK(nlohmann::json::accept(event.body));
    const auto contentType = input.header("Content-Type");
    FUZZ_CHECK(contentType.has_value());
    std::string_view mediaType = contentType->substr(0, contentType->find(';'));
    while (!mediaType.empty() && (mediaType.front() == ' ' || mediaType.front() == '\t')) mediaType.remove_prefix(1);
    while (!mediaType.empty() && (mediaType.back() == ' ' || mediaType.back() == '\t')) mediaType.remove_suffix(1);
    if (equalsIgnoreCase(mediaType, "application/json")) FUZZ_CHECK(event.body == input.body);
}

const SourceConfig kOpen{.name = "github", .type = SourceType::github, .path = "/github/webhook"};
const SourceConfig kPushOnly{
    .name = "github-push", .type = SourceType::github, .path = "/github/push", .events = {"push", "ping"}};
const SourceConfig kSigned{.name = "github-signed",
                           .type = SourceType::github,
                           .path = "/github/signed",
                           .secret = "fuzz-secret",
                           .allowSha1 = true};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const Input input = split(std::string_view(reinterpret_cast<const char*>(data), size));
    const InboundRequest request{
        .body = input.body,
        .header = [&input](std::string_view name) { return input.header(name); },
    };

    const Result open = acceptGitHubRequest(kOpen, request);
    checkResult(open, input);

    const Result pushOnly = acceptGitHubRequest(kPushOnly, request);
    checkResult(pushOnly, input);
    // Listing events only ever narrows what a source takes.
    if (!std::holds_alternative<Rejection>(pushOnly)) FUZZ_CHECK(!std::holds_alternative<Rejection>(open));

    // Nobody can sign for a secret they do not know: everything here is a 401.
    const Result signedSource = acceptGitHubRequest(kSigned, request);
    const auto* rejection = std::get_if<Rejection>(&signedSource);
    FUZZ_CHECK(rejection != nullptr && rejection->status == 401);

    // The form decoder on its own, over raw bytes.
    if (const auto field = formField(input.body, "payload")) FUZZ_CHECK(field->size() <= input.body.size());
    return 0;
}
