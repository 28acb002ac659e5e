// GitHub commit status target: Flux's statuses, without its list call, rate limits honoured.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "providers/provider.hpp"

namespace fluxrelay {

std::unique_ptr<Provider> makeGitHubProvider(const TargetConfig& target);

// The commit a revision names, or why it names none (`error` set, `sha` empty).
struct CommitRef {
    std::string sha;  // 40 lower-case hex digits
    std::string error;

    bool ok() const { return error.empty(); }
};

// One revision value: `main@sha1:<sha>`, `refs/heads/x@sha1:<sha>`, `sha1:<sha>`, legacy
// `main/<sha>`, or a bare `<sha>`; the hash must be 40 hex digits.
CommitRef parseRevision(std::string_view revision);

// The commit an event is about: metadata `commit`, else `originRevision`, else `revision`, as
// Flux's Event.GetRevision picks it.
CommitRef commitOf(const FluxEvent& event);

// GitHub's state for an event severity: info → success, error → failure; nullopt for the rest.
std::optional<std::string> statusState(std::string_view severity);

// Flux's description: the reason split at camel case, lower-cased (`ReconciliationSucceeded` →
// `reconciliation succeeded`), cut to GitHub's 140 characters.
std::string statusDescription(std::string_view reason);

// Flux's splitCamelcase: runs of lower, upper, digit and other characters, an upper-case run
// giving its last letter to a lower-case run after it (`PDFLoader` → `PDF`, `Loader`).
std::vector<std::string> splitCamelCase(std::string_view text);

// The target's context template with {kind}, {name} and {namespace} filled in, lower-cased.
std::string statusContext(std::string_view contextTemplate, const ObjectRef& object);

// Where a repository's API lives and what it is called there.
struct GitHubRepository {
    Url api;  // https://api.github.com, or <scheme>://<host>/api/v3 for GitHub Enterprise
    std::string owner;
    std::string name;
    std::string error;  // set when the address names no owner/repo

    bool ok() const { return error.empty(); }
};

// From a target address the loader already turned into a repository URL (https, or http as
// written): owner and repo from the path, `.git` trimmed.
GitHubRepository gitHubRepository(const Url& address);

// base64url without padding (RFC 7515 §2), as JWTs are written.
std::string base64UrlEncode(std::string_view bytes);

// The JWT a GitHub App authenticates with: RS256 over {iat: now − 60 s, exp: now + 9 min,
// iss: appId}. nullopt when privateKeyPem holds no usable RSA private key.
std::optional<std::string> makeAppJwt(std::int64_t appId, std::string_view privateKeyPem, TimePoint now);

// How long GitHub asks us to wait when a 403 or 429 is a rate limit (Retry-After, exhausted
// x-ratelimit-remaining with x-ratelimit-reset, or a secondary limit); nullopt when it is not one.
std::optional<std::chrono::milliseconds> gitHubRateLimitDelay(const HttpResponse& response, TimePoint now);

// What an answer of the commit status API means for the delivery, measured at `now`. A 401 is
// permanent here: only the provider knows whether it holds an App token it may renew.
Outcome classifyGitHubResponse(const HttpResponse& response, TimePoint now);

}  // namespace fluxrelay
