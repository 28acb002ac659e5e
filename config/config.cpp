// Config's look-ups, the names of its enums as the config file writes them, and which sources'
// events each target type takes.
#include "config/config.hpp"

#include <algorithm>

namespace fluxrelay {

const SourceConfig* Config::sourceByPath(std::string_view path) const {
    for (const SourceConfig& source : sources) {
        if (source.path == path) return &source;
    }
    return nullptr;
}

const SourceConfig* Config::sourceByName(std::string_view name) const {
    for (const SourceConfig& source : sources) {
        if (source.name == name) return &source;
    }
    return nullptr;
}

const TargetConfig* Config::targetByName(std::string_view name) const {
    for (const TargetConfig& target : targets) {
        if (target.name == name) return &target;
    }
    return nullptr;
}

bool isLabelName(std::string_view name) {
    const auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
    if (name.empty() || !letter(name.front())) return false;
    return std::all_of(name.begin(), name.end(), [&](char c) { return letter(c) || (c >= '0' && c <= '9'); });
}

std::string_view toString(SourceType type) {
    switch (type) {
        case SourceType::flux:
            return "flux";
        case SourceType::github:
            return "github";
    }
    return "unknown";
}

std::string_view toString(TargetType type) {
    switch (type) {
        case TargetType::alertmanager:
            return "alertmanager";
        case TargetType::github:
            return "github";
        case TargetType::githubDeployment:
            return "github-deployment";
        case TargetType::fluxReceiver:
            return "flux-receiver";
        case TargetType::kubernetes:
            return "kubernetes";
        case TargetType::generic:
            return "generic";
    }
    return "unknown";
}

std::string_view toString(DedupMode mode) {
    switch (mode) {
        case DedupMode::none:
            return "none";
        case DedupMode::flux:
            return "flux";
        case DedupMode::normalized:
            return "normalized";
        case DedupMode::transitions:
            return "transitions";
    }
    return "unknown";
}

std::string_view toString(MatchField field) {
    switch (field) {
        case MatchField::reason:
            return "reason";
        case MatchField::kind:
            return "kind";
        case MatchField::name:
            return "name";
        case MatchField::namespace_:
            return "namespace";
        case MatchField::reportingController:
            return "reportingController";
        case MatchField::metadata:
            return "metadata";
    }
    return "unknown";
}

bool takesEventsOf(TargetType target, SourceType source) {
    switch (target) {
        case TargetType::alertmanager:
        case TargetType::github:
        case TargetType::githubDeployment:
        case TargetType::generic:
            return source == SourceType::flux;
        case TargetType::fluxReceiver:
        case TargetType::kubernetes:
            return source == SourceType::github;
    }
    return false;
}

}  // namespace fluxrelay
