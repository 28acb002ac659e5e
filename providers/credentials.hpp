// Credentials a target renews before it plans an attempt: what to fetch, and what came of it.
#pragma once

#include <optional>
#include <string>

#include "core/time.hpp"
#include "providers/exchange.hpp"

namespace fluxrelay {

// A credential the provider needs before it can plan: an exchange with the peer (a GitHub App's
// installation token) or a file read off the io threads (a rotating service-account token).
struct CredentialsFetch {
    std::optional<HttpRequest> exchange;
    std::string file;  // read when there is no exchange
};

// What came of a CredentialsFetch: the exchange's response, or the file's content or error.
struct CredentialsAnswer {
    std::optional<HttpResponse> response;
    std::string content;
    std::string error;  // the file could not be read
};

// A credential a provider holds and renews before it plans: a GitHub App's installation token,
// exchanged with the peer, or a rotating service-account token, read from a file off the io threads.
class Credentials {
public:
    virtual ~Credentials() = default;

    // What to fetch before the next attempt; nullopt while the credential held is fresh.
    virtual std::optional<CredentialsFetch> fetch(TimePoint now) = 0;
    // Takes the answer to fetch(); anything but `delivered` fails the attempt with it.
    virtual Outcome accept(const CredentialsAnswer& answer, TimePoint now) = 0;
};

}  // namespace fluxrelay
