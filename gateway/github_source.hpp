// The `github` source: webhook signature, delivery headers, JSON or form body → GitHubEvent.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "config/config.hpp"
#include "core/crypto.hpp"
#include "core/event.hpp"
#include "gateway/inbound.hpp"

namespace fluxrelay {

// GitHub's hook check, sent when a webhook is created: answered 200 {"status":"pong"} and never
// stored or routed, whatever the source's `events` say, so a new webhook shows green at once.
struct GitHubPing {
    std::string deliveryId;
};

// In this order: signature (401), X-GitHub-Event and X-GitHub-Delivery (400), Content-Type (415),
// body (400), ping, the source's `events` (400), push fields (400).
//
// An event the source does not list is refused with 400 naming the event, as Flux's Receiver does:
// GitHub shows that answer in the webhook's delivery log, which tells the user to deselect the event
// there (or list it), while a 2xx would hide that nothing is ever done with it.
//
// A source without a secret takes unsigned deliveries, as GitHub sends them when the webhook has no
// secret; with one, X-Hub-Signature-256 is required (X-Hub-Signature, sha1, only with allowSha1).
std::variant<GitHubEvent, GitHubPing, Rejection> acceptGitHubRequest(const SourceConfig& source,
                                                                     const InboundRequest& request);

// `<prefix>=<hex>` (GitHub writes "sha256=" and "sha1=") over the raw body, keyed with the secret;
// compared in constant time.
bool verifyGitHubSignature(HashAlgorithm algorithm, std::string_view secret, std::string_view header,
                           std::string_view body);

// The decoded value of the first `name` field of an application/x-www-form-urlencoded body
// ('+' is a space, %XX a byte); nullopt when absent or when its escapes are malformed.
std::optional<std::string> formField(std::string_view body, std::string_view name);

}  // namespace fluxrelay
