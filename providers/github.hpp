// GitHub commit status target: Flux's statuses, without its list call, rate limits honoured.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "providers/github_api.hpp"
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

}  // namespace fluxrelay
