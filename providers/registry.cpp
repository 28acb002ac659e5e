// The provider table, and what every provider shares: status classification, Retry-After, auth headers.
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "core/crypto.hpp"
#include "core/text.hpp"
#include "providers/alertmanager.hpp"
#include "providers/flux_receiver.hpp"
#include "providers/generic.hpp"
#include "providers/github.hpp"
#include "providers/github_deployment.hpp"
#include "providers/kubernetes.hpp"
#include "providers/provider.hpp"

namespace fluxrelay {

namespace {

// Enough of a peer's body to say what went wrong, without filling logs and the status page.
constexpr std::size_t kMaxDetailBodyBytes = 200;

// Retry-After is capped so that converting it to milliseconds and adding it to a time point cannot
// overflow; a peer asking for more than ~31 years is as good as "never", which maxAge then decides.
constexpr std::int64_t kMaxRetryAfterSeconds = 1'000'000'000;

bool isDigit(char c) { return c >= '0' && c <= '9'; }

std::string_view trimSpaces(std::string_view text) {
    const auto first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) return {};
    const auto last = text.find_last_not_of(" \t");
    return text.substr(first, last - first + 1);
}

// The start of a peer's body as one line of valid UTF-8: the detail ends up in JSON (status page,
// API, dead letters) and in log lines, where raw newlines and broken sequences do not belong.
std::string bodyExcerpt(std::string_view body) {
    // Cut at a character boundary of the whole body, so a valid character is never half kept: step
    // back over the continuation bytes (at most 3) of a character that straddles the limit.
    std::size_t cut = std::min(body.size(), kMaxDetailBodyBytes);
    const auto isContinuation = [&](std::size_t i) { return (static_cast<unsigned char>(body[i]) & 0xC0) == 0x80; };
    for (int step = 0; step < 3 && cut > 0 && cut < body.size() && isContinuation(cut); ++step) --cut;
    body = body.substr(0, cut);
    std::string out;
    out.reserve(body.size());
    while (!body.empty()) {
        const std::size_t length = utf8SequenceLength(body);
        if (length == 0) {
            // Not UTF-8: the peer sent bytes we can show only as placeholders.
            out += '?';
            body.remove_prefix(1);
            continue;
        }
        if (length == 1) {
            const char c = body[0];
            out += static_cast<unsigned char>(c) < 0x20 || c == 0x7F ? ' ' : c;
        } else {
            out.append(body.substr(0, length));
        }
        body.remove_prefix(length);
    }
    const auto last = out.find_last_not_of(' ');
    out.erase(last == std::string::npos ? 0 : last + 1);
    const auto first = out.find_first_not_of(' ');
    out.erase(0, first == std::string::npos ? out.size() : first);
    return out;
}

std::string statusDetail(const HttpResponse& response) {
    std::string detail = "HTTP " + std::to_string(response.status);
    const std::string excerpt = bodyExcerpt(response.body);
    if (!excerpt.empty()) detail += ": " + excerpt;
    return detail;
}

// Exactly `count` decimal digits at `pos`.
bool readNumber(std::string_view text, std::size_t pos, std::size_t count, int& out) {
    if (pos + count > text.size()) return false;
    int value = 0;
    for (std::size_t i = pos; i < pos + count; ++i) {
        if (!isDigit(text[i])) return false;
        value = value * 10 + (text[i] - '0');
    }
    out = value;
    return true;
}

// Index of a three-letter name in `names` (case-sensitive, as the grammar is), or -1.
template <std::size_t N>
int indexOfName(std::string_view text, const std::string_view (&names)[N]) {
    for (std::size_t i = 0; i < N; ++i) {
        if (text == names[i]) return static_cast<int>(i);
    }
    return -1;
}

// IMF-fixdate (RFC 9110 §5.6.7), e.g. "Sun, 06 Nov 1994 08:49:37 GMT": the only form a sender
// may generate today. The obsolete RFC 850 and asctime forms are not accepted.
std::optional<TimePoint> parseImfFixdate(std::string_view text) {
    static constexpr std::string_view kDayNames[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    static constexpr std::string_view kMonthNames[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    //  0123456789012345678901234567890
    if (text.size() != 29) return std::nullopt;
    if (indexOfName(text.substr(0, 3), kDayNames) < 0) return std::nullopt;
    if (text.substr(3, 2) != ", " || text[7] != ' ' || text[11] != ' ' || text[16] != ' ' || text[19] != ':' ||
        text[22] != ':' || text.substr(25) != " GMT") {
        return std::nullopt;
    }
    const int month = indexOfName(text.substr(8, 3), kMonthNames) + 1;
    int day = 0, year = 0, hour = 0, minute = 0, second = 0;
    if (month == 0 || !readNumber(text, 5, 2, day) || !readNumber(text, 12, 4, year) ||
        !readNumber(text, 17, 2, hour) || !readNumber(text, 20, 2, minute) || !readNumber(text, 23, 2, second)) {
        return std::nullopt;
    }
    using namespace std::chrono;
    const year_month_day date{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                              std::chrono::day{static_cast<unsigned>(day)}};
    // 60 is a leap second, which the grammar allows.
    if (!date.ok() || hour > 23 || minute > 59 || second > 60) return std::nullopt;
    return TimePoint{sys_days{date} + hours{hour} + minutes{minute} + seconds{second}};
}

}  // namespace

std::unique_ptr<Provider> makeProvider(const TargetConfig& target) {
    switch (target.type) {
        case TargetType::alertmanager:
            return makeAlertmanagerProvider(target);
        case TargetType::github:
            return makeGitHubProvider(target);
        case TargetType::githubDeployment:
            return makeGitHubDeploymentProvider(target);
        case TargetType::fluxReceiver:
            return makeFluxReceiverProvider(target);
        case TargetType::kubernetes:
            return makeKubernetesProvider(target);
        case TargetType::generic:
            return makeGenericProvider(target);
    }
    return nullptr;
}

std::vector<std::string> shadowedHeaderWarnings(const Config& config) {
    std::vector<std::string> warnings;
    for (const TargetConfig& target : config.targets) {
        const std::unique_ptr<Provider> provider = makeProvider(target);
        if (!provider) continue;
        for (const std::string& name : provider->shadowedHeaders()) {
            warnings.push_back("target " + target.name + ": header '" + name + "' is set by the " +
                               std::string(toString(target.type)) +
                               " target itself (content, signature or credentials); the configured value is not sent");
        }
    }
    return warnings;
}

Outcome Provider::classify(const HttpResponse& response) { return classifyHttpStatus(response); }

bool advanceAttempt(const AttemptPlan& step, std::string lastResponseBody, ProviderState& state) {
    for (const auto& [key, value] : step.writes) state[key] = value;
    if (!step.then) return false;
    if (!step.requests.empty() && !step.then->responseAs.empty()) {
        state[step.then->responseAs] = std::move(lastResponseBody);
    }
    return true;
}

Outcome classifyHttpStatus(const HttpResponse& response) { return classifyHttpStatus(response, Clock::now()); }

Outcome classifyHttpStatus(const HttpResponse& response, TimePoint now) {
    const int status = response.status;
    if (status >= 200 && status <= 299) return Outcome::delivered(statusDetail(response));
    // 408 and 429 are the two 4xx that say "not now" rather than "never".
    if ((status >= 500 && status <= 599) || status == 408 || status == 429) {
        std::optional<std::chrono::milliseconds> after;
        if (const auto value = response.header("Retry-After")) after = parseRetryAfter(*value, now);
        return Outcome::retry(statusDetail(response), after);
    }
    // Other 4xx, and 1xx/3xx (redirects are not followed): sending the same request again would
    // get the same answer.
    return Outcome::permanent(statusDetail(response));
}

std::optional<std::chrono::milliseconds> parseRetryAfter(std::string_view value, TimePoint now) {
    value = trimSpaces(value);
    if (value.empty()) return std::nullopt;
    if (std::all_of(value.begin(), value.end(), isDigit)) {
        // delay-seconds
        std::int64_t seconds = 0;
        const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), seconds);
        if (error == std::errc::result_out_of_range) {
            seconds = kMaxRetryAfterSeconds;
        } else if (error != std::errc{} || end != value.data() + value.size()) {
            return std::nullopt;
        }
        return std::chrono::seconds{std::min(seconds, kMaxRetryAfterSeconds)};
    }
    const auto date = parseImfFixdate(value);
    if (!date) return std::nullopt;
    if (*date <= now) return std::chrono::milliseconds{0};
    const auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(*date - now);
    return std::min<std::chrono::milliseconds>(delay, std::chrono::seconds{kMaxRetryAfterSeconds});
}

std::optional<std::string_view> HttpResponse::header(std::string_view name) const {
    for (const auto& [key, value] : headers) {
        if (equalsIgnoreCase(key, name)) return std::string_view{value};
    }
    return std::nullopt;
}

Provider::Provider(TargetConfig target, Traits traits) : target_(std::move(target)), traits_(std::move(traits)) {
    // The HTTP client frames every request itself.
    for (const std::string_view framing : {"Host", "Content-Length", "Transfer-Encoding"}) {
        traits_.ownHeaders.emplace_back(framing);
    }
    // Decided once: every request of the target sends the same ones.
    for (const auto& header : target_.headers) {
        if (!ownHeader(header.first)) sentHeaders_.push_back(header);
    }
}

bool Provider::ownHeader(std::string_view name) const {
    return std::any_of(traits_.ownHeaders.begin(), traits_.ownHeaders.end(),
                       [name](const std::string& mine) { return equalsIgnoreCase(mine, name); });
}

std::vector<std::string> Provider::shadowedHeaders() const {
    std::vector<std::string> shadowed;
    for (const auto& header : target_.headers) {
        if (ownHeader(header.first)) shadowed.push_back(header.first);
    }
    return shadowed;
}

void Provider::addConfiguredHeaders(HttpRequest& request) const {
    request.headers.insert(request.headers.end(), sentHeaders_.begin(), sentHeaders_.end());
}

bool Provider::hasAuthorization(const TargetConfig& target) {
    // As Flux: Basic only when both parts are set; a username alone sends nothing.
    return !target.token.empty() || (!target.username.empty() && !target.password.empty());
}

void Provider::addAuthorization(HttpRequest& request) const {
    if (!target_.token.empty()) {
        request.headers.emplace_back("Authorization", "Bearer " + target_.token);
    } else if (hasAuthorization(target_)) {
        request.headers.emplace_back("Authorization",
                                     "Basic " + base64Encode(target_.username + ":" + target_.password));
    }
}

}  // namespace fluxrelay
