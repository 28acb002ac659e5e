// GitHub Deployment target: one Deployment per Kustomization revision and environment, with
// statuses that follow the rollout.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "providers/provider.hpp"

namespace fluxrelay {

std::unique_ptr<Provider> makeGitHubDeploymentProvider(const TargetConfig& target);

// A deployment status's state for an event: Progressing → in_progress, any other info event
// (it confirms the revision) → success, error → failure; nullopt for other severities.
std::optional<std::string> deploymentState(std::string_view severity, std::string_view reason);

// "Reason: message", cut to GitHub's 140 characters.
std::string deploymentDescription(const FluxEvent& event);

}  // namespace fluxrelay
