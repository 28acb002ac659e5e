// Flux Receiver target: forwards a GitHub delivery to a Flux webhook Receiver, re-signed.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "providers/provider.hpp"

namespace fluxrelay {

std::unique_ptr<Provider> makeFluxReceiverProvider(const TargetConfig& target);

// "/hook/" + hex(sha256(token + name + namespace)): the path notification-controller gives a
// Receiver (its status.webhookPath).
std::string receiverWebhookPath(std::string_view token, std::string_view name, std::string_view namespace_);

// The URL the target posts to: the address with the Receiver's webhook path appended, or the
// address as given when it already contains "/hook/".
Url receiverUrl(const TargetConfig& target);

}  // namespace fluxrelay
