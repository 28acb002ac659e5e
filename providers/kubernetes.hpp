// Kubernetes target: asks Flux to reconcile listed objects now, the way `flux reconcile` does.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/time.hpp"
#include "providers/provider.hpp"

namespace fluxrelay {

// One delivery patches every listed resource (one request each, in order; see buildRequests).
std::unique_ptr<Provider> makeKubernetesProvider(const TargetConfig& target);

// The API server's resource name for a kind, guessed as the API machinery does: lower-cased, then
// "s" → "ses", "y" → "ies", else + "s" (GitRepository → gitrepositories, ImagePolicy → imagepolicies).
std::string kubernetesPlural(std::string_view kind);

// "/api/v1/namespaces/{ns}/{plural}/{name}" for the core group ("v1"),
// "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}" for a named one.
std::string kubernetesObjectPath(const ObjectSelector& object);

// The merge patch that sets reconcile.fluxcd.io/requestedAt to `now` (RFC3339Nano), which every
// Flux controller watches.
std::string reconcileRequestPatch(TimePoint now);

}  // namespace fluxrelay
