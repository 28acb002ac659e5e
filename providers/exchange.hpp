// One HTTP exchange with a target: the request, the response, and what it means for a delivery.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/url.hpp"

namespace fluxrelay {

struct HttpRequest {
    std::string method = "POST";
    Url url;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
};

struct HttpResponse {
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    std::optional<std::string_view> header(std::string_view name) const;  // case-insensitive
};

enum class OutcomeKind { delivered, retry, permanent };

// What became of one attempt. retryAfter is set when the peer said when to come back.
struct Outcome {
    OutcomeKind kind = OutcomeKind::delivered;
    std::string detail;  // "HTTP 503: ...", "connect: connection refused", ...
    std::optional<std::chrono::milliseconds> retryAfter;
    // The whole target must wait retryAfter, not just this delivery (a rate limit).
    bool pauseTarget = false;

    static Outcome delivered(std::string detail = {}) { return {OutcomeKind::delivered, std::move(detail), {}}; }
    static Outcome retry(std::string detail, std::optional<std::chrono::milliseconds> after = {}) {
        return {OutcomeKind::retry, std::move(detail), after};
    }
    static Outcome permanent(std::string detail) { return {OutcomeKind::permanent, std::move(detail), {}}; }
};

}  // namespace fluxrelay
