// Generic webhook target: each Flux event POSTed as Flux's generic and generic-hmac Providers send it.
#pragma once

#include <memory>

#include "providers/provider.hpp"

namespace fluxrelay {

std::unique_ptr<Provider> makeGenericProvider(const TargetConfig& target);

}  // namespace fluxrelay
