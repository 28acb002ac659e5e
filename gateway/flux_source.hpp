// The `flux` source: required headers, X-Signature HMAC, Event JSON → FluxEvent.
#pragma once

#include <string_view>
#include <variant>

#include "config/config.hpp"
#include "core/event.hpp"
#include "gateway/inbound.hpp"

namespace fluxrelay {

// Checks requiredHeaders and the signature (401), Content-Type (415), then parses (400).
std::variant<FluxEvent, Rejection> acceptFluxRequest(const SourceConfig& source, const InboundRequest& request);

// `X-Signature: <alg>=<hex>` (sha256, sha384, sha512) over the raw body with the raw key bytes.
bool verifyFluxSignature(std::string_view key, std::string_view signatureHeader, std::string_view body);

// Parses a Flux Event body and normalizes its metadata; on failure the error names the field.
std::variant<FluxEvent, std::string> parseFluxEvent(std::string_view body);

}  // namespace fluxrelay
