// What a source sees of an HTTP request, and how it says no: no sockets, so sources are pure.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace fluxrelay {

struct InboundRequest {
    std::string_view body;
    // Header value by case-insensitive name; nullopt when absent.
    std::function<std::optional<std::string_view>(std::string_view)> header;
};

// A request a source refuses: HTTP status, the JSON error text, and a short metric reason.
struct Rejection {
    int status = 400;
    std::string error;   // names the problem; never reveals secrets or which byte differed
    std::string reason;  // label for fluxrelay_events_rejected_total: "signature", "bad_json", ...
};

}  // namespace fluxrelay
