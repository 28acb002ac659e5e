// Route matching and per-target rules, with Flux's semantics and reasons a user can act on.
#include "filters/route.hpp"

#include <cassert>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <re2/re2.h>

#include "core/text.hpp"
#include "filters/glob.hpp"

namespace fluxrelay {

namespace {

constexpr std::string_view kHeadsPrefix = "refs/heads/";
constexpr std::string_view kTagsPrefix = "refs/tags/";

Decision drop(Verdict verdict, std::string reason) { return {verdict, std::move(reason)}; }

std::string quoted(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 2);
    out += '"';
    out += text;
    out += '"';
    return out;
}

// `"a", "b"` for reasons that list what the route would have accepted.
template <typename Range, typename Text>
std::string quotedList(const Range& items, Text text) {
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) out += ", ";
        out += quoted(text(item));
    }
    return out;
}

std::string_view identity(const std::string& s) { return s; }

// A branches entry written as a full ref ("refs/heads/release-*", "refs/tags/v*") globs the
// whole ref; a bare entry ("main", "release-*") globs the branch name.
bool branchEntryMatches(std::string_view entry, std::string_view ref) {
    if (entry.starts_with("refs/")) return globMatch(entry, ref);
    return ref.starts_with(kHeadsPrefix) && globMatch(entry, ref.substr(kHeadsPrefix.size()));
}

Decision matchPushRef(const RouteConfig& route, const GitHubEvent& push) {
    if (push.deleted) {
        return drop(Verdict::branch, "push deletes " + push.ref + " (branch deletion): nothing to reconcile");
    }
    const std::string_view ref = push.ref;
    if (ref.starts_with(kHeadsPrefix) && route.branches.empty()) return Decision::ok();
    for (const auto& entry : route.branches) {
        if (branchEntryMatches(entry, ref)) return Decision::ok();
    }
    if (ref.starts_with(kTagsPrefix)) {
        return drop(Verdict::branch,
                    "tag push " + push.ref + " is ignored unless a branches entry \"refs/tags/...\" matches it");
    }
    if (!ref.starts_with(kHeadsPrefix)) {
        return drop(Verdict::branch, "push ref " + quoted(ref) + " is neither a branch nor a listed ref");
    }
    return drop(Verdict::branch, "branch " + quoted(ref.substr(kHeadsPrefix.size())) + " matches no branches entry (" +
                                     quotedList(route.branches, identity) + ")");
}

Decision matchGitHub(const RouteConfig& route, const GitHubEvent& github) {
    if (!route.events.empty()) {
        bool listed = false;
        for (const auto& name : route.events) {
            // As Flux's Receiver (strings.EqualFold); ASCII folding suffices for event names.
            if (equalsIgnoreCase(name, github.event)) listed = true;
        }
        if (!listed) {
            return drop(Verdict::eventType, "GitHub event " + quoted(github.event) + " is not in events (" +
                                                quotedList(route.events, identity) + ")");
        }
    }
    // branches only say something about pushes; other events carry no ref to filter on.
    if (github.event == "push") return matchPushRef(route, github);
    return Decision::ok();
}

bool selectorMatches(const EventSourceSelector& selector, const ObjectRef& object) {
    // An empty namespace means "any", as the default of "*" does.
    const std::string_view ns = selector.namespace_.empty() ? std::string_view("*") : selector.namespace_;
    return selector.kind == object.kind && globMatch(selector.name, object.name) && globMatch(ns, object.namespace_);
}

bool searches(const std::shared_ptr<const re2::RE2>& regex, std::string_view text) {
    assert(regex && regex->ok());  // the loader compiles and validates every pattern
    return re2::RE2::PartialMatch(text, *regex);
}

// "reason", "metadata.cluster": the name of the field as the config writes it.
std::string fieldName(const FieldMatcher& matcher) {
    if (matcher.field == MatchField::metadata) return "metadata." + matcher.metadataKey;
    return std::string(toString(matcher.field));
}

// The field's value, or nullptr when the event does not have it (a missing metadata key).
const std::string* fieldValue(const FieldMatcher& matcher, const FluxEvent& flux) {
    switch (matcher.field) {
        case MatchField::reason:
            return &flux.reason;
        case MatchField::kind:
            return &flux.involvedObject.kind;
        case MatchField::name:
            return &flux.involvedObject.name;
        case MatchField::namespace_:
            return &flux.involvedObject.namespace_;
        case MatchField::reportingController:
            return &flux.reportingController;
        case MatchField::metadata: {
            const auto it = flux.metadata.find(matcher.metadataKey);
            return it == flux.metadata.end() ? nullptr : &it->second;
        }
    }
    return nullptr;
}

Decision matchFlux(const RouteConfig& route, const FluxEvent& flux, bool ignoreSeverity) {
    // Step 2. Flux tests kind, severity and name inside one loop over eventSources; checking the
    // object first and the severity after accepts exactly the same events and names the cause.
    if (!route.eventSources.empty()) {
        bool selected = false;
        for (const auto& selector : route.eventSources) {
            if (selectorMatches(selector, flux.involvedObject)) selected = true;
        }
        if (!selected) {
            return drop(Verdict::eventSource, "no eventSources entry matches " + flux.involvedObject.path());
        }
    }

    // Step 3. Flux: an info alert takes every severity (trace too); any other takes only its own.
    if (route.eventSeverity == Severity::error && flux.severity != "error" && !ignoreSeverity) {
        return drop(Verdict::severity, "route takes error events only; event severity is " + flux.severity);
    }

    // Step 4: inclusion before exclusion, unanchored search on the message, as Flux.
    if (!route.inclusionList.empty()) {
        bool included = false;
        for (const auto& pattern : route.inclusionList) {
            if (searches(pattern.regex, flux.message)) included = true;
        }
        if (!included) {
            return drop(
                Verdict::inclusion,
                "no inclusionList pattern matched the message (" +
                    quotedList(route.inclusionList, [](const Pattern& p) -> std::string_view { return p.text; }) + ")");
        }
    }
    for (const auto& pattern : route.exclusionList) {
        if (searches(pattern.regex, flux.message)) {
            return drop(Verdict::exclusion, "exclusionList pattern " + quoted(pattern.text) + " matched the message");
        }
    }

    // Step 5.
    for (const auto& matcher : route.match) {
        const std::string* value = fieldValue(matcher, flux);
        if (value == nullptr) {
            return drop(Verdict::match,
                        "match " + fieldName(matcher) + ": event has no metadata key " + quoted(matcher.metadataKey));
        }
        if (!searches(matcher.regex, *value)) {
            return drop(Verdict::match, "match " + fieldName(matcher) + ": " + quoted(*value) + " does not match " +
                                            quoted(matcher.pattern));
        }
    }
    return Decision::ok();
}

std::string_view metadataValue(const FluxEvent& flux, const std::string& key) {
    const auto it = flux.metadata.find(key);
    return it == flux.metadata.end() ? std::string_view() : std::string_view(it->second);
}

bool isCommitStatusUpdate(const FluxEvent& flux) { return metadataValue(flux, "commit_status") == "update"; }

// Flux tests the value, not the key's presence: an empty commit is no commit.
bool hasCommit(const FluxEvent& flux) { return !metadataValue(flux, "commit").empty(); }

Decision githubOnly(std::string_view type) {
    return drop(Verdict::targetRule, std::string(type) + " targets take GitHub events only; this is a Flux event");
}

Decision fluxOnly(std::string_view type, const GitHubEvent& github) {
    return drop(Verdict::targetRule,
                std::string(type) + " targets take Flux events only; this is a GitHub " + github.event + " event");
}

}  // namespace

Decision matchRoute(const RouteConfig& route, const Event& event, bool ignoreSeverity) {
    if (event.source != route.source) {
        return drop(Verdict::sourceMismatch,
                    "event came in on source " + quoted(event.source) + ", route reads " + quoted(route.source));
    }
    if (const GitHubEvent* github = event.github()) return matchGitHub(route, *github);
    const FluxEvent* flux = event.flux();
    assert(flux != nullptr);
    return matchFlux(route, *flux, ignoreSeverity);
}

Decision targetAccepts(TargetType type, const Event& event) {
    const FluxEvent* flux = event.flux();
    const GitHubEvent* github = event.github();
    if (!takesEventsOf(type, github ? SourceType::github : SourceType::flux)) {
        return github ? fluxOnly(toString(type), *github) : githubOnly(toString(type));
    }
    // Only the targets of Flux events have rules of their own.
    if (flux == nullptr) return Decision::ok();
    switch (type) {
        case TargetType::alertmanager:
            // Flux sends commit status updates only to git providers and generic webhooks: as
            // alerts they would fire on every successful reconciliation.
            if (isCommitStatusUpdate(*flux)) {
                return drop(Verdict::targetRule,
                            "commit status updates (metadata commit_status=update) never go to alertmanager targets");
            }
            return Decision::ok();
        case TargetType::github:
            // Controllers do not mark failures as commit status updates, so Flux lets errors
            // through to report them on the commit.
            if (!isCommitStatusUpdate(*flux) && !hasCommit(*flux) && flux->severity != "error") {
                return drop(Verdict::targetRule,
                            "github targets take only commit status updates, events with commit "
                            "metadata, or errors; this " +
                                flux->severity + " event is none of them");
            }
            // Flux's GitHub notifier skips Progressing: a pending status would overwrite the
            // previous result while nothing is decided yet.
            if (flux->reason == "Progressing") {
                return drop(Verdict::targetRule, "github targets skip reason Progressing");
            }
            return Decision::ok();
        case TargetType::githubDeployment:
            // A Deployment is a rollout of a revision: only a Kustomization applies one.
            if (flux->involvedObject.kind != "Kustomization") {
                return drop(Verdict::targetRule,
                            "github-deployment targets take Kustomization events only; this is a " +
                                flux->involvedObject.kind + " event: nothing to deploy");
            }
            // Before a source artifact is fetched there is no revision yet: nothing was rolled out.
            if (metadataValue(*flux, "commit").empty() && metadataValue(*flux, "originRevision").empty() &&
                metadataValue(*flux, "revision").empty()) {
                return drop(Verdict::targetRule,
                            "github-deployment targets take events with a revision; this one has none: nothing to "
                            "deploy");
            }
            return Decision::ok();
        case TargetType::generic:
            // Flux's generic providers take every event, commit status updates included.
        case TargetType::fluxReceiver:
        case TargetType::kubernetes:
            break;
    }
    return Decision::ok();
}

Event withRouteMetadata(const RouteConfig& route, const Event& event) {
    Event out = event;
    if (auto* flux = std::get_if<FluxEvent>(&out.payload)) {
        // emplace keeps an existing key: the event's own metadata wins over the Alert's, as
        // notification-controller ranks the object-group keys highest.
        for (const auto& [key, value] : route.eventMetadata) {
            flux->metadata.emplace(key, value);
        }
    }
    return out;
}

}  // namespace fluxrelay
