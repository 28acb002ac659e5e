// GitHub Deployment target: the first event of a revision in an environment creates its
// Deployment, every event posts a status to it. The Deployment's id is remembered in the spool,
// so a retry, a restart or another replica posts to the same one.
#include "providers/github_deployment.hpp"

#include <cassert>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <utility>
#include <variant>

#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include "providers/github.hpp"
#include "providers/github_api.hpp"

namespace fluxrelay {

namespace {

// The in-attempt keys under which a step's response reaches the next step; never stored.
constexpr std::string_view kListedKey = "github-deployment:response:listed";
constexpr std::string_view kCreatedKey = "github-deployment:response:created";

std::string dumped(const nlohmann::json& json) {
    return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

class GitHubDeploymentProvider final : public GitHubTarget {
public:
    explicit GitHubDeploymentProvider(const TargetConfig& target) : GitHubTarget(target) {}

    // One key per environment and commit holds the Deployment's id and its last status: each step
    // of an attempt writes only it, under the lease the dispatcher holds on it.
    std::vector<std::string> stateKeys(std::span<const Delivery> batch) const override {
        auto rollout = rolloutOf(batch);
        if (const Rollout* known = std::get_if<Rollout>(&rollout)) return {knownKey(*known)};
        return {};
    }

    // Up to four steps: list the commit's Deployments in the environment (none remembered yet),
    // create one when none of them is this relay's, remember its id, post the status. The id is
    // stored before the status is posted, so a failed status post is retried on the same
    // Deployment; the list closes the window between GitHub's 201 and that write (a lost response,
    // a crash), at the price of one call per new revision.
    AttemptPlan plan(std::span<const Delivery> batch, const ProviderState& state, TimePoint /*now*/) const override {
        auto planned = rolloutOf(batch);
        if (auto* outcome = std::get_if<Outcome>(&planned)) return AttemptPlan::decide(std::move(*outcome));
        const Rollout& rollout = std::get<Rollout>(planned);
        const std::string key = knownKey(rollout);
        const std::uint64_t id = batch.front().id;
        const auto it = state.find(key);
        const Known known = it == state.end() ? Known{} : recall(it->second);
        if (known.applied >= id) {
            // A retried or late status must not overwrite a newer one of the Deployment.
            return AttemptPlan::decide(
                Outcome::delivered("superseded: a later status of this revision and environment was delivered first"));
        }
        if (known.deployment != 0 && known.state == rollout.state && known.description == rollout.description) {
            AttemptPlan plan =
                AttemptPlan::decide(Outcome::delivered("unchanged since the last delivery; not sent again"));
            plan.writes = {{key, remember({.deployment = known.deployment,
                                           .state = known.state,
                                           .description = known.description,
                                           .applied = id})}};
            return plan;
        }
        if (auto why = unauthenticated()) return AttemptPlan::decide(std::move(*why));
        if (known.deployment == 0) return findOrCreate(rollout, key, state);
        nlohmann::json body = {{"state", rollout.state},
                               {"description", rollout.description},
                               // Earlier Deployments of the environment go inactive.
                               {"auto_inactive", true}};
        if (!rollout.environmentUrl.empty()) body["environment_url"] = rollout.environmentUrl;
        if (!rollout.logUrl.empty()) body["log_url"] = rollout.logUrl;
        return {.requests = {apiRequest(deploymentsPath() + "/" + std::to_string(known.deployment) + "/statuses",
                                        dumped(body))},
                .decided = {},
                .writes = {{key, remember({.deployment = known.deployment,
                                           .state = rollout.state,
                                           .description = rollout.description,
                                           .applied = id})}},
                .then = {}};
    }

    Outcome classify(const HttpResponse& response) override {
        Outcome outcome = GitHubTarget::classify(response);
        if ((response.status == 403 || response.status == 404) && outcome.kind == OutcomeKind::permanent) {
            outcome.detail = classifyHttpStatus(response).detail +
                             "; check the address, and that the token may write deployments (classic: "
                             "repo_deployment or repo; fine-grained: Deployments: write) or the App is installed on "
                             "the repository with that permission";
        }
        return outcome;
    }

private:
    // What one event says about the rollout of its revision in its environment.
    struct Rollout {
        std::string sha;
        std::string environment;
        std::string state;
        std::string description;
        std::string environmentUrl;
        std::string logUrl;
        ObjectRef object;
    };

    std::variant<Rollout, Outcome> rolloutOf(std::span<const Delivery> batch) const {
        assert(batch.size() == 1);
        if (batch.empty()) return Outcome::permanent("empty batch");
        if (!repository_.ok()) return Outcome::permanent(repository_.error);
        const FluxEvent* flux = batch.front().event ? batch.front().event->flux() : nullptr;
        if (flux == nullptr) return Outcome::permanent("github-deployment targets take only Flux events");
        CommitRef commit = commitOf(*flux);
        if (!commit.ok()) return Outcome::permanent(std::move(commit.error));
        std::optional<std::string> state = deploymentState(flux->severity, flux->reason);
        if (!state) {
            return Outcome::permanent("severity '" + flux->severity +
                                      "' has no deployment state (info → success or in_progress, error → failure)");
        }
        return Rollout{.sha = std::move(commit.sha),
                       .environment = target_.environment.render(*flux),
                       .state = std::move(*state),
                       .description = deploymentDescription(*flux),
                       .environmentUrl = target_.environmentUrl.render(*flux),
                       .logUrl = target_.logUrl.render(*flux),
                       .object = flux->involvedObject};
    }

    // The steps before a status can be posted, each planned on what the one before answered.
    AttemptPlan findOrCreate(const Rollout& rollout, const std::string& key, const ProviderState& state) const {
        if (const auto created = state.find(std::string(kCreatedKey)); created != state.end() && created->second) {
            const std::uint64_t deployment = createdId(*created->second);
            if (deployment == 0) {
                // A 202 "Auto-merged ..." (auto_merge is off, so GitHub should not) or a body
                // without an id: nothing was created, and asking again is what GitHub advises.
                return AttemptPlan::decide(
                    Outcome::retry("GitHub created no Deployment: " + gitHubDescription(*created->second)));
            }
            return rememberDeployment(key, deployment);
        }
        if (const auto listed = state.find(std::string(kListedKey)); listed != state.end() && listed->second) {
            if (const std::uint64_t deployment = foundId(*listed->second, rollout)) {
                return rememberDeployment(key, deployment);
            }
            nlohmann::json payload = {
                {"kind", rollout.object.kind}, {"namespace", rollout.object.namespace_}, {"name", rollout.object.name}};
            // Not transient: a Flux environment outlives its revisions; inactive Deployments of a
            // transient one would show as destroyed.
            nlohmann::json body = {{"ref", rollout.sha},
                                   {"environment", rollout.environment},
                                   {"auto_merge", false},
                                   {"required_contexts", nlohmann::json::array()},
                                   {"description", rollout.description},
                                   {"payload", std::move(payload)}};
            if (target_.productionEnvironment) body["production_environment"] = *target_.productionEnvironment;
            return {.requests = {apiRequest(deploymentsPath(), dumped(body))},
                    .decided = {},
                    .writes = {},
                    .then = NextStep{.responseAs = std::string(kCreatedKey), .example = R"({"id":1})"}};
        }
        HttpRequest list = apiRequest(deploymentsPath() + "?sha=" + rollout.sha + "&environment=" +
                                          boost::urls::encode(rollout.environment, boost::urls::unreserved_chars),
                                      {});
        list.method = "GET";
        return {.requests = {std::move(list)},
                .decided = {},
                .writes = {},
                .then = NextStep{.responseAs = std::string(kListedKey), .example = "[]"}};
    }

    static AttemptPlan rememberDeployment(const std::string& key, std::uint64_t deployment) {
        return {.requests = {},
                .decided = {},
                .writes = {{key, remember({.deployment = deployment, .state = {}, .description = {}, .applied = 0})}},
                .then = NextStep{}};
    }

    static std::uint64_t idOf(const nlohmann::json& deployment) {
        if (!deployment.is_object() || !deployment.contains("id") || !deployment["id"].is_number_unsigned()) return 0;
        return deployment["id"].get<std::uint64_t>();
    }

    static std::uint64_t createdId(const std::string& body) {
        return idOf(nlohmann::json::parse(body, nullptr, false));
    }

    // A Deployment of the commit in the environment that this relay created: its payload names a
    // Kustomization, as the payloads this target writes do.
    static std::uint64_t foundId(const std::string& body, const Rollout& rollout) {
        const nlohmann::json list = nlohmann::json::parse(body, nullptr, false);
        if (!list.is_array()) return 0;
        for (const nlohmann::json& deployment : list) {
            if (!deployment.is_object() || deployment.value("sha", "") != rollout.sha ||
                deployment.value("environment", "") != rollout.environment) {
                continue;
            }
            nlohmann::json payload = deployment.contains("payload") ? deployment["payload"] : nlohmann::json();
            if (payload.is_string()) payload = nlohmann::json::parse(payload.get<std::string>(), nullptr, false);
            if (payload.is_object() && payload.value("kind", "") == "Kustomization" && payload.contains("name") &&
                payload.contains("namespace")) {
                if (const std::uint64_t id = idOf(deployment)) return id;
            }
        }
        return 0;
    }

    // What the target remembers per environment and commit: the Deployment, the last status
    // delivered to it, and the delivery id of the event it came from (ids follow acceptance).
    struct Known {
        std::uint64_t deployment = 0;  // 0: none created yet
        std::string state;
        std::string description;
        std::uint64_t applied = 0;
    };

    static std::string remember(const Known& known) {
        return dumped({{"deployment", known.deployment},
                       {"state", known.state},
                       {"description", known.description},
                       {"applied", known.applied}});
    }

    static Known recall(const std::optional<std::string>& value) {
        if (!value) return {};
        const nlohmann::json json = nlohmann::json::parse(*value, nullptr, false);
        if (!json.is_object() || !json["deployment"].is_number_unsigned() || !json["state"].is_string() ||
            !json["description"].is_string() || !json["applied"].is_number_unsigned()) {
            return {};
        }
        return {.deployment = json["deployment"].get<std::uint64_t>(),
                .state = json["state"].get<std::string>(),
                .description = json["description"].get<std::string>(),
                .applied = json["applied"].get<std::uint64_t>()};
    }

    std::string knownKey(const Rollout& rollout) const {
        return "github-deployment:" + target_.name + ":" + repository_.owner + "/" + repository_.name + ":" +
               rollout.environment + ":" + rollout.sha;
    }

    std::string deploymentsPath() const {
        return "/repos/" + repository_.owner + "/" + repository_.name + "/deployments";
    }
};

}  // namespace

std::unique_ptr<Provider> makeGitHubDeploymentProvider(const TargetConfig& target) {
    return std::make_unique<GitHubDeploymentProvider>(target);
}

std::optional<std::string> deploymentState(std::string_view severity, std::string_view reason) {
    if (severity == "error") return "failure";
    if (severity != "info") return std::nullopt;
    return reason == "Progressing" ? "in_progress" : "success";
}

std::string deploymentDescription(const FluxEvent& event) {
    return gitHubDescription(event.reason + ": " + event.message);
}

}  // namespace fluxrelay
