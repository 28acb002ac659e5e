// GitHub commit status target: the statuses Flux's github notifier posts, minus its list
// call, with rate limits pausing the target and GitHub App installation tokens cached.
#include "providers/github.hpp"

#include <algorithm>
#include <cassert>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <variant>

#include "core/template.hpp"
#include "core/text.hpp"

namespace fluxrelay {

namespace {

bool isHex(std::string_view text) {
    return std::all_of(text.begin(), text.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    });
}

std::string inQuotes(std::string_view text) { return "'" + std::string(text) + "'"; }

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

class GitHubProvider final : public GitHubTarget {
public:
    explicit GitHubProvider(const TargetConfig& target) : GitHubTarget(target) {}

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
        if (auto why = unauthenticated()) return AttemptPlan::decide(std::move(*why));
        // Flux sends no target_url either: there is no page to link to.
        const nlohmann::json body = {
            {"state", status.state}, {"context", status.context}, {"description", status.description}};
        return {
            .requests = {apiRequest("/repos/" + repository_.owner + "/" + repository_.name + "/statuses/" + status.sha,
                                    body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))},
            .decided = {},
            .writes = {{key, value}},
            .then = {}};
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
    return gitHubDescription(asciiLowered(joined));
}

std::string statusContext(std::string_view contextTemplate, const ObjectRef& object) {
    FluxEvent event;
    event.involvedObject = object;
    // GitHub compares contexts case-insensitively; Flux writes them lower-case.
    return asciiLowered(EventTemplate::parseObjectTemplate(contextTemplate).render(event));
}

}  // namespace fluxrelay
