// Kubernetes target: a merge patch of reconcile.fluxcd.io/requestedAt on each listed object, with the
// pod's service-account token, re-read as it rotates.
#include "providers/kubernetes.hpp"
#include "core/text.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <utility>

namespace fluxrelay {

namespace {

// As client-go's file token source: a rotated projected token is picked up within a minute.
constexpr Duration tokenCacheTtl = std::chrono::minutes(1);

// Object names are DNS labels or subdomains already; escaping anyway keeps a bad config from
// changing the path's shape.
std::string pathSegment(std::string_view text) {
    static constexpr char digits[] = "0123456789ABCDEF";
    std::string out;
    for (const char c : text) {
        const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                                c == '-' || c == '.' || c == '_' || c == '~';
        if (unreserved) {
            out += c;
        } else {
            const auto byte = static_cast<unsigned char>(c);
            out += '%';
            out += digits[byte >> 4];
            out += digits[byte & 0x0f];
        }
    }
    return out;
}

// A token file's content, or why it cannot be used (error set, token empty).
struct TokenRead {
    std::string token;
    std::string error;
};

TokenRead readTokenFile(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) return {.token = {}, .error = std::strerror(errno)};
    std::string token((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    if (file.bad()) return {.token = {}, .error = "read error"};
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
    if (token.empty()) return {.token = {}, .error = "the file is empty"};
    return {.token = std::move(token), .error = {}};
}

class KubernetesProvider final : public Provider {
public:
    explicit KubernetesProvider(TargetConfig target) : target_(std::move(target)) {
        std::string base = target_.address.target.substr(0, target_.address.target.find('?'));
        while (!base.empty() && base.back() == '/') base.pop_back();
        for (const ObjectSelector& resource : target_.resources) {
            Url url = target_.address;
            url.target = base + kubernetesObjectPath(resource);
            urls_.push_back(std::move(url));
        }
    }

    std::size_t maxBatch() const override { return 1; }

    // The first resource's patch; the dispatcher sends them all (buildRequests).
    BuildResult buildRequest(std::span<const Delivery> batch) const override { return buildRequests(batch).front(); }

    // One PATCH per resource, all with the same time. A retry sends them all again: asking a
    // controller to reconcile twice costs one reconciliation, never a wrong state.
    std::vector<BuildResult> buildRequests(std::span<const Delivery> /*batch*/) const override {
        if (urls_.empty()) return {Outcome::permanent("the kubernetes target lists no resources")};
        std::string token;
        if (!target_.tokenFile.empty()) {
            TokenRead read = cachedToken();
            if (!read.error.empty()) {
                // A projected token may not be mounted yet: try again later rather than give up.
                return {Outcome::retry("cannot read token file " + target_.tokenFile + ": " + read.error)};
            }
            token = std::move(read.token);
        } else {
            token = target_.token;
        }
        const std::string body = reconcileRequestPatch(Clock::now());
        std::vector<BuildResult> requests;
        for (const Url& url : urls_) {
            HttpRequest request;
            request.method = "PATCH";
            request.url = url;
            for (const auto& [name, value] : target_.headers) {
                const bool own = equalsIgnoreCase(name, "Content-Type") ||
                                 (!token.empty() && equalsIgnoreCase(name, "Authorization"));
                if (!own) request.headers.emplace_back(name, value);
            }
            request.headers.emplace_back("Content-Type", "application/merge-patch+json");
            request.headers.emplace_back("Accept", "application/json");
            if (!token.empty()) request.headers.emplace_back("Authorization", "Bearer " + token);
            request.body = body;
            requests.emplace_back(std::move(request));
        }
        return requests;
    }

    // The API server answers 200 with the patched object; 404 when the object (or its kind) does
    // not exist and 403 when RBAC does not allow the patch, which no retry changes; 401 with a
    // rotated token, which the next read of the file fixes.
    Outcome classify(const HttpResponse& response) override {
        Outcome outcome = classifyHttpStatus(response);
        if (response.status == 401 && !target_.tokenFile.empty()) {
            std::lock_guard lock(mutex_);
            readAt_.reset();
            return Outcome::retry(outcome.detail + " (token refused; the token file is read again)");
        }
        if (response.status == 403) {
            outcome.detail += " (the service account needs RBAC permission to patch this resource)";
        }
        return outcome;
    }

private:
    TokenRead cachedToken() const {
        std::lock_guard lock(mutex_);
        const TimePoint now = Clock::now();
        if (readAt_ && now >= *readAt_ && now - *readAt_ < tokenCacheTtl) return {.token = token_, .error = {}};
        TokenRead read = readTokenFile(target_.tokenFile);
        if (read.error.empty()) {
            token_ = read.token;
            readAt_ = now;
        }
        return read;
    }

    TargetConfig target_;
    std::vector<Url> urls_;  // per resource, in config order
    mutable std::mutex mutex_;
    mutable std::string token_;
    mutable std::optional<TimePoint> readAt_;  // unset: read the file on next use
};

}  // namespace

std::unique_ptr<Provider> makeKubernetesProvider(const TargetConfig& target) {
    return std::make_unique<KubernetesProvider>(target);
}

std::string kubernetesPlural(std::string_view kind) {
    std::string plural;
    for (const char c : kind) plural += asciiLower(c);
    if (plural.ends_with('s')) return plural + "es";
    if (plural.ends_with('y')) return plural.substr(0, plural.size() - 1) + "ies";
    return plural + "s";
}

std::string kubernetesObjectPath(const ObjectSelector& object) {
    const std::string_view apiVersion = object.apiVersion;
    const std::size_t slash = apiVersion.find('/');
    std::string prefix;
    if (slash == std::string_view::npos) {
        prefix = "/api/" + pathSegment(apiVersion);
    } else {
        prefix = "/apis/" + pathSegment(apiVersion.substr(0, slash)) + "/" + pathSegment(apiVersion.substr(slash + 1));
    }
    return prefix + "/namespaces/" + pathSegment(object.namespace_) + "/" + pathSegment(kubernetesPlural(object.kind)) +
           "/" + pathSegment(object.name);
}

std::string reconcileRequestPatch(TimePoint now) {
    return R"({"metadata":{"annotations":{"reconcile.fluxcd.io/requestedAt":")" + formatRfc3339Nano(now) + R"("}}})";
}

}  // namespace fluxrelay
