// GitHub's REST API as every GitHub target uses it: the repository an address names, the
// request headers, App installation tokens and what an answer means, rate limits included.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "providers/provider.hpp"

namespace fluxrelay {

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

// The first 140 characters (code points; a stray byte counts as one) of a description: GitHub
// refuses longer ones with 422 "description is too long (maximum is 140 characters)".
std::string gitHubDescription(std::string_view text);

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

// The headers every request to GitHub's API carries, set by the target itself.
inline const std::vector<std::string> kGitHubOwnHeaders = {"Accept", "X-GitHub-Api-Version", "Authorization",
                                                           "Content-Type"};

// A POST to `path` under the repository's API with GitHub's headers, the bearer token and the
// JSON body (none when empty); `extraHeaders` (the target's configured ones) come last.
HttpRequest gitHubApiRequest(const GitHubRepository& repository, std::string_view path, const std::string& token,
                             std::string body, const std::vector<std::pair<std::string, std::string>>& extraHeaders);

// A GitHub App's installation token: a JWT signed with the App's key is exchanged for it at
// POST /app/installations/{id}/access_tokens, and it is renewed shortly before it expires, or at
// once after GitHub refused it.
class GitHubAppToken final : public Credentials {
public:
    GitHubAppToken(GitHubRepository repository, GitHubAppConfig app,
                   std::vector<std::pair<std::string, std::string>> extraHeaders);

    std::optional<CredentialsFetch> fetch(TimePoint now) override;
    Outcome accept(const CredentialsAnswer& answer, TimePoint now) override;

    // Empty until the first exchange, and after forget().
    const std::string& token() const { return token_; }
    void forget() { token_.clear(); }

    // What a plan says while it holds no token: a retry, or permanent when the key cannot sign.
    Outcome missing() const;

private:
    GitHubRepository repository_;
    GitHubAppConfig app_;
    std::vector<std::pair<std::string, std::string>> extraHeaders_;
    bool keyUsable_ = false;
    std::string token_;
    TimePoint expiresAt_{};
};

// What every GitHub target shares: one request at a time to the repository its address names,
// authenticated with the target's token or its App's installation token, and GitHub's meaning of
// the answers (rate limits pause the target).
class GitHubTarget : public Provider {
public:
    // A 401 while authenticated as an App drops the installation token and retries: it was
    // revoked or expired early, and the next attempt exchanges the JWT for a fresh one.
    Outcome classify(const HttpResponse& response) override;

protected:
    explicit GitHubTarget(const TargetConfig& target);

    // A POST to `path` under the repository's API, authenticated.
    HttpRequest apiRequest(const std::string& path, std::string body) const;
    // Why nothing can be sent yet (an App without an installation token), or nullopt.
    std::optional<Outcome> unauthenticated() const;

    const GitHubRepository repository_;

private:
    std::optional<GitHubAppToken> appToken_;  // set when the target authenticates as a GitHub App
};

}  // namespace fluxrelay
