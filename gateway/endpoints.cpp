#include "gateway/endpoints.hpp"

#include <boost/url/parse.hpp>

namespace fluxrelay {

std::optional<HttpServerResponse> healthResponse(std::string_view path, bool ready) {
    if (path == "/healthz") {
        return jsonResponse(200, R"({"status":"ok"})");
    }
    if (path == "/readyz") {
        return ready ? jsonResponse(200, R"({"status":"ready"})")
                     : errorResponse(503, "not ready: storage unavailable");
    }
    return std::nullopt;
}

std::string_view requestPath(const HttpServerRequest& request) {
    const auto target = boost::urls::parse_origin_form(request.target());
    if (!target) return {};
    // A view into the request's own bytes, so it lives as long as the request.
    return target->encoded_path();
}

std::optional<std::string> queryParameter(const HttpServerRequest& request, std::string_view name) {
    const auto target = boost::urls::parse_origin_form(request.target());
    if (!target) return std::nullopt;
    for (const auto& param : target->params()) {
        if (param.key == name) return std::string(param.value);
    }
    return std::nullopt;
}

}  // namespace fluxrelay
