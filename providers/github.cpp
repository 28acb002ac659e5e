// GitHub commit status target: the statuses Flux's github notifier posts, minus its list
// call, with rate limits pausing the target and GitHub App installation tokens cached.
#include "providers/github.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <climits>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <variant>

#include "core/crypto.hpp"
#include "core/duration.hpp"
#include "core/template.hpp"
#include "core/text.hpp"

namespace fluxrelay {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::string_view kApiVersion = "2022-11-28";
constexpr std::string_view kAccept = "application/vnd.github+json, application/json";
// GitHub rejects longer descriptions with 422 "description is too long (maximum is 140 characters)".
constexpr std::size_t kMaxDescriptionChars = 140;
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

bool containsIgnoreCase(std::string_view text, std::string_view needle) {
    return asciiLowered(text).find(asciiLowered(needle)) != std::string::npos;
}

bool isHex(std::string_view text) {
    return std::all_of(text.begin(), text.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    });
}

std::string inQuotes(std::string_view text) { return "'" + std::string(text) + "'"; }

std::string_view trimSpaces(std::string_view text) {
    const auto first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) return {};
    return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

// The first `count` characters (code points; a stray byte counts as one).
std::string firstChars(std::string_view text, std::size_t count) {
    std::size_t pos = 0;
    for (std::size_t chars = 0; pos < text.size() && chars < count; ++chars) {
        pos += std::max<std::size_t>(1, utf8SequenceLength(text.substr(pos)));
    }
    return std::string(text.substr(0, std::min(pos, text.size())));
}

// splitCamelCase's character classes, as Go's unicode.IsLower / IsUpper / IsDigit for ASCII.
// Reasons are Kubernetes reasons, CamelCase ASCII; a non-ASCII character counts as "other".
enum class CharClass { lower, upper, digit, other };

CharClass classOf(char c) {
    if (c >= 'a' && c <= 'z') return CharClass::lower;
    if (c >= 'A' && c <= 'Z') return CharClass::upper;
    if (c >= '0' && c <= '9') return CharClass::digit;
    return CharClass::other;
}

std::optional<std::string_view> metadataValue(const FluxEvent& event, const std::string& key) {
    const auto it = event.metadata.find(key);
    if (it == event.metadata.end() || it->second.empty()) return std::nullopt;
    return std::string_view(it->second);
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

class GitHubProvider final : public Provider {
public:
    explicit GitHubProvider(const TargetConfig& target)
        : Provider(target, Traits{.maxBatch = 1,  // the API takes one commit and one context at a time
                                  .refresh = {},
                                  .ownHeaders = {"Accept", "X-GitHub-Api-Version", "Authorization", "Content-Type"}}),
          repository_(gitHubRepository(target_.address)) {
        if (target_.app) keyUsable_ = readRsaPrivateKey(target_.app->privateKey) != nullptr;
    }

    // "The target already has this": a status identical to the last one delivered for its commit
    // and context is settled without a request, which spares the GitHub API.
    std::vector<std::string> stateKeys(std::span<const Delivery> batch) const override {
        auto status = statusOf(batch);
        if (const Status* known = std::get_if<Status>(&status)) return {knownKey(*known)};
        return {};
    }

    AttemptPlan plan(std::span<const Delivery> batch, const ProviderState& state, TimePoint /*now*/) const override {
        auto planned = statusOf(batch);
        if (auto* outcome = std::get_if<Outcome>(&planned)) return AttemptPlan::decide(std::move(*outcome));
        const Status& status = std::get<Status>(planned);
        const std::string key = knownKey(status);
        const std::uint64_t id = batch.front().id;
        const auto it = state.find(key);
        const KnownStatus known = it == state.end() ? KnownStatus{} : recall(it->second);
        if (known.applied >= id) {
            // A retried or late status must not overwrite a newer one on the commit.
            return AttemptPlan::decide(
                Outcome::delivered("superseded: a later status of this commit and context was delivered first"));
        }
        const std::string value = remember({.state = status.state, .description = status.description, .applied = id});
        if (known.state == status.state && known.description == status.description) {
            AttemptPlan plan =
                AttemptPlan::decide(Outcome::delivered("unchanged since the last delivery; not sent again"));
            plan.writes = {{key, value}};
            return plan;
        }
        if (target_.app && installationToken_.empty()) {
            // credentialsFetch() asks for a token whenever it can sign for one: not reached unless
            // the key is unusable.
            if (!keyUsable_) return AttemptPlan::decide(Outcome::permanent(keyProblem()));
            return AttemptPlan::decide(Outcome::retry("no GitHub App installation token yet"));
        }
        // Flux sends no target_url either: there is no page to link to.
        const nlohmann::json body = {
            {"state", status.state}, {"context", status.context}, {"description", status.description}};
        return {.requests = {apiRequest(
                    "/repos/" + repository_.owner + "/" + repository_.name + "/statuses/" + status.sha, bearerToken(),
                    body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))},
                .decided = {},
                .writes = {{key, value}}};
    }

    std::optional<CredentialsFetch> credentialsFetch(TimePoint now) override {
        if (!target_.app || !keyUsable_) return std::nullopt;
        if (!installationToken_.empty() && tokenExpiresAt_ - now > kTokenRenewBefore) return std::nullopt;
        const auto jwt = makeAppJwt(target_.app->appId, target_.app->privateKey, now);
        if (!jwt) return std::nullopt;
        return CredentialsFetch{
            .exchange = apiRequest(
                "/app/installations/" + std::to_string(target_.app->installationId) + "/access_tokens", *jwt, {}),
            .file = {}};
    }

    Outcome acceptCredentials(const CredentialsAnswer& answer, TimePoint now) override {
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
            installationToken_ = json["token"].get<std::string>();
            tokenExpiresAt_ = expiresAt;
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
                return Outcome::permanent(detail + "; installation " + std::to_string(target_.app->installationId) +
                                          " of App " + std::to_string(target_.app->appId) + " not found");
            default: {
                Outcome outcome = classifyHttpStatus(response, now);
                outcome.detail = detail;
                return outcome;
            }
        }
    }

    Outcome classify(const HttpResponse& response) override {
        const TimePoint now = Clock::now();
        if (response.status == 401 && target_.app) {
            // Revoked or expired early: the next attempt exchanges the JWT for a fresh token.
            installationToken_.clear();
            return Outcome::retry(classifyHttpStatus(response, now).detail +
                                  "; installation token rejected, a new one is requested on the next attempt");
        }
        return classifyGitHubResponse(response, now);
    }

private:
    struct Status {
        std::string sha;
        std::string state;
        std::string context;
        std::string description;
    };

    std::variant<Status, Outcome> statusOf(std::span<const Delivery> batch) const {
        assert(batch.size() == 1);
        if (batch.empty()) return Outcome::permanent("empty batch");
        if (!repository_.ok()) return Outcome::permanent(repository_.error);
        const Delivery& delivery = batch.front();
        const FluxEvent* flux = delivery.event ? delivery.event->flux() : nullptr;
        if (flux == nullptr) return Outcome::permanent("github targets take only Flux events");
        CommitRef commit = commitOf(*flux);
        if (!commit.ok()) return Outcome::permanent(std::move(commit.error));
        std::optional<std::string> state = statusState(flux->severity);
        if (!state) {
            return Outcome::permanent("severity " + inQuotes(flux->severity) +
                                      " has no commit status state (info → success, error → failure)");
        }
        return Status{.sha = std::move(commit.sha),
                      .state = std::move(*state),
                      .context = statusContext(target_.context, flux->involvedObject),
                      .description = statusDescription(flux->reason)};
    }

    // A request to the API with GitHub's headers, the bearer token and the configured headers.
    HttpRequest apiRequest(std::string path, const std::string& token, std::string body) const {
        HttpRequest request;
        request.method = "POST";
        request.url = repository_.api;
        request.url.target = (repository_.api.target == "/" ? "" : repository_.api.target) + path;
        request.headers.emplace_back("Accept", std::string(kAccept));
        request.headers.emplace_back("X-GitHub-Api-Version", std::string(kApiVersion));
        request.headers.emplace_back("Authorization", "Bearer " + token);
        if (!body.empty()) request.headers.emplace_back("Content-Type", "application/json");
        request.body = std::move(body);
        addConfiguredHeaders(request);
        return request;
    }

    // What the target remembers per commit and context: the last status delivered, and the
    // delivery id of the event it came from (ids follow the order of acceptance).
    struct KnownStatus {
        std::string state;
        std::string description;
        std::uint64_t applied = 0;  // 0: nothing known, or remembered before ids were
    };

    static std::string remember(const KnownStatus& known) {
        return nlohmann::json{{"state", known.state}, {"description", known.description}, {"applied", known.applied}}
            .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }

    // Also reads the form earlier releases wrote: "state\ndescription".
    static KnownStatus recall(const std::optional<std::string>& value) {
        if (!value) return {};
        const nlohmann::json json = nlohmann::json::parse(*value, nullptr, false);
        if (json.is_object() && json["state"].is_string() && json["description"].is_string() &&
            json["applied"].is_number_unsigned()) {
            return {.state = json["state"].get<std::string>(),
                    .description = json["description"].get<std::string>(),
                    .applied = json["applied"].get<std::uint64_t>()};
        }
        const std::size_t newline = value->find('\n');
        if (newline == std::string::npos) return {};
        return {.state = value->substr(0, newline), .description = value->substr(newline + 1), .applied = 0};
    }

    std::string knownKey(const Status& status) const {
        return "github-status:" + target_.name + ":" + repository_.owner + "/" + repository_.name + ":" + status.sha +
               ":" + status.context;
    }

    const std::string& bearerToken() const { return target_.app ? installationToken_ : target_.token; }

    std::string keyProblem() const {
        return "the GitHub App's private key is not a usable RSA private key in PEM form (unencrypted PKCS#1 or "
               "PKCS#8)";
    }

    GitHubRepository repository_;
    bool keyUsable_ = false;
    std::string installationToken_;
    TimePoint tokenExpiresAt_{};
};

}  // namespace

std::unique_ptr<Provider> makeGitHubProvider(const TargetConfig& target) {
    return std::make_unique<GitHubProvider>(target);
}

CommitRef parseRevision(std::string_view revision) {
    const auto fail = [&](std::string why) {
        return CommitRef{.error = "revision " + inQuotes(revision) + " " + std::move(why)};
    };
    std::string_view hash = revision;
    if (const std::size_t colon = revision.rfind(':'); colon != std::string_view::npos) {
        // <ref>@<algorithm>:<hash> or <algorithm>:<hash>
        std::string_view algorithm = revision.substr(0, colon);
        if (const std::size_t at = algorithm.rfind('@'); at != std::string_view::npos) {
            algorithm = algorithm.substr(at + 1);
        }
        hash = revision.substr(colon + 1);
        if (algorithm == "sha256") {
            return fail(
                "is an artifact digest (OCIRepository, Bucket, Helm chart), not a Git commit; GitHub statuses need "
                "the commit the artifact was built from: set originRevision (the artifact's "
                "org.opencontainers.image.revision annotation)");
        }
        if (algorithm != "sha1") return fail("names no Git commit (expected <branch>@sha1:<40 hex digits>)");
    } else if (const std::size_t slash = revision.rfind('/'); slash != std::string_view::npos) {
        hash = revision.substr(slash + 1);  // legacy <branch>/<hash>
    }
    if (hash.size() != 40 || !isHex(hash)) {
        return fail("names no Git commit: the hash must be 40 hex digits (e.g. main@sha1:<sha>)");
    }
    return CommitRef{.sha = asciiLowered(hash)};
}

CommitRef commitOf(const FluxEvent& event) {
    for (const std::string key : {"commit", "originRevision", "revision"}) {
        if (const auto value = metadataValue(event, key)) {
            CommitRef commit = parseRevision(*value);
            if (!commit.ok()) commit.error = "metadata " + key + ": " + commit.error;
            return commit;
        }
    }
    return CommitRef{.error = "the event has no commit, originRevision or revision metadata"};
}

std::optional<std::string> statusState(std::string_view severity) {
    if (severity == "info") return "success";
    if (severity == "error") return "failure";
    return std::nullopt;
}

std::vector<std::string> splitCamelCase(std::string_view text) {
    // As Go: invalid UTF-8 is not split at all.
    if (!isValidUtf8(text)) return {std::string(text)};
    std::vector<std::string> runs;
    std::optional<CharClass> last;
    for (std::size_t pos = 0; pos < text.size();) {
        const std::size_t length = utf8SequenceLength(text.substr(pos));
        const CharClass cls = classOf(text[pos]);
        if (cls == last) {
            runs.back().append(text.substr(pos, length));
        } else {
            runs.emplace_back(text.substr(pos, length));
        }
        last = cls;
        pos += length;
    }
    // "PDFL" "oader" → "PDF" "Loader". Upper-case runs are ASCII, so their last letter is one byte.
    for (std::size_t i = 0; i + 1 < runs.size(); ++i) {
        if (!runs[i].empty() && classOf(runs[i].front()) == CharClass::upper &&
            classOf(runs[i + 1].front()) == CharClass::lower) {
            runs[i + 1].insert(runs[i + 1].begin(), runs[i].back());
            runs[i].pop_back();
        }
    }
    std::erase_if(runs, [](const std::string& run) { return run.empty(); });
    return runs;
}

std::string statusDescription(std::string_view reason) {
    std::string joined;
    for (const std::string& word : splitCamelCase(reason)) {
        if (!joined.empty()) joined += ' ';
        joined += word;
    }
    // Flux sends longer ones as they are, and GitHub answers 422; cutting keeps the status.
    return firstChars(asciiLowered(joined), kMaxDescriptionChars);
}

std::string statusContext(std::string_view contextTemplate, const ObjectRef& object) {
    FluxEvent event;
    event.involvedObject = object;
    // GitHub compares contexts case-insensitively; Flux writes them lower-case.
    return asciiLowered(EventTemplate::parseObjectTemplate(contextTemplate).render(event));
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
        repository.error =
            "address " + inQuotes(address.toString()) + " does not name a repository as <host>/<owner>/<repo>";
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
