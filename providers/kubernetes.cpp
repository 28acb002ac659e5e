// Kubernetes target: a merge patch of reconcile.fluxcd.io/requestedAt on each listed object, with the
// pod's service-account token, re-read as it rotates.
#include "providers/kubernetes.hpp"
#include "core/text.hpp"

#include <utility>

#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

namespace fluxrelay {

namespace {

// As client-go's file token source: a rotated projected token is picked up within a minute.
constexpr Duration kTokenCacheTtl = std::chrono::minutes(1);

// Object names are DNS labels or subdomains already; escaping anyway keeps a bad config from
// changing the path's shape.
std::string pathSegment(std::string_view text) { return boost::urls::encode(text, boost::urls::unreserved_chars); }

// A projected service-account token rotates: the file is read again once the last read is a
// minute old, or at once after the API server refused the token.
class TokenFile final : public Credentials {
public:
    explicit TokenFile(std::string path) : path_(std::move(path)) {}

    std::optional<CredentialsFetch> fetch(TimePoint now) override {
        if (readAt_ && now >= *readAt_ && now - *readAt_ < kTokenCacheTtl) return std::nullopt;
        return CredentialsFetch{.exchange = {}, .file = path_};
    }

    Outcome accept(const CredentialsAnswer& answer, TimePoint now) override {
        std::string token = answer.content;
        while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
            token.pop_back();
        }
        const std::string error = !answer.error.empty() ? answer.error : token.empty() ? "the file is empty" : "";
        if (!error.empty()) {
            // A projected token may not be mounted yet: try again later rather than give up.
            return Outcome::retry("cannot read token file " + path_ + ": " + error);
        }
        token_ = std::move(token);
        readAt_ = now;
        return Outcome::delivered();
    }

    const std::string& token() const { return token_; }
    void forget() { readAt_.reset(); }

private:
    std::string path_;
    std::string token_;                // as last read
    std::optional<TimePoint> readAt_;  // unset: read the file before the next attempt
};

class KubernetesProvider final : public Provider {
public:
    explicit KubernetesProvider(const TargetConfig& target)
        : Provider(target, traits(target)), tokenFile_(target.tokenFile) {
        if (!target_.tokenFile.empty()) renewsCredentials(tokenFile_);
        std::string base = target_.address.target.substr(0, target_.address.target.find('?'));
        while (!base.empty() && base.back() == '/') base.pop_back();
        for (const ObjectSelector& resource : target_.resources) {
            Url url = target_.address;
            url.target = base + kubernetesObjectPath(resource);
            urls_.push_back(std::move(url));
        }
    }

    // One PATCH per resource, all with the same time. A retry sends them all again: asking a
    // controller to reconcile twice costs one reconciliation, never a wrong state.
    AttemptPlan plan(std::span<const Delivery> /*batch*/, const ProviderState& /*state*/,
                     TimePoint now) const override {
        if (urls_.empty()) return AttemptPlan::decide(Outcome::permanent("the kubernetes target lists no resources"));
        const std::string& token = target_.tokenFile.empty() ? target_.token : tokenFile_.token();
        const std::string body = reconcileRequestPatch(now);
        AttemptPlan plan;
        for (const Url& url : urls_) {
            HttpRequest request;
            request.method = "PATCH";
            request.url = url;
            request.headers.emplace_back("Content-Type", "application/merge-patch+json");
            request.headers.emplace_back("Accept", "application/json");
            if (!token.empty()) request.headers.emplace_back("Authorization", "Bearer " + token);
            request.body = body;
            addConfiguredHeaders(request);
            plan.requests.push_back(std::move(request));
        }
        return plan;
    }

    // The API server answers 200 with the patched object; 404 when the object (or its kind) does
    // not exist and 403 when RBAC does not allow the patch, which no retry changes; 401 with a
    // rotated token, which the next read of the file fixes.
    Outcome classify(const HttpResponse& response) override {
        Outcome outcome = classifyHttpStatus(response);
        if (response.status == 401 && !target_.tokenFile.empty()) {
            tokenFile_.forget();
            return Outcome::retry(outcome.detail + " (token refused; the token file is read again)");
        }
        if (response.status == 403) {
            outcome.detail += " (the service account needs RBAC permission to patch this resource)";
        }
        return outcome;
    }

private:
    static Traits traits(const TargetConfig& target) {
        Traits traits{.maxBatch = 1, .refresh = {}, .ownHeaders = {"Content-Type", "Accept"}};
        if (!target.token.empty() || !target.tokenFile.empty()) traits.ownHeaders.emplace_back("Authorization");
        return traits;
    }

    std::vector<Url> urls_;  // per resource, in config order
    TokenFile tokenFile_;
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
