// Generic webhook target: the Flux Event JSON, byte for byte as notification-controller's forwarder
// marshals it, so anything that takes Flux's generic Provider (another relay's flux source, n8n,
// Home Assistant) takes this; with a key, signed as its generic-hmac Provider signs.
#include "providers/generic.hpp"

#include <algorithm>
#include <cassert>
#include <utility>

#include "core/crypto.hpp"
#include "core/event.hpp"
#include "core/text.hpp"

namespace fluxrelay {

namespace {

// The header notification-controller names the reporting controller in.
constexpr std::string_view kComponentHeader = "gotk-component";

class GenericProvider final : public Provider {
public:
    explicit GenericProvider(const TargetConfig& target) : Provider(target, traits(target)) {}

    AttemptPlan plan(std::span<const Delivery> batch, const ProviderState& /*state*/,
                     TimePoint /*now*/) const override {
        assert(batch.size() == 1);
        const FluxEvent* flux = batch.front().event ? batch.front().event->flux() : nullptr;
        if (flux == nullptr) {
            return AttemptPlan::decide(Outcome::permanent("generic targets take only Flux events"));
        }
        HttpRequest request;
        request.method = "POST";
        request.url = target_.address;
        // The same bytes are signed and sent: the receiver verifies the signature over the body.
        request.body = toFluxJsonText(*flux);
        request.headers.emplace_back("Content-Type", "application/json");
        // Flux sets it before the Provider's headers, so a configured one replaces it.
        if (!configuresHeader(kComponentHeader)) {
            request.headers.emplace_back(kComponentHeader, flux->reportingController);
        }
        if (!target_.hmacKey.empty()) {
            request.headers.emplace_back("X-Signature",
                                         "sha256=" + toHex(hmac(HashAlgorithm::sha256, target_.hmacKey, request.body)));
        }
        addAuthorization(request);
        addConfiguredHeaders(request);
        return {.requests = {std::move(request)}, .decided = {}, .writes = {}};
    }

private:
    static Traits traits(const TargetConfig& target) {
        Traits traits{.maxBatch = 1,  // Flux's Event JSON is one event per request
                      .refresh = {},
                      .ownHeaders = {"Content-Type"}};
        if (!target.hmacKey.empty()) traits.ownHeaders.emplace_back("X-Signature");
        if (hasAuthorization(target)) traits.ownHeaders.emplace_back("Authorization");
        return traits;
    }

    bool configuresHeader(std::string_view name) const {
        return std::any_of(target_.headers.begin(), target_.headers.end(),
                           [name](const auto& header) { return equalsIgnoreCase(header.first, name); });
    }
};

}  // namespace

std::unique_ptr<Provider> makeGenericProvider(const TargetConfig& target) {
    return std::make_unique<GenericProvider>(target);
}

}  // namespace fluxrelay
