// Kubernetes target: API paths, the merge patch, headers, one PATCH per resource, token rotation,
// and the loader's in-cluster defaults.
#include "providers/kubernetes.hpp"
#include "test/providers/plans.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "config/loader.hpp"
#include "core/file.hpp"

namespace fluxrelay {
namespace {

namespace fs = std::filesystem;

ObjectSelector object(std::string apiVersion, std::string kind, std::string name, std::string namespace_) {
    return ObjectSelector{.apiVersion = std::move(apiVersion),
                          .kind = std::move(kind),
                          .name = std::move(name),
                          .namespace_ = std::move(namespace_)};
}

TargetConfig kubernetesTarget(std::string address = "https://10.96.0.1:443") {
    TargetConfig target;
    target.name = "reconcile-k8s";
    target.type = TargetType::kubernetes;
    target.address = *parseUrl(address);
    target.addressText = address;
    target.token = "inline-token";
    target.resources = {object("source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "flux-system"),
                        object("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "apps", "flux-system")};
    return target;
}

Delivery pushDelivery() {
    GitHubEvent github{.event = "push", .deliveryId = "d-1", .ref = "refs/heads/main", .deleted = false, .body = "{}"};
    Delivery delivery;
    delivery.id = 1;
    delivery.route = "reconcile-on-push";
    delivery.target = "reconcile-k8s";
    delivery.event = std::make_shared<const Event>(
        Event{.id = "0123456789abcdef", .source = "github", .receivedAt = {}, .payload = std::move(github)});
    return delivery;
}

std::vector<HttpRequest> buildAll(const Provider& provider) {
    const std::vector<Delivery> batch{pushDelivery()};
    std::vector<HttpRequest> requests;
    for (const BuildResult& result : buildRequests(provider, batch)) {
        REQUIRE(std::holds_alternative<HttpRequest>(result));
        requests.push_back(std::get<HttpRequest>(result));
    }
    return requests;
}

// The dispatcher's first step: the credentials the provider asks for, here its token file's.
Outcome fetchCredentials(Provider& provider) {
    const TimePoint now = Clock::now();
    Credentials* credentials = provider.credentials();
    const std::optional<CredentialsFetch> fetch = credentials ? credentials->fetch(now) : std::nullopt;
    if (!fetch) return Outcome::delivered("fresh");
    const FileContent file = readWholeFile(fetch->file);
    return credentials->accept({.response = {}, .content = file.bytes, .error = file.error}, now);
}

std::string header(const HttpRequest& request, std::string_view name) {
    std::string found;
    int count = 0;
    for (const auto& [key, value] : request.headers) {
        if (key == name) {
            found = value;
            ++count;
        }
    }
    CHECK(count == 1);
    return found;
}

// A folder removed at the end of the test.
struct TempDir {
    fs::path path;
    TempDir() {
        path = fs::temp_directory_path() / ("fluxrelay-k8s-test-" + std::to_string(std::rand()));
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string write(const std::string& name, const std::string& content) const {
        std::ofstream(path / name, std::ios::binary) << content;
        return (path / name).string();
    }
};

// Sets or clears an environment variable for one test, restoring it afterwards.
struct ScopedEnv {
    std::string name;
    std::optional<std::string> saved;
    ScopedEnv(std::string variable, const char* value) : name(std::move(variable)) {
        if (const char* old = std::getenv(name.c_str())) saved = old;
        if (value != nullptr) {
            setenv(name.c_str(), value, 1);
        } else {
            unsetenv(name.c_str());
        }
    }
    ~ScopedEnv() {
        if (saved) {
            setenv(name.c_str(), saved->c_str(), 1);
        } else {
            unsetenv(name.c_str());
        }
    }
};

}  // namespace

TEST_CASE("plural resource names, as the API machinery guesses them, for every Flux kind") {
    const std::vector<std::pair<std::string, std::string>> kinds = {
        {"GitRepository", "gitrepositories"},
        {"OCIRepository", "ocirepositories"},
        {"HelmRepository", "helmrepositories"},
        {"HelmChart", "helmcharts"},
        {"Bucket", "buckets"},
        {"Kustomization", "kustomizations"},
        {"HelmRelease", "helmreleases"},
        {"ImageRepository", "imagerepositories"},
        {"ImagePolicy", "imagepolicies"},
        {"ImageUpdateAutomation", "imageupdateautomations"},
        {"Receiver", "receivers"},
        {"ArtifactGenerator", "artifactgenerators"},
        {"ResourceSet", "resourcesets"},
        {"ConfigMap", "configmaps"},
        {"Ingress", "ingresses"},
    };
    // Not a structured binding: CAPTURE's lambda captures it, which clang 14 cannot.
    for (const auto& entry : kinds) {
        CAPTURE(entry.first);
        CHECK(kubernetesPlural(entry.first) == entry.second);
    }
}

TEST_CASE("object paths: core group under /api, named groups under /apis, always namespaced") {
    CHECK(kubernetesObjectPath(object("v1", "ConfigMap", "settings", "apps")) ==
          "/api/v1/namespaces/apps/configmaps/settings");
    CHECK(kubernetesObjectPath(object("source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "flux-system")) ==
          "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/flux-system");
    CHECK(kubernetesObjectPath(object("helm.toolkit.fluxcd.io/v2", "HelmRelease", "podinfo", "apps")) ==
          "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases/podinfo");
    // Whatever a config says, it cannot change the shape of the path.
    CHECK(kubernetesObjectPath(object("v1", "ConfigMap", "a/../b?c", "apps")) ==
          "/api/v1/namespaces/apps/configmaps/a%2F..%2Fb%3Fc");
}

TEST_CASE("the merge patch sets reconcile.fluxcd.io/requestedAt in RFC3339Nano") {
    const TimePoint at = TimePoint{std::chrono::seconds(1664520029)} + std::chrono::microseconds(123456);
    CHECK(reconcileRequestPatch(at) ==
          R"({"metadata":{"annotations":{"reconcile.fluxcd.io/requestedAt":"2022-09-30T06:40:29.123456Z"}}})");
}

TEST_CASE("one delivery: one PATCH per listed resource, in order, with the same time") {
    const auto provider = makeKubernetesProvider(kubernetesTarget("https://10.96.0.1:443/"));
    CHECK(provider->maxBatch() == 1);
    const std::vector<HttpRequest> requests = buildAll(*provider);
    REQUIRE(requests.size() == 2);
    CHECK(requests[0].url.toString() ==
          "https://10.96.0.1/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/flux-system");
    CHECK(requests[1].url.target == "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/apps");
    for (const HttpRequest& request : requests) {
        CHECK(request.method == "PATCH");
        CHECK(header(request, "Content-Type") == "application/merge-patch+json");
        CHECK(header(request, "Authorization") == "Bearer inline-token");
        CHECK(request.body.starts_with(R"({"metadata":{"annotations":{"reconcile.fluxcd.io/requestedAt":")"));
    }
    CHECK(requests[0].body == requests[1].body);
    // buildRequest alone is the first of them.
    const std::vector<Delivery> batch{pushDelivery()};
    const BuildResult first = buildRequest(*provider, batch);
    REQUIRE(std::holds_alternative<HttpRequest>(first));
    CHECK(std::get<HttpRequest>(first).url.target == requests[0].url.target);
}

TEST_CASE("the token file is read while running, and again after a 401 (rotated projected token)") {
    TempDir dir;
    TargetConfig target = kubernetesTarget("http://127.0.0.1:6443");
    target.token = "read-at-load";
    target.tokenFile = dir.write("token", "first-token\n");
    const auto provider = makeKubernetesProvider(target);
    CHECK((fetchCredentials(*provider).kind == OutcomeKind::delivered));
    CHECK(header(buildAll(*provider).front(), "Authorization") == "Bearer first-token");

    dir.write("token", "second-token");
    // Cached for a while, as client-go does...
    CHECK(fetchCredentials(*provider).detail == "fresh");
    CHECK(header(buildAll(*provider).front(), "Authorization") == "Bearer first-token");
    // ...until the API server refuses it: then the file is read again and the delivery retried.
    const Outcome refused = provider->classify(HttpResponse{.status = 401, .headers = {}, .body = "Unauthorized"});
    CHECK((refused.kind == OutcomeKind::retry));
    CHECK((fetchCredentials(*provider).kind == OutcomeKind::delivered));
    CHECK(header(buildAll(*provider).front(), "Authorization") == "Bearer second-token");

    // A token that is not there (yet) is a reason to try later.
    fs::remove(target.tokenFile);
    CHECK((provider->classify(HttpResponse{.status = 401}).kind == OutcomeKind::retry));
    const Outcome missing = fetchCredentials(*provider);
    CHECK((missing.kind == OutcomeKind::retry));
    CHECK(missing.detail.find(target.tokenFile) != std::string::npos);
}

TEST_CASE("classification of the API server's answers") {
    const auto provider = makeKubernetesProvider(kubernetesTarget());
    const auto classify = [&](int status) { return provider->classify(HttpResponse{.status = status}); };
    CHECK((classify(200).kind == OutcomeKind::delivered));
    CHECK((classify(404).kind == OutcomeKind::permanent));
    CHECK((classify(403).kind == OutcomeKind::permanent));
    CHECK(classify(403).detail.find("RBAC") != std::string::npos);
    // An inline token does not rotate: a refusal is final.
    CHECK((classify(401).kind == OutcomeKind::permanent));
    CHECK((classify(429).kind == OutcomeKind::retry));
    CHECK((classify(503).kind == OutcomeKind::retry));
}

TEST_CASE("configured headers are kept; the token wins over a configured Authorization") {
    TargetConfig target = kubernetesTarget();
    target.headers = {{"X-Audit", "fluxrelay"}, {"authorization", "Basic xyz"}, {"content-type", "text/plain"}};
    const HttpRequest request = buildAll(*makeKubernetesProvider(target)).front();
    CHECK(header(request, "X-Audit") == "fluxrelay");
    CHECK(header(request, "Authorization") == "Bearer inline-token");
    CHECK(header(request, "Content-Type") == "application/merge-patch+json");
}

TEST_CASE("loader: in-cluster defaults for a kubernetes target") {
    const std::string resources = R"(
    resources:
      - {apiVersion: source.toolkit.fluxcd.io/v1, kind: GitRepository, name: flux-system, namespace: flux-system}
)";
    SUBCASE("service environment and service account") {
        ScopedEnv host("KUBERNETES_SERVICE_HOST", "10.96.0.1");
        ScopedEnv port("KUBERNETES_SERVICE_PORT", "443");
        const ConfigPtr config = loadConfigText("targets:\n  - name: k\n    type: kubernetes" + resources, "t.yaml");
        const TargetConfig& target = config->targets.at(0);
        CHECK(target.address.toString() == "https://10.96.0.1/");
        CHECK(target.tokenFile == "/var/run/secrets/kubernetes.io/serviceaccount/token");
        CHECK(target.caFile == "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
        CHECK(target.token.empty());
    }
    SUBCASE("IPv6 service host") {
        ScopedEnv host("KUBERNETES_SERVICE_HOST", "fd00::1");
        ScopedEnv port("KUBERNETES_SERVICE_PORT", "6443");
        const ConfigPtr config = loadConfigText("targets:\n  - name: k\n    type: kubernetes" + resources, "t.yaml");
        CHECK(config->targets.at(0).address.toString() == "https://[fd00::1]:6443/");
    }
    SUBCASE("no service environment: the service's DNS name") {
        ScopedEnv host("KUBERNETES_SERVICE_HOST", nullptr);
        const ConfigPtr config = loadConfigText("targets:\n  - name: k\n    type: kubernetes" + resources, "t.yaml");
        CHECK(config->targets.at(0).address.toString() == "https://kubernetes.default.svc/");
    }
    SUBCASE("overrides for tests and other clusters") {
        TempDir dir;
        dir.write("token", "file-token\n");
        const ConfigPtr config = loadConfigText(
            "targets:\n  - name: k\n    type: kubernetes\n    address: http://127.0.0.1:8001\n    tokenFile: token" +
                resources,
            (dir.path / "fluxrelay.yaml").string());
        const TargetConfig& target = config->targets.at(0);
        CHECK(target.address.toString() == "http://127.0.0.1:8001/");
        CHECK(target.tokenFile == (dir.path / "token").string());
        CHECK(target.token == "file-token");
        CHECK(target.caFile.empty());
    }
    SUBCASE("an inline token is used as it is") {
        const ConfigPtr config = loadConfigText(
            "targets:\n  - name: k\n    type: kubernetes\n    address: https://api.example:6443\n    token: t" +
                resources,
            "t.yaml");
        CHECK(config->targets.at(0).tokenFile.empty());
        CHECK(config->targets.at(0).token == "t");
    }
}

}  // namespace fluxrelay
