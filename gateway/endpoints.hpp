// What both listeners (ingest and admin) answer the same way, and how they read a request target.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "gateway/server.hpp"

namespace fluxrelay {

// Health answers: /healthz is liveness, /readyz readiness.
std::optional<HttpServerResponse> healthResponse(std::string_view path, bool ready);

// The request target's path, still percent-encoded as routes are written; empty when the target
// is not in origin form ("/path?query").
std::string_view requestPath(const HttpServerRequest& request);

// The decoded value of the query parameter `name` (the first, when repeated); nullopt when absent.
std::optional<std::string> queryParameter(const HttpServerRequest& request, std::string_view name);

}  // namespace fluxrelay
