// import-flux: Flux's notification objects read with Flux's own semantics (notification-controller's
// event and receiver handlers), written out as fluxrelay targets, sources and routes.
#include "app/import_flux.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include "config/loader.hpp"
#include "core/duration.hpp"
#include "core/file.hpp"

namespace fluxrelay {

namespace {

constexpr std::string_view kNotificationGroup = "notification.toolkit.fluxcd.io/";
constexpr std::string_view kKustomizeGroup = "kustomize.config.k8s.io/";
// notification-controller's webhook-receiver Service in a default Flux installation.
constexpr std::string_view kReceiverAddress = "http://webhook-receiver.flux-system.svc.cluster.local";
// Flux's event rate limiter: one identical event per 5 minutes (--rate-limit-interval default).
constexpr std::string_view kFluxDedupWindow = "5m";

// ---- reading manifests

// One Kubernetes object of the input.
struct Object {
    std::string file;
    std::string apiVersion;
    std::string kind;
    std::string name;
    std::string namespace_;  // after a kustomization's `namespace:`; "default" when none is found
    YAML::Node metadata;
    YAML::Node spec;
    YAML::Node root;

    std::string label() const { return kind + " " + namespace_ + "/" + name + " (" + file + ")"; }
};

std::optional<std::string> scalar(const YAML::Node& map, std::string_view key) {
    if (!map || !map.IsMap()) return std::nullopt;
    const YAML::Node value = map[std::string(key)];
    if (!value || !value.IsScalar()) return std::nullopt;
    return value.Scalar();
}

std::string text(const YAML::Node& map, std::string_view key) { return scalar(map, key).value_or(""); }

bool flag(const YAML::Node& map, std::string_view key) {
    const std::string value = text(map, key);
    return value == "true" || value == "True" || value == "TRUE";
}

YAML::Node child(const YAML::Node& map, std::string_view key) {
    if (!map || !map.IsMap()) return YAML::Node();
    return map[std::string(key)];
}

std::vector<std::string> strings(const YAML::Node& map, std::string_view key) {
    std::vector<std::string> out;
    const YAML::Node list = child(map, key);
    if (!list || !list.IsSequence()) return out;
    for (const auto& item : list) {
        if (item.IsScalar()) out.push_back(item.Scalar());
    }
    return out;
}

std::vector<std::pair<std::string, std::string>> stringMap(const YAML::Node& map, std::string_view key) {
    std::vector<std::pair<std::string, std::string>> out;
    const YAML::Node entries = child(map, key);
    if (!entries || !entries.IsMap()) return out;
    for (const auto& entry : entries) {
        if (entry.first.IsScalar() && entry.second.IsScalar())
            out.emplace_back(entry.first.Scalar(), entry.second.Scalar());
    }
    return out;
}

std::string refName(const YAML::Node& spec, std::string_view key) { return text(child(spec, key), "name"); }

// ---- writing YAML

bool plainSafe(std::string_view value) {
    if (value.empty()) return false;
    static const std::set<std::string_view> special = {"true",  "false", "null", "yes", "no", "on", "off", "~",
                                                       "True",  "False", "Null", "Yes", "No", "On", "Off", "TRUE",
                                                       "FALSE", "NULL",  "YES",  "NO",  "ON", "OFF"};
    if (special.contains(value)) return false;
    if (std::all_of(value.begin(), value.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; }))
        return false;
    if (value.front() == '-' || value == ".") return false;
    return std::all_of(value.begin(), value.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
               c == '.' || c == '/';
    });
}

// A string: plain when unambiguous, else double-quoted.
void emitScalar(YAML::Emitter& out, const std::string& value) {
    if (!plainSafe(value)) out << YAML::DoubleQuoted;
    out << value;
}

// The same as text, to quote a value in a message as the config would write it.
std::string yamlScalar(const std::string& value) {
    YAML::Emitter out;
    emitScalar(out, value);
    return out.c_str();
}

// A comment's text wrapped at spaces to keep lines near 100 columns; continuation lines are
// indented two more than the text's own indentation.
std::string wrapped(std::string_view text) {
    constexpr std::size_t kRoom = 98;  // after "# "
    const std::string continuation(
        text.find_first_not_of(' ') == std::string_view::npos ? 2 : text.find_first_not_of(' ') + 2, ' ');
    std::string out;
    std::string_view prefix;
    while (!text.empty()) {
        std::size_t cut = text.size();
        if (prefix.size() + text.size() > kRoom) {
            const std::size_t limit = kRoom > prefix.size() ? kRoom - prefix.size() : 1;
            cut = text.rfind(' ', limit);
            if (cut == std::string_view::npos || cut <= text.find_first_not_of(' ')) cut = text.find(' ', limit);
            if (cut == std::string_view::npos) cut = text.size();
        }
        if (!out.empty()) out += '\n';
        out.append(prefix).append(text.substr(0, cut));
        text.remove_prefix(cut);
        while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
        prefix = continuation;
    }
    return out;
}

// Lines of comment, each wrapped, as one YAML::Comment.
YAML::_Comment comment(const std::vector<std::string>& lines) {
    std::string text;
    for (const std::string& line : lines) text += (text.empty() ? "" : "\n") + wrapped(line);
    return YAML::Comment(text);
}

// ---- the config being built

struct SourceOut {
    std::string name;
    std::string type;
    std::string path;
    std::string hmacKeyFile;
    std::string secretFile;
    std::vector<std::string> events;
    std::vector<std::string> comments;
};

struct TargetOut {
    std::string subject;  // the object it was made from, for warnings
    std::string name;
    std::string type;
    std::string address;
    std::string tokenFile;
    std::string hmacKeyFile;
    std::string username;
    std::string passwordFile;
    std::string caFile;
    std::string certFile;
    std::string keyFile;
    std::string proxy;
    std::string proxyCredentialsFile;
    std::string timeout;
    std::string context;
    std::string receiverName;
    std::string receiverNamespace;
    std::vector<std::string> comments;
};

struct SelectorOut {
    std::string kind;
    std::string name;
    std::string namespace_;
};

struct RouteOut {
    std::string subject;
    std::string name;
    std::string source;
    std::string eventSeverity;
    std::vector<SelectorOut> eventSources;
    std::vector<std::string> inclusionList;
    std::vector<std::string> exclusionList;
    std::vector<std::pair<std::string, std::string>> eventMetadata;
    std::string summary;
    bool fluxDedup = false;
    std::vector<std::string> events;
    std::vector<std::string> targets;
    std::vector<std::string> comments;
};

// A secret file the config names, listed in the header.
struct SecretFile {
    std::string path;
    std::string origin;
};

// What became of a Provider, for the Alerts that reference it.
struct ProviderFate {
    std::optional<std::size_t> target;  // index into targets
    std::string why;                    // when there is no target
};

class Importer {
public:
    ImportResult run(const std::vector<Manifest>& manifests) {
        for (const Manifest& manifest : manifests) read(manifest);
        applyKustomizeNamespaces();
        for (const Object& object : objects_) classify(object);
        for (const auto& [kind, count] : ignoredKinds_) {
            warn(std::to_string(count) + " object" + (count == 1 ? "" : "s") + " of kind " + kind +
                 " ignored: import-flux reads Provider, Alert and Receiver objects");
        }
        for (const Object* alert : alerts_) mapAlert(*alert);
        for (const Object* receiver : receivers_) mapReceiver(*receiver);
        for (const auto& [key, provider] : providers_) {
            if (!fates_.contains(key)) {
                warn(provider->label() + ": no imported Alert uses this Provider; not imported");
            }
        }
        result_.mapped = !routes_.empty();
        if (result_.mapped) {
            result_.yaml = render();
            // A config this writes that the loader refuses is a bug here: say so now, not at the
            // user's check-config.
            for (const ConfigDiagnostic& diagnostic : checkConfigText(result_.yaml, "(import-flux output)")) {
                result_.errors.push_back(diagnostic.toString());
            }
        }
        return std::move(result_);
    }

private:
    using Key = std::pair<std::string, std::string>;  // namespace, name

    void warn(std::string message) { result_.warnings.push_back(std::move(message)); }
    // A warning about what `out` was made from: also a comment next to it in the YAML.
    template <class Out>
    void warn(Out& out, const std::string& message) {
        out.comments.push_back("WARNING: " + message);
        result_.warnings.push_back(out.subject + ": " + message);
    }

    void read(const Manifest& manifest) {
        std::vector<YAML::Node> documents;
        try {
            documents = YAML::LoadAll(manifest.text);
        } catch (const YAML::Exception& e) {
            result_.errors.push_back(manifest.name + ":" + std::to_string(e.mark.line + 1) + ":" +
                                     std::to_string(e.mark.column + 1) + ": " + e.msg);
            return;
        }
        for (const YAML::Node& document : documents) add(manifest.name, document);
    }

    void add(const std::string& file, const YAML::Node& document) {
        if (!document || document.IsNull()) return;
        if (!document.IsMap()) {
            warn(file + ": a YAML document that is not an object ignored");
            return;
        }
        Object object{.file = file,
                      .apiVersion = text(document, "apiVersion"),
                      .kind = text(document, "kind"),
                      .name = text(child(document, "metadata"), "name"),
                      .namespace_ = text(child(document, "metadata"), "namespace"),
                      .metadata = child(document, "metadata"),
                      .spec = child(document, "spec"),
                      .root = document};
        if (object.kind == "List") {
            const YAML::Node items = child(document, "items");
            if (items && items.IsSequence()) {
                for (const auto& item : items) add(file, item);
            }
            return;
        }
        objects_.push_back(std::move(object));
    }

    // Kustomize sets the `namespace:` of a kustomization on every object it includes; the objects
    // of a folder are those of the kustomization file in it, when that file is among the inputs.
    void applyKustomizeNamespaces() {
        std::map<std::string, std::string> byFolder;
        for (const Object& object : objects_) {
            if (isKustomization(object)) {
                if (auto ns = scalar(object.root, "namespace")) byFolder[folder(object.file)] = *ns;
            }
        }
        for (Object& object : objects_) {
            if (isKustomization(object)) continue;
            const auto it = byFolder.find(folder(object.file));
            if (it != byFolder.end()) object.namespace_ = it->second;
            if (!object.namespace_.empty()) continue;
            object.namespace_ = "default";  // where applying it without a namespace puts it
            if (object.apiVersion.starts_with(kNotificationGroup)) {
                warn(object.label() +
                     ": no metadata.namespace (nor a kustomization namespace among the inputs); "
                     "taken as \"default\"");
            }
        }
    }

    // A kustomization file; kustomize lets it omit apiVersion and kind.
    static bool isKustomization(const Object& object) {
        if (object.apiVersion.starts_with(kKustomizeGroup)) {
            return object.kind == "Kustomization" || object.kind.empty();
        }
        const std::string name = std::filesystem::path(object.file).filename().string();
        return object.apiVersion.empty() && (object.kind.empty() || object.kind == "Kustomization") &&
               (name == "kustomization.yaml" || name == "kustomization.yml" || name == "Kustomization");
    }

    static std::string folder(const std::string& file) { return std::filesystem::path(file).parent_path().string(); }

    void classify(const Object& object) {
        if (isKustomization(object)) return;  // read for its namespace only
        if (object.kind == "Secret" && object.apiVersion == "v1") {
            // Only the key names: values are never read, let alone copied.
            std::set<std::string>& keys = secretKeys_[{object.namespace_, object.name}];
            for (const char* field : {"data", "stringData"}) {
                const YAML::Node data = child(object.root, field);
                if (data && data.IsMap()) {
                    for (const auto& entry : data) keys.insert(entry.first.Scalar());
                }
            }
            return;
        }
        const bool notification = object.apiVersion.starts_with(kNotificationGroup);
        const bool known = object.kind == "Provider" || object.kind == "Alert" || object.kind == "Receiver";
        if (!notification || !known) {
            ++ignoredKinds_[object.kind.empty() ? "(none)" : object.kind];
            return;
        }
        const std::string version = object.apiVersion.substr(kNotificationGroup.size());
        if (version != "v1" && version != "v1beta1" && version != "v1beta2" && version != "v1beta3") {
            warn(object.label() + ": apiVersion " + object.apiVersion + " is not known; ignored");
            return;
        }
        if (object.name.empty()) {
            warn(object.kind + " without metadata.name in " + object.file + " ignored");
            return;
        }
        if (object.kind == "Provider") {
            providers_[{object.namespace_, object.name}] = &object;
        } else if (object.kind == "Alert") {
            alerts_.push_back(&object);
        } else {
            receivers_.push_back(&object);
        }
    }

    // A name not yet taken among `taken`: the object's, else namespace-name.
    static std::string uniqueName(std::set<std::string>& taken, const std::string& name, const std::string& ns) {
        std::string candidate = name;
        if (taken.contains(candidate)) candidate = ns + "-" + name;
        for (int n = 2; taken.contains(candidate); ++n) candidate = ns + "-" + name + "-" + std::to_string(n);
        taken.insert(candidate);
        return candidate;
    }

    // Where the config reads a Secret key from; listed once in the header.
    std::string secretPath(const std::string& ns, const std::string& secret, const std::string& key) {
        return secretFolderFile(ns, secret, key, "key " + key + " of Secret " + ns + "/" + secret);
    }

    // A file in the folder of a Secret's files, listed once in the header with what to write in it.
    std::string secretFolderFile(const std::string& ns, const std::string& secret, const std::string& name,
                                 const std::string& origin) {
        auto [it, inserted] = secretFolders_.emplace(Key{ns, secret}, secret);
        if (inserted) {
            // Two namespaces may each have a Secret of this name.
            for (const auto& [other, folder] : secretFolders_) {
                if (other != it->first && folder == secret) it->second = ns + "-" + secret;
            }
        }
        std::string path = "./secrets/" + it->second + "/" + name;
        if (std::none_of(secretFiles_.begin(), secretFiles_.end(),
                         [&](const SecretFile& f) { return f.path == path; })) {
            secretFiles_.push_back({path, origin});
        }
        return path;
    }

    // "${ALERTMANAGER_AUTH_ADDRESS}" for a value Flux reads from Secret alertmanager-auth: the
    // variable it names is reported where it is used, not as a Flux substitution.
    std::string environmentPlaceholder(const std::string& secret, std::string_view suffix, std::string& variable) {
        variable.clear();
        for (const char c : secret) {
            variable += (c >= 'a' && c <= 'z')                               ? static_cast<char>(c - 'a' + 'A')
                        : ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) ? c
                                                                             : '_';
        }
        variable += "_" + std::string(suffix);
        generatedVariables_.insert(variable);
        return "${" + variable + "}";
    }

    const std::set<std::string>* visibleSecret(const std::string& ns, const std::string& name) const {
        const auto it = secretKeys_.find({ns, name});
        return it == secretKeys_.end() ? nullptr : &it->second;
    }

    // ---- Providers → targets

    ProviderFate mapProvider(const Key& key) {
        if (const auto it = fates_.find(key); it != fates_.end()) return it->second;
        ProviderFate fate = mapProviderOnce(key);
        fates_[key] = fate;
        return fate;
    }

    ProviderFate mapProviderOnce(const Key& key) {
        const auto found = providers_.find(key);
        if (found == providers_.end()) {
            return {std::nullopt, "Provider " + key.first + "/" + key.second + " is not among the manifests"};
        }
        const Object& provider = *found->second;
        const std::string type = text(provider.spec, "type");
        if (flag(provider.spec, "suspend")) {
            warn(provider.label() + ": suspended (Flux sends nothing to it); not imported");
            return {std::nullopt, "its Provider " + key.second + " is suspended"};
        }
        const bool generic = type == "generic" || type == "generic-hmac";
        if (generic && text(provider.spec, "address").ends_with("/flux/events")) {
            // Imported, it would send every event the relay takes back to the relay.
            warn(provider.label() + ": type " + type +
                 " posting to /flux/events looks like the Provider that forwards Flux's events to fluxrelay: "
                 "keep it, it feeds the flux source; not mapped");
            return {std::nullopt, "its Provider " + key.second + " feeds fluxrelay itself"};
        }
        if (type != "alertmanager" && type != "github" && !generic) {
            warn(provider.label() + ": type " + (type.empty() ? "(none)" : type) +
                 " has no fluxrelay target; not mapped");
            return {std::nullopt, "its Provider " + key.second + " (type " + type + ") is not mapped"};
        }

        TargetOut target{.subject = provider.label(),
                         .name = uniqueName(targetNames_, provider.name, key.first),
                         .type = generic ? "generic" : type};
        target.comments.push_back("from " + provider.label());
        const std::string ns = key.first;
        target.address = text(provider.spec, "address");

        const std::string secret = refName(provider.spec, "secretRef");
        const std::set<std::string>* keys = secret.empty() ? nullptr : visibleSecret(ns, secret);
        if (!secret.empty() && keys == nullptr) {
            warn(target, "Secret " + ns + "/" + secret + " is not among the manifests, so its keys are unknown: " +
                             (type == "github" ? std::string("taken to hold the token; an address, proxy, headers "
                                                             "or GitHub App keys in it are not mapped")
                              : type == "generic-hmac"
                                  ? std::string("taken to hold the HMAC key (token); an address, headers or proxy in "
                                                "it are not mapped")
                              : type == "generic"
                                  ? std::string("an address, headers or proxy in it are not mapped")
                                  : std::string("an address, token, username/password, headers or proxy in it are "
                                                "not mapped; add tokenFile (or username and passwordFile) if it holds "
                                                "credentials")));
        }
        const bool addressInSecret = keys != nullptr && keys->contains("address");
        if (addressInSecret || target.address.empty()) {
            // Flux: the Secret's address wins over spec.address.
            std::string variable;
            target.address = environmentPlaceholder(secret.empty() ? provider.name : secret, "ADDRESS", variable);
            warn(target, std::string(addressInSecret ? "the address comes from" : "no spec.address; it may come from") +
                             " Secret " + ns + "/" + (secret.empty() ? "(none)" : secret) +
                             ": set the environment variable " + variable + " to it");
        }

        if (type == "github") {
            mapGitHubAuth(provider, ns, secret, keys, target);
        } else if (type == "generic-hmac") {
            mapHmacKey(provider, ns, secret, keys, target);
        } else if (keys != nullptr && type == "alertmanager") {
            mapAlertmanagerAuth(provider, ns, secret, *keys, target);
        }
        if (keys != nullptr && keys->contains("headers")) {
            warn(target, "the headers in Secret " + ns + "/" + secret +
                             " are not mapped: add them to the target's headers (values in ${ENV})");
        }
        if (keys != nullptr && keys->contains("proxy") && refName(provider.spec, "proxySecretRef").empty()) {
            std::string variable;
            target.proxy = environmentPlaceholder(secret, "PROXY", variable);
            warn(target, "the proxy comes from Secret " + ns + "/" + secret + ": set the environment variable " +
                             variable +
                             " to it, without credentials (a username and password go in a "
                             "proxyCredentialsFile, as username:password)");
        }
        mapTransport(provider, ns, target);

        if (const std::string account = text(provider.spec, "serviceAccountName"); !account.empty()) {
            warn(target, "spec.serviceAccountName (workload identity) is not mapped");
        }
        targets_.push_back(std::move(target));
        return {targets_.size() - 1, {}};
    }

    void mapGitHubAuth(const Object& provider, const std::string& ns, const std::string& secret,
                       const std::set<std::string>* keys, TargetOut& target) {
        if (secret.empty()) {
            target.tokenFile = secretPath(ns, provider.name + "-token", "token");
            warn(target,
                 "no spec.secretRef, which Flux needs for a github Provider: put a token in " + target.tokenFile);
        } else {
            target.tokenFile = secretPath(ns, secret, "token");
            target.comments.push_back("token: key token of Secret " + ns + "/" + secret + ", as Flux reads it");
            if (keys != nullptr && keys->contains("githubAppID")) {
                warn(target, "Secret " + ns + "/" + secret +
                                 " holds GitHub App credentials: replace tokenFile with app: {appID, "
                                 "installationID, privateKeyFile: " +
                                 secretPath(ns, secret, "githubAppPrivateKey") + "}");
            }
        }
        // Flux's default context is kind/name/<first part of the Provider's UID>, lower-cased.
        const std::string uid = text(provider.metadata, "uid");
        if (!uid.empty()) {
            target.context = "{kind}/{name}/" + uid.substr(0, uid.find('-'));
            target.comments.push_back(
                "context: Flux's for this Provider (from its metadata.uid), so the statuses it "
                "posted keep being updated");
        } else {
            warn(target,
                 "commit statuses get the context \"{kind}/{name}\"; Flux's is kind/name/<first part of the "
                 "Provider's metadata.uid>: set context to \"{kind}/{name}/<that part>\" to keep updating the "
                 "statuses Flux posted");
        }
        if (!text(provider.spec, "commitStatusExpr").empty()) {
            warn(target, "spec.commitStatusExpr (a CEL expression) is not mapped: set context instead");
        }
    }

    // Flux signs with the `token` key of the Secret; without one it sends nothing ("HMAC key is empty").
    void mapHmacKey(const Object& provider, const std::string& ns, const std::string& secret,
                    const std::set<std::string>* keys, TargetOut& target) {
        if (secret.empty()) {
            target.hmacKeyFile = secretPath(ns, provider.name + "-token", "token");
            warn(target,
                 "no spec.secretRef, which Flux needs for a generic-hmac Provider (its token is the HMAC "
                 "key): put a key in " +
                     target.hmacKeyFile);
            return;
        }
        target.hmacKeyFile = secretPath(ns, secret, "token");
        target.comments.push_back("hmacKeyFile: key token of Secret " + ns + "/" + secret +
                                  ", with which Flux signs (X-Signature)");
        if (keys != nullptr && !keys->contains("token")) {
            warn(target, "Secret " + ns + "/" + secret +
                             " has no key token, so Flux sends nothing to this Provider: put a key in " +
                             target.hmacKeyFile);
        }
    }

    void mapAlertmanagerAuth(const Object& provider, const std::string& ns, const std::string& secret,
                             const std::set<std::string>& keys, TargetOut& target) {
        if (keys.contains("token")) {
            target.tokenFile = secretPath(ns, secret, "token");
        } else if (keys.contains("password")) {
            target.passwordFile = secretPath(ns, secret, "password");
            if (keys.contains("username")) {
                std::string variable;
                target.username = environmentPlaceholder(secret, "USERNAME", variable);
                warn(target, "the username comes from Secret " + ns + "/" + secret + ": set the environment variable " +
                                 variable + " to it");
            } else {
                target.username = text(provider.spec, "username");
            }
        }
    }

    void mapTransport(const Object& provider, const std::string& ns, TargetOut& target) {
        if (const std::string proxy = text(provider.spec, "proxy"); !proxy.empty()) target.proxy = proxy;
        if (const std::string proxySecret = refName(provider.spec, "proxySecretRef"); !proxySecret.empty()) {
            mapProxySecret(ns, proxySecret, target);
        }
        if (const std::string timeout = text(provider.spec, "timeout"); !timeout.empty()) {
            if (parseDuration(timeout)) {
                target.timeout = timeout;
            } else {
                warn(target, "spec.timeout " + timeout + " is not a duration fluxrelay reads; default 15s");
            }
        }
        const std::string certSecret = refName(provider.spec, "certSecretRef");
        if (certSecret.empty()) return;
        const std::set<std::string>* keys = visibleSecret(ns, certSecret);
        const auto has = [&](const char* name) { return keys != nullptr && keys->contains(name); };
        if (keys == nullptr || has("ca.crt") || has("caFile")) {
            target.caFile = secretPath(ns, certSecret, has("caFile") && !has("ca.crt") ? "caFile" : "ca.crt");
        }
        if (has("tls.crt") && has("tls.key")) {
            target.certFile = secretPath(ns, certSecret, "tls.crt");
            target.keyFile = secretPath(ns, certSecret, "tls.key");
        } else if (has("certFile") && has("keyFile")) {
            target.certFile = secretPath(ns, certSecret, "certFile");
            target.keyFile = secretPath(ns, certSecret, "keyFile");
        }
        if (keys == nullptr) {
            warn(target, "the certificate Secret " + ns + "/" + certSecret +
                             " is not among the manifests: caFile assumes it holds ca.crt; add certFile "
                             "and keyFile if it holds tls.crt and tls.key");
        }
    }

    // Flux's proxySecretRef: keys address, username and password. The address goes through the
    // environment, the credentials into one file, username:password.
    void mapProxySecret(const std::string& ns, const std::string& secret, TargetOut& target) {
        std::string variable;
        target.proxy = environmentPlaceholder(secret, "ADDRESS", variable);
        warn(target, "the proxy comes from Secret " + ns + "/" + secret + ": set the environment variable " + variable +
                         " to its address");
        const std::set<std::string>* keys = visibleSecret(ns, secret);
        if (keys == nullptr) {
            warn(target, "the proxy Secret " + ns + "/" + secret +
                             " is not among the manifests: if it holds a username and password, add "
                             "proxyCredentialsFile: a file holding them as username:password");
        } else if (keys->contains("username") && keys->contains("password")) {
            target.proxyCredentialsFile = secretFolderFile(
                ns, secret, "proxy-credentials",
                "keys username and password of Secret " + ns + "/" + secret + ", as username:password");
        } else if (keys->contains("username") || keys->contains("password")) {
            warn(target, "Secret " + ns + "/" + secret +
                             " holds a username or a password, not both; proxy credentials not mapped");
        }
    }

    // ---- Alerts → routes

    void mapAlert(const Object& alert) {
        const std::string ns = alert.namespace_;
        RouteOut route{.subject = alert.label(), .name = {}, .source = "flux"};
        route.comments.push_back("from " + alert.label());
        if (flag(alert.spec, "suspend")) {
            warn(alert.label() + ": suspended (Flux sends nothing for it); not imported");
            return;
        }
        const Key providerKey{ns, refName(alert.spec, "providerRef")};
        const ProviderFate fate = mapProvider(providerKey);
        if (!fate.target) {
            warn(alert.label() + ": " + fate.why + "; no route created");
            return;
        }

        route.eventSeverity = text(alert.spec, "eventSeverity");
        if (route.eventSeverity.empty()) route.eventSeverity = "info";  // Flux's default
        if (route.eventSeverity != "info" && route.eventSeverity != "error") {
            warn(route, "eventSeverity " + route.eventSeverity + " is not info or error; taken as info");
            route.eventSeverity = "info";
        }

        const YAML::Node sources = child(alert.spec, "eventSources");
        if (sources && sources.IsSequence()) {
            for (const auto& source : sources) {
                SelectorOut selector{.kind = text(source, "kind"),
                                     .name = text(source, "name"),
                                     .namespace_ = text(source, "namespace")};
                if (selector.kind.empty() || selector.name.empty()) {
                    warn(route, "an eventSources entry without kind or name is ignored (Flux requires both)");
                    continue;
                }
                // Flux: an entry without a namespace means the Alert's own namespace, not any.
                if (selector.namespace_.empty()) selector.namespace_ = ns;
                if (child(source, "matchLabels")) {
                    warn(route, "eventSources " + selector.kind + "/" + selector.name +
                                    ": matchLabels cannot be evaluated by a relay (Flux reads the object's "
                                    "labels from the cluster); the entry takes every " +
                                    selector.kind + " in " + selector.namespace_ + ", more than Flux would");
                }
                route.eventSources.push_back(std::move(selector));
            }
        }
        if (route.eventSources.empty()) {
            // fluxrelay reads an empty list as "every object"; Flux matches nothing.
            warn(alert.label() + ": no usable eventSources, so Flux matches no event; no route created");
            return;
        }

        route.inclusionList = patterns(alert.spec, "inclusionList", route);
        route.exclusionList = patterns(alert.spec, "exclusionList", route);
        route.eventMetadata = stringMap(alert.spec, "eventMetadata");
        route.summary = text(alert.spec, "summary");
        if (!route.summary.empty()) {
            // Flux: spec.summary wins over eventMetadata.summary.
            const auto it = std::find_if(route.eventMetadata.begin(), route.eventMetadata.end(),
                                         [](const auto& entry) { return entry.first == "summary"; });
            if (it != route.eventMetadata.end()) {
                it->second = route.summary;
                route.summary.clear();
            }
        }
        route.fluxDedup = true;
        route.targets.push_back(targets_[*fate.target].name);
        route.name = uniqueName(routeNames_, alert.name, ns);
        routes_.push_back(std::move(route));
    }

    // Flux compiles each pattern at event time and skips (with a warning event) the ones Go's regexp
    // refuses; fluxrelay refuses them at load time, so they are left out here with the same effect.
    std::vector<std::string> patterns(const YAML::Node& spec, std::string_view key, RouteOut& route) {
        std::vector<std::string> out;
        for (std::string& pattern : strings(spec, key)) {
            re2::RE2::Options options;
            options.set_log_errors(false);
            const re2::RE2 regex(pattern, options);
            if (!regex.ok()) {
                warn(route, std::string(key) + " pattern " + yamlScalar(pattern) + " is invalid (" + regex.error() +
                                "); Flux skips it too, so it is left out");
                continue;
            }
            out.push_back(std::move(pattern));
        }
        return out;
    }

    // ---- Receivers → github sources, flux-receiver targets and routes

    void mapReceiver(const Object& receiver) {
        const std::string ns = receiver.namespace_;
        const std::string type = text(receiver.spec, "type");
        if (flag(receiver.spec, "suspend")) {
            warn(receiver.label() + ": suspended (Flux answers its webhook 503); not imported");
            return;
        }
        if (type != "github") {
            warn(receiver.label() + ": type " + (type.empty() ? "(none)" : type) +
                 " is not mapped: fluxrelay's sources take Flux events and GitHub webhooks");
            return;
        }
        const std::string secret = refName(receiver.spec, "secretRef");
        if (secret.empty()) {
            warn(receiver.label() + ": no spec.secretRef (Flux requires one); not imported");
            return;
        }
        const std::string tokenFile = secretPath(ns, secret, "token");
        const std::vector<std::string> events = strings(receiver.spec, "events");

        SourceOut source{.name = {}, .type = "github"};
        source.comments.push_back("from " + receiver.label());
        source.comments.push_back("secretFile: the Receiver's token, with which GitHub signs its deliveries");
        source.name = uniqueName(sourceNames_, "github", ns);
        source.path = source.name == "github" ? "/github/webhook" : "/github/webhook/" + receiver.name;
        source.secretFile = tokenFile;
        source.events = events;
        if (std::find(events.begin(), events.end(), "ping") != events.end() || events.empty()) {
            source.comments.push_back(
                "a ping is answered here (pong) and not forwarded; Flux's Receiver reconciles "
                "on one too");
        }

        TargetOut target{
            .subject = receiver.label(), .name = uniqueName(targetNames_, receiver.name, ns), .type = "flux-receiver"};
        target.comments.push_back("from " + receiver.label());
        target.comments.push_back(
            "notification-controller's webhook-receiver Service in a default Flux install; "
            "the request path is derived from the token, as Flux derives the Receiver's");
        target.comments.push_back(
            "the Receiver still checks the signature, events, resourceFilter and reconciles "
            "its resources:");
        const YAML::Node resources = child(receiver.spec, "resources");
        if (resources && resources.IsSequence()) {
            for (const auto& resource : resources) {
                const std::string resourceNs = text(resource, "namespace").empty() ? ns : text(resource, "namespace");
                target.comments.push_back("  " + text(resource, "kind") + " " + resourceNs + "/" +
                                          text(resource, "name"));
            }
        }
        target.comments.push_back(
            "(a kubernetes target listing these resources could request the reconciliations "
            "itself, without the Receiver)");
        target.address = std::string(kReceiverAddress);
        target.receiverName = receiver.name;
        target.receiverNamespace = ns;
        target.tokenFile = tokenFile;

        RouteOut route{
            .subject = receiver.label(), .name = uniqueName(routeNames_, receiver.name, ns), .source = source.name};
        route.comments.push_back("from " + receiver.label());
        route.comments.push_back(
            "branch pushes only: Flux's Receiver also reconciles on tag pushes and branch "
            "deletions; list \"refs/tags/*\" in branches to forward tag pushes too");
        route.events = events;
        route.targets.push_back(target.name);

        sources_.push_back(std::move(source));
        targets_.push_back(std::move(target));
        routes_.push_back(std::move(route));
    }

    // ---- output

    std::string render() {
        // The header warns about the ${VAR}s the body uses, known once the body is written.
        {
            YAML::Emitter scratch;
            renderBody(scratch);
        }
        // Flux substitutes ${VAR} from a Kustomization's postBuild; fluxrelay reads the environment.
        for (const auto& variable : placeholders_) {
            if (!generatedVariables_.contains(variable)) {
                warn("${" + variable + "} (a Flux postBuild substitution) is read from the environment variable " +
                     variable + " by fluxrelay: set it");
            }
        }
        YAML::Emitter out;
        renderHeader(out);
        renderBody(out);
        return std::string(out.c_str()) + "\n";
    }

    // Blocks of comment with a blank line between them and after the last.
    void renderHeader(YAML::Emitter& out) {
        out << comment({"fluxrelay configuration imported from Flux notification objects (fluxrelay import-flux).",
                        "Routes as Flux's Alerts and Receivers route; dedup as Flux's rate limiter (5m)."});
        std::vector<std::string> secrets{
            "Secrets are never copied: write each file below from the Secret key it names."};
        if (hasFluxSource()) {
            secrets.push_back(
                "  ./secrets/flux-hmac: a new random key, also the token of the Secret of Flux's generic-hmac "
                "Provider that sends events here");
        }
        for (const SecretFile& file : secretFiles_) secrets.push_back("  " + file.path + ": " + file.origin);
        out << YAML::Newline << YAML::Newline << comment(secrets);
        if (!result_.warnings.empty()) {
            std::vector<std::string> warnings{"Not mapped, or mapped with a difference:"};
            for (const auto& warning : result_.warnings) warnings.push_back("  - " + warning);
            out << YAML::Newline << YAML::Newline << comment(warnings);
        }
        out << YAML::Newline;
    }

    void renderBody(YAML::Emitter& out) {
        out << YAML::BeginMap;
        out << YAML::Key << "server" << YAML::Value << YAML::BeginMap;
        out << YAML::Key << "listen" << YAML::Value << "0.0.0.0:8080";
        out << YAML::Key << "maxBodyBytes" << YAML::Value << 3145728 << YAML::EndMap;
        out << YAML::Key << "admin" << YAML::Value << YAML::BeginMap;
        out << YAML::Key << "listen" << YAML::Value << "127.0.0.1:9090" << YAML::EndMap;
        out << YAML::Key << "storage" << YAML::Value << YAML::BeginMap;
        out << YAML::Key << "path" << YAML::Value << "./fluxrelay-data" << YAML::EndMap;
        renderSources(out);
        renderTargets(out);
        renderRoutes(out);
        out << YAML::EndMap;
    }

    bool hasFluxSource() const {
        return std::any_of(routes_.begin(), routes_.end(), [](const RouteOut& r) { return r.source == "flux"; });
    }

    // The ${VAR}s in it are noted for the header.
    void writeScalar(YAML::Emitter& out, const std::string& value) {
        for (std::size_t at = value.find("${"); at != std::string::npos; at = value.find("${", at + 2)) {
            const std::size_t end = value.find('}', at);
            if (end != std::string::npos) placeholders_.insert(value.substr(at + 2, end - at - 2));
        }
        emitScalar(out, value);
    }

    void writeField(YAML::Emitter& out, std::string_view key, const std::string& value) {
        if (value.empty()) return;
        out << YAML::Key << std::string(key) << YAML::Value;
        writeScalar(out, value);
    }

    void writeList(YAML::Emitter& out, std::string_view key, const std::vector<std::string>& items,
                   YAML::EMITTER_MANIP style) {
        if (items.empty()) return;
        out << YAML::Key << std::string(key) << YAML::Value << style << YAML::BeginSeq;
        for (const std::string& item : items) writeScalar(out, item);
        out << YAML::EndSeq;
    }

    // A section's key, after a blank line; its items each follow their comments.
    static void beginSection(YAML::Emitter& out, std::string_view key) {
        out << YAML::Newline << YAML::Newline << YAML::Key << std::string(key) << YAML::Value << YAML::BeginSeq;
    }

    // An item of a section's list, after its comments.
    static void beginItem(YAML::Emitter& out, const std::vector<std::string>& comments, bool& first) {
        if (!comments.empty()) {
            // Else yaml-cpp writes the comment at the end of the previous item's last line.
            if (!first) out << YAML::Newline;
            out << comment(comments);
        }
        first = false;
        out << YAML::BeginMap;
    }

    void renderSources(YAML::Emitter& out) {
        beginSection(out, "sources");
        bool first = true;
        if (hasFluxSource()) {
            beginItem(out,
                      {"Flux sends its events here through a generic-hmac Provider and a catch-all Alert",
                       "(deploy/kubernetes/flux); the Provider's Secret token is the key in ./secrets/flux-hmac."},
                      first);
            writeField(out, "name", "flux");
            writeField(out, "type", "flux");
            writeField(out, "path", "/flux/events");
            writeField(out, "hmacKeyFile", "./secrets/flux-hmac");
            out << YAML::EndMap;
        }
        for (const SourceOut& source : sources_) {
            beginItem(out, source.comments, first);
            writeField(out, "name", source.name);
            writeField(out, "type", source.type);
            writeField(out, "path", source.path);
            writeField(out, "secretFile", source.secretFile);
            writeList(out, "events", source.events, YAML::Flow);
            out << YAML::EndMap;
        }
        out << YAML::EndSeq;
    }

    void renderTargets(YAML::Emitter& out) {
        beginSection(out, "targets");
        bool first = true;
        for (const TargetOut& target : targets_) {
            beginItem(out, target.comments, first);
            writeField(out, "name", target.name);
            writeField(out, "type", target.type);
            writeField(out, "address", target.address);
            if (!target.receiverName.empty()) {
                out << YAML::Key << "receiver" << YAML::Value << YAML::Flow << YAML::BeginMap;
                writeField(out, "name", target.receiverName);
                writeField(out, "namespace", target.receiverNamespace);
                out << YAML::EndMap;
            }
            writeField(out, "tokenFile", target.tokenFile);
            writeField(out, "hmacKeyFile", target.hmacKeyFile);
            writeField(out, "username", target.username);
            writeField(out, "passwordFile", target.passwordFile);
            writeField(out, "context", target.context);
            writeField(out, "caFile", target.caFile);
            writeField(out, "certFile", target.certFile);
            writeField(out, "keyFile", target.keyFile);
            writeField(out, "proxy", target.proxy);
            writeField(out, "proxyCredentialsFile", target.proxyCredentialsFile);
            writeField(out, "timeout", target.timeout);
            out << YAML::EndMap;
        }
        out << YAML::EndSeq;
    }

    void renderRoutes(YAML::Emitter& out) {
        beginSection(out, "routes");
        bool first = true;
        for (const RouteOut& route : routes_) {
            beginItem(out, route.comments, first);
            writeField(out, "name", route.name);
            writeField(out, "source", route.source);
            writeField(out, "eventSeverity", route.eventSeverity);
            if (!route.eventSources.empty()) {
                out << YAML::Key << "eventSources" << YAML::Value << YAML::BeginSeq;
                for (const SelectorOut& selector : route.eventSources) {
                    out << YAML::Flow << YAML::BeginMap;
                    writeField(out, "kind", selector.kind);
                    writeField(out, "name", selector.name);
                    writeField(out, "namespace", selector.namespace_);
                    out << YAML::EndMap;
                }
                out << YAML::EndSeq;
            }
            writeList(out, "inclusionList", route.inclusionList, YAML::Block);
            writeList(out, "exclusionList", route.exclusionList, YAML::Block);
            if (!route.eventMetadata.empty()) {
                out << YAML::Key << "eventMetadata" << YAML::Value << YAML::BeginMap;
                for (const auto& [key, value] : route.eventMetadata) {
                    out << YAML::Key;
                    writeScalar(out, key);
                    out << YAML::Value;
                    writeScalar(out, value);
                }
                out << YAML::EndMap;
            }
            writeField(out, "summary", route.summary);
            if (route.fluxDedup) {
                out << YAML::Key << "dedup" << YAML::Value << YAML::Flow << YAML::BeginMap;
                writeField(out, "mode", "flux");
                writeField(out, "window", std::string(kFluxDedupWindow));
                out << YAML::EndMap;
            }
            writeList(out, "events", route.events, YAML::Flow);
            writeList(out, "targets", route.targets, YAML::Flow);
            out << YAML::EndMap;
        }
        out << YAML::EndSeq;
    }

    ImportResult result_;
    std::vector<Object> objects_;
    std::map<std::string, std::size_t> ignoredKinds_;
    std::map<Key, std::set<std::string>> secretKeys_;
    std::map<Key, const Object*> providers_;
    std::vector<const Object*> alerts_;
    std::vector<const Object*> receivers_;
    std::map<Key, ProviderFate> fates_;
    std::map<Key, std::string> secretFolders_;
    std::vector<SecretFile> secretFiles_;
    std::set<std::string> sourceNames_{"flux"};
    std::set<std::string> targetNames_;
    std::set<std::string> routeNames_;
    std::vector<SourceOut> sources_;
    std::vector<TargetOut> targets_;
    std::vector<RouteOut> routes_;
    std::set<std::string> generatedVariables_;
    std::set<std::string> placeholders_;  // the ${VAR}s the config uses
};

}  // namespace

ImportResult importFlux(const std::vector<Manifest>& manifests) { return Importer().run(manifests); }

int runImportFlux(const std::vector<std::string>& files) {
    if (files.empty()) {
        std::fputs("import-flux: at least one MANIFEST.yaml is required\n", stderr);
        return 2;
    }
    std::vector<Manifest> manifests;
    bool unreadable = false;
    for (const auto& file : files) {
        FileContent content = readWholeFile(file);
        if (!content.ok()) {
            std::fprintf(stderr, "import-flux: cannot read %s: %s\n", file.c_str(), content.error.c_str());
            unreadable = true;
            continue;
        }
        manifests.push_back({file, std::move(content.bytes)});
    }
    if (unreadable) return 1;
    const ImportResult result = importFlux(manifests);
    for (const auto& error : result.errors) std::fprintf(stderr, "%s\n", error.c_str());
    for (const auto& warning : result.warnings) std::fprintf(stderr, "warning: %s\n", warning.c_str());
    if (!result.errors.empty()) return 1;
    if (!result.mapped) {
        std::fputs("import-flux: nothing could be mapped to a fluxrelay route\n", stderr);
        return 1;
    }
    std::fwrite(result.yaml.data(), 1, result.yaml.size(), stdout);
    return 0;
}

}  // namespace fluxrelay
