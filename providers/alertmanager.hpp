// Alertmanager target: Flux-compatible alerts, batched, POSTed to the address as given.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "providers/provider.hpp"

namespace fluxrelay {

std::unique_ptr<Provider> makeAlertmanagerProvider(const TargetConfig& target);

// Go's cases.Title(language.Und): first letter of each word upper, the rest lower.
std::string goTitle(std::string_view text);

// One alert exactly as Flux's alertmanager notifier builds it (labels, annotations, startsAt).
nlohmann::json fluxAlert(const Event& event);

}  // namespace fluxrelay
