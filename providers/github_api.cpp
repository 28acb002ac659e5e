// GitHub's REST API as every GitHub target uses it: App tokens, rate limits, the meaning of answers.
#include "providers/github_api.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <climits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "core/crypto.hpp"
#include "core/duration.hpp"
#include "core/text.hpp"

namespace fluxrelay {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::string_view kApiVersion = "2022-11-28";
constexpr std::string_view kAccept = "application/vnd.github+json, application/json";
// GitHub refuses App JWTs that expire more than 10 minutes out; the iat is backdated for clock skew.
constexpr auto kJwtBackdate = seconds(60);
constexpr auto kJwtLifetime = std::chrono::minutes(9);
// An installation token (valid one hour) is renewed this long before it expires, so that a
// request never leaves with a token that dies on the way.
constexpr auto kTokenRenewBefore = std::chrono::minutes(5);
// GitHub's advice for a secondary rate limit that names no time: wait at least a minute.
constexpr auto kSecondaryLimitWait = seconds(60);
// The primary limit's window is an hour: a reset further out means a clock is wrong, and one more
// 403 after an hour costs less than a target silenced for longer.
constexpr auto kMaxRateLimitWait = std::chrono::hours(1);
// A pause shorter than this would only trade one 403 for the next.
constexpr auto kMinRateLimitWait = seconds(1);

constexpr std::size_t kMaxDescriptionChars = 140;

bool containsIgnoreCase(std::string_view text, std::string_view needle) {
    return asciiLowered(text).find(asciiLowered(needle)) != std::string::npos;
}

std::string_view trimSpaces(std::string_view text) {
    const auto first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) return {};
    return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

struct PkeyFree {
    void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct MdCtxFree {
    void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// An encrypted key must fail rather than make OpenSSL prompt for a passphrase on the terminal.
int noPassphrase(char*, int, int, void*) { return 0; }

PkeyPtr readRsaPrivateKey(std::string_view pem) {
    if (pem.empty() || pem.size() > static_cast<std::size_t>(INT_MAX)) return nullptr;
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    if (bio == nullptr) return nullptr;
    // PKCS#1 ("RSA PRIVATE KEY", what GitHub hands out) and PKCS#8 ("PRIVATE KEY") alike.
    PkeyPtr key(PEM_read_bio_PrivateKey(bio, nullptr, noPassphrase, nullptr));
    BIO_free(bio);
    if (key && EVP_PKEY_base_id(key.get()) != EVP_PKEY_RSA) key.reset();
    // Failures leave entries on OpenSSL's thread-local error queue, where they would be blamed on
    // the next unrelated TLS call of this thread.
    ERR_clear_error();
    return key;
}

std::optional<std::string> signRs256(EVP_PKEY* key, std::string_view data) {
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> context(EVP_MD_CTX_new());
    std::size_t length = 0;
    std::string signature;
    const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
    bool ok = context && EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
              EVP_DigestSign(context.get(), nullptr, &length, bytes, data.size()) == 1;
    if (ok) {
        signature.resize(length);
        ok = EVP_DigestSign(context.get(), reinterpret_cast<unsigned char*>(signature.data()), &length, bytes,
                            data.size()) == 1;
        signature.resize(length);
    }
    ERR_clear_error();
    if (!ok) return std::nullopt;
    return signature;
}

bool isSuccess(int status) { return status >= 200 && status <= 299; }

}  // namespace

HttpRequest gitHubApiRequest(const GitHubRepository& repository, std::string_view path, const std::string& token,
                             std::string body, const std::vector<std::pair<std::string, std::string>>& extraHeaders) {
    HttpRequest request;
    request.method = "POST";
    request.url = repository.api;
    request.url.target = (repository.api.target == "/" ? "" : repository.api.target) + std::string(path);
    request.headers.emplace_back("Accept", std::string(kAccept));
    request.headers.emplace_back("X-GitHub-Api-Version", std::string(kApiVersion));
    request.headers.emplace_back("Authorization", "Bearer " + token);
    if (!body.empty()) request.headers.emplace_back("Content-Type", "application/json");
    request.body = std::move(body);
    request.headers.insert(request.headers.end(), extraHeaders.begin(), extraHeaders.end());
    return request;
}

GitHubAppToken::GitHubAppToken(GitHubRepository repository, GitHubAppConfig app,
                               std::vector<std::pair<std::string, std::string>> extraHeaders)
    : repository_(std::move(repository)),
      app_(std::move(app)),
      extraHeaders_(std::move(extraHeaders)),
      keyUsable_(readRsaPrivateKey(app_.privateKey) != nullptr) {}

std::optional<CredentialsFetch> GitHubAppToken::fetch(TimePoint now) {
    if (!keyUsable_) return std::nullopt;
    if (!token_.empty() && expiresAt_ - now > kTokenRenewBefore) return std::nullopt;
    const auto jwt = makeAppJwt(app_.appId, app_.privateKey, now);
    if (!jwt) return std::nullopt;
    return CredentialsFetch{
        .exchange = gitHubApiRequest(repository_,
                                     "/app/installations/" + std::to_string(app_.installationId) + "/access_tokens",
                                     *jwt, {}, extraHeaders_),
        .file = {}};
}

Outcome GitHubAppToken::accept(const CredentialsAnswer& answer, TimePoint now) {
    assert(answer.response && "the dispatcher retries an exchange that got no response");
    const HttpResponse& response = *answer.response;
    const std::string what = "GitHub App token exchange: ";
    if (isSuccess(response.status)) {
        // The body holds the token: it never goes into a detail, not even in part.
        const auto json = nlohmann::json::parse(response.body, nullptr, false);
        TimePoint expiresAt;
        if (!json.is_object() || !json.contains("token") || !json["token"].is_string() ||
            json["token"].get_ref<const std::string&>().empty() || !json.contains("expires_at") ||
            !json["expires_at"].is_string() ||
            !parseRfc3339(json["expires_at"].get_ref<const std::string&>(), expiresAt)) {
            return Outcome::retry(what + "HTTP " + std::to_string(response.status) +
                                  " without a token and an RFC3339 expires_at");
        }
        token_ = json["token"].get<std::string>();
        expiresAt_ = expiresAt;
        return Outcome::delivered();
    }
    if (gitHubRateLimitDelay(response, now)) {
        Outcome outcome = classifyGitHubResponse(response, now);
        outcome.detail = what + outcome.detail;
        return outcome;
    }
    const std::string detail = what + classifyHttpStatus(response, now).detail;
    switch (response.status) {
        case 401:
            return Outcome::permanent(detail +
                                      "; GitHub rejected the App's JWT: check appID, the private key and this "
                                      "host's clock");
        case 403:
            return Outcome::permanent(detail + "; the App may not create tokens for this installation");
        case 404:
            return Outcome::permanent(detail + "; installation " + std::to_string(app_.installationId) + " of App " +
                                      std::to_string(app_.appId) + " not found");
        default: {
            Outcome outcome = classifyHttpStatus(response, now);
            outcome.detail = detail;
            return outcome;
        }
    }
}

GitHubTarget::GitHubTarget(const TargetConfig& target)
    : Provider(target, Traits{.maxBatch = 1,  // the API takes one object at a time
                              .refresh = {},
                              .ownHeaders = kGitHubOwnHeaders}),
      repository_(gitHubRepository(target_.address)) {
    if (target_.app) {
        appToken_.emplace(repository_, *target_.app, configuredHeaders());
        renewsCredentials(*appToken_);
    }
}

Outcome GitHubTarget::classify(const HttpResponse& response) {
    const TimePoint now = Clock::now();
    if (response.status == 401 && appToken_) {
        appToken_->forget();
        return Outcome::retry(classifyHttpStatus(response, now).detail +
                              "; installation token rejected, a new one is requested on the next attempt");
    }
    return classifyGitHubResponse(response, now);
}

HttpRequest GitHubTarget::apiRequest(const std::string& path, std::string body) const {
    return gitHubApiRequest(repository_, path, appToken_ ? appToken_->token() : target_.token, std::move(body),
                            configuredHeaders());
}

std::optional<Outcome> GitHubTarget::unauthenticated() const {
    if (appToken_ && appToken_->token().empty()) return appToken_->missing();
    return std::nullopt;
}

Outcome GitHubAppToken::missing() const {
    // fetch() asks for a token whenever it can sign for one: a plan without one means the key is
    // unusable, or the exchange has not succeeded yet.
    if (!keyUsable_) {
        return Outcome::permanent(
            "the GitHub App's private key is not a usable RSA private key in PEM form (unencrypted PKCS#1 or "
            "PKCS#8)");
    }
    return Outcome::retry("no GitHub App installation token yet");
}

std::string gitHubDescription(std::string_view text) {
    std::size_t pos = 0;
    for (std::size_t chars = 0; pos < text.size() && chars < kMaxDescriptionChars; ++chars) {
        pos += std::max<std::size_t>(1, utf8SequenceLength(text.substr(pos)));
    }
    return std::string(text.substr(0, std::min(pos, text.size())));
}

GitHubRepository gitHubRepository(const Url& address) {
    GitHubRepository repository;
    std::string_view path = address.target;
    path = path.substr(0, path.find('?'));
    while (path.starts_with('/')) path.remove_prefix(1);
    while (path.ends_with('/')) path.remove_suffix(1);
    if (path.ends_with(".git")) path.remove_suffix(4);
    const std::size_t slash = path.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 == path.size() ||
        path.find('/', slash + 1) != std::string_view::npos) {
        repository.error = "address '" + address.toString() + "' does not name a repository as <host>/<owner>/<repo>";
        return repository;
    }
    repository.owner = std::string(path.substr(0, slash));
    repository.name = std::string(path.substr(slash + 1));
    if (address.host == "github.com") {
        repository.api = Url{.scheme = "https", .host = "api.github.com", .port = 443, .target = ""};
    } else {
        // GitHub Enterprise Server serves its API under /api/v3 of its own host, scheme and port.
        repository.api = Url{.scheme = address.scheme, .host = address.host, .port = address.port, .target = "/api/v3"};
    }
    return repository;
}

std::string base64UrlEncode(std::string_view bytes) {
    std::string text = base64Encode(bytes);
    while (!text.empty() && text.back() == '=') text.pop_back();
    std::replace(text.begin(), text.end(), '+', '-');
    std::replace(text.begin(), text.end(), '/', '_');
    return text;
}

std::optional<std::string> makeAppJwt(std::int64_t appId, std::string_view privateKeyPem, TimePoint now) {
    const PkeyPtr key = readRsaPrivateKey(privateKeyPem);
    if (!key) return std::nullopt;
    const auto epoch = [](TimePoint time) {
        return std::chrono::duration_cast<seconds>(time.time_since_epoch()).count();
    };
    const nlohmann::json claims = {
        {"iat", epoch(now - kJwtBackdate)}, {"exp", epoch(now + kJwtLifetime)}, {"iss", std::to_string(appId)}};
    const std::string signingInput =
        base64UrlEncode(R"({"alg":"RS256","typ":"JWT"})") + "." + base64UrlEncode(claims.dump());
    const auto signature = signRs256(key.get(), signingInput);
    if (!signature) return std::nullopt;
    return signingInput + "." + base64UrlEncode(*signature);
}

std::optional<milliseconds> gitHubRateLimitDelay(const HttpResponse& response, TimePoint now) {
    if (response.status != 403 && response.status != 429) return std::nullopt;
    const auto bounded = [](milliseconds wait) {
        return std::clamp<milliseconds>(wait, kMinRateLimitWait, kMaxRateLimitWait);
    };
    if (const auto header = response.header("Retry-After")) {
        if (const auto wait = parseRetryAfter(*header, now)) return bounded(*wait);
    }
    const auto remaining = response.header("x-ratelimit-remaining");
    const bool exhausted = remaining && trimSpaces(*remaining) == "0";
    if (exhausted) {
        if (const auto reset = response.header("x-ratelimit-reset")) {
            const std::string_view text = trimSpaces(*reset);
            std::int64_t epochSeconds = 0;
            const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), epochSeconds);
            // Beyond year 9999 is no time at all, and would overflow the arithmetic below.
            if (error == std::errc{} && end == text.data() + text.size() && epochSeconds >= 0 &&
                epochSeconds < 253'402'300'800) {
                const TimePoint resetAt{seconds(epochSeconds)};
                return bounded(std::chrono::duration_cast<milliseconds>(resetAt - now));
            }
        }
    }
    // A secondary limit ("You have exceeded a secondary rate limit") names no time, nor may a
    // 429: GitHub asks for at least a minute.
    if (exhausted || response.status == 429 || containsIgnoreCase(response.body, "rate limit")) {
        return kSecondaryLimitWait;
    }
    return std::nullopt;
}

Outcome classifyGitHubResponse(const HttpResponse& response, TimePoint now) {
    Outcome base = classifyHttpStatus(response, now);
    if (isSuccess(response.status)) return base;
    if (const auto wait = gitHubRateLimitDelay(response, now)) {
        Outcome outcome =
            Outcome::retry(base.detail + "; rate limited, the target waits " + formatDuration(*wait), *wait);
        outcome.pauseTarget = true;
        return outcome;
    }
    switch (response.status) {
        case 401:
            return Outcome::permanent(base.detail + "; GitHub rejected the token: check that it is valid");
        case 403:
            return Outcome::permanent(base.detail +
                                      "; the credentials may not write commit statuses to this repository");
        case 404:
            return Outcome::permanent(base.detail +
                                      "; no such repository for these credentials: check the address, and that the "
                                      "token may write commit statuses (classic: repo:status or repo; fine-grained: "
                                      "Commit statuses: write) or the App is installed on the repository");
        case 422:
            // Invalid fields, or the 1000 statuses GitHub keeps per commit and context are used up:
            // sending it again gets the same answer.
            return Outcome::permanent(base.detail);
        default:
            return base;
    }
}

}  // namespace fluxrelay
