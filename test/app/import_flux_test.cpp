// import-flux: Flux's Alert/Provider/Receiver semantics carried over, the output a config the loader
// accepts, and everything not mapped reported.
#include "app/import_flux.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/loader.hpp"
#include "test/support/temp_dir.hpp"

using namespace fluxrelay;
namespace fs = std::filesystem;

namespace {

const std::string kKustomization = R"(
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: flux-system
resources: [./notifications.yaml]
)";

const std::string kHomeOps = R"(
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: alertmanager}
spec:
  type: alertmanager
  address: http://alertmanager-operated.observability.svc.cluster.local:9093/api/v2/alerts/
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: alertmanager}
spec:
  providerRef: {name: alertmanager}
  eventSeverity: error
  eventSources:
    - {kind: HelmRelease, name: "*"}
    - {kind: Kustomization, name: "*"}
  exclusionList: ["error.*lookup.*github", "dial.*tcp.*timeout"]
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: github}
spec:
  type: github
  address: https://github.com/onedr0p/home-ops
  secretRef: {name: github-token-secret}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: github}
spec:
  providerRef: {name: github}
  eventSources: [{kind: Kustomization, name: "*"}]
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: github-webhook}
spec:
  type: github
  events: ["ping", "push"]
  secretRef: {name: github-webhook-token-secret}
  resources:
    - {apiVersion: source.toolkit.fluxcd.io/v1, kind: GitRepository, name: flux-system}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: a}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: b}
)";

using test::TempDir;

// Loads the imported YAML with every secret file it lists in its header written.
ConfigPtr loadImported(const std::string& yaml) {
    TempDir dir;
    for (std::size_t at = yaml.find("#   ./secrets/"); at != std::string::npos;
         at = yaml.find("#   ./secrets/", at + 1)) {
        const std::size_t start = at + 4;
        const std::string path = yaml.substr(start, yaml.find(':', start) - start);
        // The one file made of two Secret keys holds them as username:password.
        dir.write(path,
                  std::string(path.ends_with("/proxy-credentials") ? "proxy-user:" : "") + "secret-for-" + path + "\n");
    }
    dir.write("fluxrelay.yaml", yaml);
    try {
        return loadConfigText(yaml, dir.file("fluxrelay.yaml"));
    } catch (const ConfigError& error) {
        FAIL("the imported config does not load:\n" << error.what() << "\n" << yaml);
    }
    return nullptr;
}

bool anyWarning(const ImportResult& result, const std::string& part) {
    return std::any_of(result.warnings.begin(), result.warnings.end(),
                       [&](const std::string& w) { return w.find(part) != std::string::npos; });
}

std::string warnings(const ImportResult& result) {
    std::string out;
    for (const auto& w : result.warnings) out += w + "\n";
    return out;
}

const RouteConfig* routeNamed(const Config& config, const std::string& name) {
    for (const auto& route : config.routes) {
        if (route.name == name) return &route;
    }
    return nullptr;
}

// An environment variable set for one test.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
    ~ScopedEnv() { unsetenv(name_); }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    const char* name_;
};

ImportResult importOne(const std::string& text) { return importFlux({{"flux/notifications.yaml", text}}); }

}  // namespace

TEST_CASE("import-flux: home-ops manifests become a config with Flux's routing") {
    const ImportResult result =
        importFlux({{"flux/kustomization.yaml", kKustomization}, {"flux/notifications.yaml", kHomeOps}});
    REQUIRE(result.errors.empty());
    REQUIRE(result.mapped);
    const ConfigPtr config = loadImported(result.yaml);
    REQUIRE(config);

    REQUIRE(config->sources.size() == 2);
    CHECK(config->sources[0].name == "flux");
    CHECK(config->sources[0].path == "/flux/events");
    CHECK(config->sources[0].hmacKey == "secret-for-./secrets/flux-hmac");
    CHECK(config->sources[1].name == "github");
    CHECK(config->sources[1].path == "/github/webhook");
    CHECK(config->sources[1].secret == "secret-for-./secrets/github-webhook-token-secret/token");
    CHECK(config->sources[1].events == std::vector<std::string>{"ping", "push"});

    const RouteConfig* am = routeNamed(*config, "alertmanager");
    REQUIRE(am != nullptr);
    CHECK(am->source == "flux");
    CHECK((am->eventSeverity == Severity::error));
    REQUIRE(am->eventSources.size() == 2);
    CHECK(am->eventSources[0].kind == "HelmRelease");
    CHECK(am->eventSources[0].name == "*");
    // Flux reads an entry without namespace as the Alert's namespace, which the kustomization set.
    CHECK(am->eventSources[0].namespace_ == "flux-system");
    REQUIRE(am->exclusionList.size() == 2);
    CHECK(am->exclusionList[0].text == "error.*lookup.*github");
    CHECK((am->dedup.mode == DedupMode::flux));
    CHECK(am->dedup.window == std::chrono::minutes(5));
    CHECK(am->targets == std::vector<std::string>{"alertmanager"});

    const RouteConfig* github = routeNamed(*config, "github");
    REQUIRE(github != nullptr);
    CHECK((github->eventSeverity == Severity::info));
    CHECK(github->targets == std::vector<std::string>{"github"});

    const RouteConfig* receiver = routeNamed(*config, "github-webhook");
    REQUIRE(receiver != nullptr);
    CHECK(receiver->source == "github");
    CHECK(receiver->events == std::vector<std::string>{"ping", "push"});
    CHECK(receiver->targets == std::vector<std::string>{"github-webhook"});

    const TargetConfig* amTarget = config->targetByName("alertmanager");
    REQUIRE(amTarget != nullptr);
    CHECK(amTarget->addressText == "http://alertmanager-operated.observability.svc.cluster.local:9093/api/v2/alerts/");
    CHECK(amTarget->token.empty());
    const TargetConfig* statusTarget = config->targetByName("github");
    REQUIRE(statusTarget != nullptr);
    CHECK(statusTarget->token == "secret-for-./secrets/github-token-secret/token");
    const TargetConfig* receiverTarget = config->targetByName("github-webhook");
    REQUIRE(receiverTarget != nullptr);
    CHECK((receiverTarget->type == TargetType::fluxReceiver));
    CHECK(receiverTarget->receiverName == "github-webhook");
    CHECK(receiverTarget->receiverNamespace == "flux-system");
    // The same token as the source: Flux's Receiver checks GitHub's signature with it.
    CHECK(receiverTarget->token == config->sources[1].secret);

    INFO(warnings(result));
    CHECK(anyWarning(result, "2 objects of kind ExternalSecret ignored"));
    CHECK(anyWarning(result, "Flux's is kind/name/<first part of the Provider's metadata.uid>"));
    CHECK(result.yaml.find("# WARNING: commit statuses get the context") != std::string::npos);
    CHECK(result.yaml.find("GitRepository flux-system/flux-system") != std::string::npos);  // the Receiver's resources
    CHECK(result.yaml.find("kubernetes target") != std::string::npos);
    CHECK(result.yaml.find(
              "#   ./secrets/github-token-secret/token: key token of Secret flux-system/github-token-secret") !=
          std::string::npos);
}

TEST_CASE("import-flux: without a kustomization the namespace is the object's own, else default with a warning") {
    const ImportResult result = importOne(R"(
apiVersion: notification.toolkit.fluxcd.io/v1beta2
kind: Provider
metadata: {name: am, namespace: monitoring}
spec: {type: alertmanager, address: "http://am:9093/api/v2/alerts"}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta2
kind: Alert
metadata: {name: am, namespace: monitoring}
spec:
  providerRef: {name: am}
  eventSources: [{kind: HelmRelease, name: podinfo}, {kind: Kustomization, name: "*", namespace: apps}]
---
apiVersion: notification.toolkit.fluxcd.io/v1beta2
kind: Alert
metadata: {name: lost}
spec:
  providerRef: {name: am}
  eventSources: [{kind: HelmRelease, name: "*"}]
)");
    REQUIRE(result.mapped);
    const ConfigPtr config = loadImported(result.yaml);
    const RouteConfig* route = routeNamed(*config, "am");
    REQUIRE(route != nullptr);
    CHECK(route->eventSources[0].namespace_ == "monitoring");
    CHECK(route->eventSources[0].name == "podinfo");
    CHECK(route->eventSources[1].namespace_ == "apps");
    INFO(warnings(result));
    CHECK(anyWarning(result, "Alert default/lost (flux/notifications.yaml): no metadata.namespace"));
    // Its Provider is in another namespace: providerRef is local to the Alert's.
    CHECK(anyWarning(result,
                     "Alert default/lost (flux/notifications.yaml): Provider default/am is not among the manifests; no "
                     "route created"));
    CHECK(routeNamed(*config, "lost") == nullptr);
}

TEST_CASE("import-flux: what cannot be mapped is reported, not dropped silently") {
    SUBCASE("the Provider feeding the relay, and types without a target") {
        const ImportResult result = importOne(R"(
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: hook, namespace: flux-system}
spec: {type: generic-hmac, address: "http://fluxrelay.fluxrelay.svc/flux/events", secretRef: {name: hook-key}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: chat, namespace: flux-system}
spec: {type: slack, channel: general}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: to-hook, namespace: flux-system}
spec: {providerRef: {name: hook}, eventSources: [{kind: Kustomization, name: "*"}]}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: to-chat, namespace: flux-system}
spec: {providerRef: {name: chat}, eventSources: [{kind: Kustomization, name: "*"}]}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: gitlab, namespace: flux-system}
spec: {type: gitlab, secretRef: {name: t}, resources: [{kind: GitRepository, name: x}]}
)");
        CHECK_FALSE(result.mapped);
        CHECK(result.yaml.empty());
        INFO(warnings(result));
        CHECK(anyWarning(result,
                         "type generic-hmac posting to /flux/events looks like the Provider that forwards Flux's "
                         "events to fluxrelay: keep it, it feeds the flux source; not mapped"));
        CHECK(anyWarning(result, "type slack has no fluxrelay target"));
        CHECK(anyWarning(result,
                         "Alert flux-system/to-hook (flux/notifications.yaml): its Provider hook feeds fluxrelay "
                         "itself; no route created"));
        CHECK(anyWarning(result, "Alert flux-system/to-chat"));
        CHECK(anyWarning(result, "Receiver flux-system/gitlab (flux/notifications.yaml): type gitlab is not mapped"));
    }
    SUBCASE("suspended objects") {
        const ImportResult result = importOne(R"(
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: am, namespace: ns}
spec: {type: alertmanager, address: "http://am/api/v2/alerts", suspend: true}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: a, namespace: ns}
spec: {providerRef: {name: am}, eventSources: [{kind: Kustomization, name: "*"}]}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: b, namespace: ns}
spec: {providerRef: {name: am}, suspend: true, eventSources: [{kind: Kustomization, name: "*"}]}
)");
        CHECK_FALSE(result.mapped);
        INFO(warnings(result));
        CHECK(anyWarning(result, "Provider ns/am (flux/notifications.yaml): suspended"));
        CHECK(
            anyWarning(result, "Alert ns/a (flux/notifications.yaml): its Provider am is suspended; no route created"));
        CHECK(anyWarning(result, "Alert ns/b (flux/notifications.yaml): suspended"));
    }
    SUBCASE("matchLabels, invalid patterns, empty eventSources") {
        const ImportResult result = importOne(R"(
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: am, namespace: ns}
spec: {type: alertmanager, address: "http://am/api/v2/alerts"}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: labelled, namespace: ns}
spec:
  providerRef: {name: am}
  eventSources: [{kind: HelmRelease, name: "*", matchLabels: {team: a}}]
  inclusionList: ["(unclosed", "ok.*"]
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: empty, namespace: ns}
spec: {providerRef: {name: am}, eventSources: []}
)");
        REQUIRE(result.mapped);
        const ConfigPtr config = loadImported(result.yaml);
        const RouteConfig* route = routeNamed(*config, "labelled");
        REQUIRE(route != nullptr);
        REQUIRE(route->eventSources.size() == 1);  // kept, wider than Flux: reported
        REQUIRE(route->inclusionList.size() == 1);
        CHECK(route->inclusionList[0].text == "ok.*");
        CHECK(routeNamed(*config, "empty") == nullptr);
        INFO(warnings(result));
        CHECK(anyWarning(result, "matchLabels cannot be evaluated by a relay"));
        CHECK(anyWarning(result, "inclusionList pattern \"(unclosed\" is invalid"));
        CHECK(anyWarning(result, "Alert ns/empty (flux/notifications.yaml): no usable eventSources"));
    }
}

TEST_CASE("import-flux: Provider secrets become files or environment variables, never values") {
    const ImportResult result = importOne(R"(
apiVersion: v1
kind: Secret
metadata: {name: am-auth, namespace: ns}
stringData: {address: "http://user:pw@am/api/v2/alerts", token: do-not-copy-me}
---
apiVersion: v1
kind: Secret
metadata: {name: am-tls, namespace: ns}
data: {ca.crt: Y2E=, tls.crt: Y3J0, tls.key: a2V5}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: am, namespace: ns}
spec:
  type: alertmanager
  address: http://ignored/api/v2/alerts
  secretRef: {name: am-auth}
  certSecretRef: {name: am-tls}
  timeout: 30s
  proxy: http://proxy.internal:3128
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: status, namespace: ns, uid: 5a7b1c2d-1111-2222-3333-444455556666}
spec: {type: github, address: "https://github.com/org/repo", secretRef: {name: gh}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: a, namespace: ns}
spec:
  providerRef: {name: am}
  eventSources: [{kind: Kustomization, name: "*"}]
  summary: from summary
  eventMetadata: {summary: from metadata, cluster: "${CLUSTER_NAME}"}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: s, namespace: ns}
spec: {providerRef: {name: status}, eventSources: [{kind: Kustomization, name: "*"}], summary: only summary}
)");
    REQUIRE(result.mapped);
    INFO(warnings(result));
    CHECK(result.yaml.find("do-not-copy-me") == std::string::npos);
    CHECK(result.yaml.find("user:pw") == std::string::npos);
    CHECK(result.yaml.find("address: \"${AM_AUTH_ADDRESS}\"") != std::string::npos);
    CHECK(anyWarning(result, "set the environment variable AM_AUTH_ADDRESS"));
    CHECK(anyWarning(result, "${CLUSTER_NAME} (a Flux postBuild substitution)"));
    CHECK_FALSE(anyWarning(result, "${AM_AUTH_ADDRESS} (a Flux postBuild"));

    const ScopedEnv address("AM_AUTH_ADDRESS", "http://am.internal:9093/api/v2/alerts");
    const ScopedEnv cluster("CLUSTER_NAME", "home");
    const ConfigPtr config = loadImported(result.yaml);
    const TargetConfig* am = config->targetByName("am");
    REQUIRE(am != nullptr);
    CHECK(am->addressText == "http://am.internal:9093/api/v2/alerts");
    CHECK(am->token == "secret-for-./secrets/am-auth/token");
    CHECK(am->caFile.ends_with("secrets/am-tls/ca.crt"));
    CHECK(am->certFile.ends_with("secrets/am-tls/tls.crt"));
    CHECK(am->keyFile.ends_with("secrets/am-tls/tls.key"));
    CHECK(am->timeout == std::chrono::seconds(30));
    REQUIRE(am->proxy.has_value());
    CHECK(am->proxy->host == "proxy.internal");

    const TargetConfig* status = config->targetByName("status");
    REQUIRE(status != nullptr);
    CHECK(status->context == "{kind}/{name}/5a7b1c2d");  // Flux's context for this Provider

    // Flux: spec.summary wins over eventMetadata.summary.
    const RouteConfig* a = routeNamed(*config, "a");
    REQUIRE(a != nullptr);
    CHECK(a->eventMetadata.at("summary") == "from summary");
    CHECK(a->eventMetadata.at("cluster") == "home");
    const RouteConfig* s = routeNamed(*config, "s");
    REQUIRE(s != nullptr);
    CHECK(s->eventMetadata.at("summary") == "only summary");
}

TEST_CASE("import-flux: generic and generic-hmac Providers become generic targets") {
    const ImportResult result = importOne(R"(
apiVersion: v1
kind: Secret
metadata: {name: hook-auth, namespace: ns}
stringData: {token: do-not-copy-me, headers: "X-Api-Key: do-not-copy-me-either"}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: n8n, namespace: ns}
spec:
  type: generic-hmac
  address: https://n8n.example/webhook/flux
  secretRef: {name: hook-auth}
  certSecretRef: {name: hook-tls}
  proxy: http://proxy.internal:3128
  timeout: 20s
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: ha, namespace: ns}
spec: {type: generic, address: "http://homeassistant.local:8123/api/webhook/flux", secretRef: {name: hook-auth}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: bare, namespace: ns}
spec: {type: generic-hmac, address: "https://hooks.example.com/flux"}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: to-n8n, namespace: ns}
spec: {providerRef: {name: n8n}, eventSources: [{kind: Kustomization, name: "*"}], eventMetadata: {cluster: home}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: to-ha, namespace: ns}
spec: {providerRef: {name: ha}, eventSeverity: error, eventSources: [{kind: HelmRelease, name: "*"}]}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: to-bare, namespace: ns}
spec: {providerRef: {name: bare}, eventSources: [{kind: GitRepository, name: "*"}]}
)");
    REQUIRE(result.mapped);
    INFO(warnings(result));
    INFO(result.yaml);
    CHECK(result.yaml.find("do-not-copy-me") == std::string::npos);
    CHECK(result.yaml.find("hmacKeyFile: ./secrets/hook-auth/token") != std::string::npos);
    CHECK(result.yaml.find("#   ./secrets/hook-auth/token: key token of Secret ns/hook-auth") != std::string::npos);
    // Flux reads the headers from the Secret; their values are not copied.
    CHECK(anyWarning(result,
                     "Provider ns/n8n (flux/notifications.yaml): the headers in Secret ns/hook-auth are not "
                     "mapped"));
    CHECK(anyWarning(result,
                     "Provider ns/bare (flux/notifications.yaml): no spec.secretRef, which Flux needs for a "
                     "generic-hmac Provider"));

    const ConfigPtr config = loadImported(result.yaml);
    const TargetConfig* n8n = config->targetByName("n8n");
    REQUIRE(n8n != nullptr);
    CHECK((n8n->type == TargetType::generic));
    CHECK(n8n->addressText == "https://n8n.example/webhook/flux");
    CHECK(n8n->hmacKey == "secret-for-./secrets/hook-auth/token");
    CHECK(n8n->token.empty());
    CHECK(n8n->caFile.ends_with("secrets/hook-tls/ca.crt"));
    CHECK(n8n->timeout == std::chrono::seconds(20));
    REQUIRE(n8n->proxy.has_value());
    CHECK(n8n->proxy->host == "proxy.internal");

    // generic: Flux sends the Secret's token nowhere, and neither does the target.
    const TargetConfig* ha = config->targetByName("ha");
    REQUIRE(ha != nullptr);
    CHECK((ha->type == TargetType::generic));
    CHECK(ha->hmacKey.empty());
    CHECK(ha->token.empty());

    const TargetConfig* bare = config->targetByName("bare");
    REQUIRE(bare != nullptr);
    CHECK(bare->hmacKey == "secret-for-./secrets/bare-token/token");

    const RouteConfig* toN8n = routeNamed(*config, "to-n8n");
    REQUIRE(toN8n != nullptr);
    CHECK(toN8n->targets == std::vector<std::string>{"n8n"});
    CHECK(toN8n->eventMetadata.at("cluster") == "home");
    const RouteConfig* toHa = routeNamed(*config, "to-ha");
    REQUIRE(toHa != nullptr);
    CHECK((toHa->eventSeverity == Severity::error));
}

TEST_CASE("import-flux: a proxySecretRef's address comes from the environment, its credentials from a file") {
    const ImportResult result = importOne(R"(
apiVersion: v1
kind: Secret
metadata: {name: corp-proxy, namespace: ns}
stringData: {address: "http://proxy.corp:3128", username: relay, password: do-not-copy-me}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: am, namespace: ns}
spec: {type: alertmanager, address: "https://am.example/api/v2/alerts", proxySecretRef: {name: corp-proxy}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: unseen, namespace: ns}
spec: {type: alertmanager, address: "https://am2.example/api/v2/alerts", proxySecretRef: {name: elsewhere}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: a, namespace: ns}
spec: {providerRef: {name: am}, eventSources: [{kind: Kustomization, name: "*"}]}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: b, namespace: ns}
spec: {providerRef: {name: unseen}, eventSources: [{kind: Kustomization, name: "*"}]}
)");
    REQUIRE(result.mapped);
    INFO(warnings(result));
    INFO(result.yaml);
    CHECK(result.yaml.find("do-not-copy-me") == std::string::npos);
    CHECK(result.yaml.find("proxy.corp") == std::string::npos);
    CHECK(result.yaml.find("proxy: \"${CORP_PROXY_ADDRESS}\"") != std::string::npos);
    CHECK(result.yaml.find("proxyCredentialsFile: ./secrets/corp-proxy/proxy-credentials") != std::string::npos);
    CHECK(result.yaml.find("#   ./secrets/corp-proxy/proxy-credentials: keys username and password of Secret "
                           "ns/corp-proxy, as\n#     username:password") != std::string::npos);
    CHECK(anyWarning(result,
                     "Provider ns/am (flux/notifications.yaml): the proxy comes from Secret ns/corp-proxy: "
                     "set the environment variable CORP_PROXY_ADDRESS to its address"));
    CHECK(anyWarning(result,
                     "the proxy Secret ns/elsewhere is not among the manifests: if it holds a username and "
                     "password, add proxyCredentialsFile"));
    CHECK_FALSE(anyWarning(result, "not mapped)"));

    const ScopedEnv address("CORP_PROXY_ADDRESS", "http://proxy.corp:3128");
    const ScopedEnv elsewhere("ELSEWHERE_ADDRESS", "http://proxy.other:8080");
    const ConfigPtr config = loadImported(result.yaml);
    const TargetConfig* am = config->targetByName("am");
    REQUIRE(am != nullptr);
    REQUIRE(am->proxy.has_value());
    CHECK(am->proxy->hostHeader() == "proxy.corp:3128");
    CHECK(am->proxyCredentials == "proxy-user:secret-for-./secrets/corp-proxy/proxy-credentials");
    const TargetConfig* unseen = config->targetByName("unseen");
    REQUIRE(unseen != nullptr);
    CHECK(unseen->proxy->hostHeader() == "proxy.other:8080");
    CHECK(unseen->proxyCredentials.empty());
}

TEST_CASE("import-flux: names stay unique across namespaces") {
    std::string text;
    for (const char* ns : {"a", "b"}) {
        text += std::string(R"(
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: am, namespace: )") +
                ns + R"(}
spec: {type: alertmanager, address: "http://am/api/v2/alerts"}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: errors, namespace: )" +
                ns + R"(}
spec: {providerRef: {name: am}, eventSources: [{kind: Kustomization, name: "*"}]}
)";
    }
    const ImportResult result = importOne(text);
    const ConfigPtr config = loadImported(result.yaml);
    REQUIRE(config->routes.size() == 2);
    CHECK(config->routes[0].name == "errors");
    CHECK(config->routes[1].name == "b-errors");
    CHECK(config->routes[1].targets == std::vector<std::string>{"b-am"});
    CHECK(config->routes[1].eventSources[0].namespace_ == "b");
}

TEST_CASE("import-flux: input that is not YAML is an error with its position") {
    const ImportResult result = importFlux({{"bad.yaml", "kind: Alert\nspec: [unclosed\n"}});
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].starts_with("bad.yaml:"));
    CHECK_FALSE(result.mapped);
}

TEST_CASE("import-flux: a kustomization file without apiVersion and kind still sets the namespace") {
    const ImportResult result = importFlux({{"apps/kustomization.yaml", "namespace: monitoring\nresources: [a.yaml]\n"},
                                            {"apps/a.yaml", R"(
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: am, namespace: ignored}
spec: {type: alertmanager, address: "http://am/api/v2/alerts"}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: am}
spec: {providerRef: {name: am}, eventSources: [{kind: HelmRelease, name: "*"}]}
)"},
                                            {"other/b.yaml", R"(
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps, namespace: flux-system}
)"}});
    REQUIRE(result.mapped);
    INFO(warnings(result));
    CHECK(result.warnings.size() == 1);
    CHECK(anyWarning(result, "1 object of kind Kustomization ignored"));
    const ConfigPtr config = loadImported(result.yaml);
    CHECK(config->routes.at(0).eventSources.at(0).namespace_ == "monitoring");
}
