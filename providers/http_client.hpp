// Outbound HTTP(S) like Beast's async-ssl client: SNI, host-name verification, one deadline per
// exchange, and the connection kept alive for the next request to the same origin.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "providers/provider.hpp"
#include "providers/proxy.hpp"

namespace boost::asio::ssl {
class context;
}

namespace fluxrelay {

// A response, or why none came (connect refused, timeout, TLS failure...).
struct HttpResult {
    std::optional<HttpResponse> response;
    std::string error;
};

// The TLS settings of a target (caFile, client certificate, insecureSkipVerify turning chain
// verification off), built once.
// Throws std::runtime_error naming the file when a certificate or key cannot be loaded.
std::shared_ptr<boost::asio::ssl::context> makeClientTlsContext(const TargetConfig& target);

// One connection, reused while the peer keeps it alive, and only for the origin (and proxy) it
// was opened to. Not thread-safe: one owner, one request at a time (the dispatcher gives each
// worker its own). `tls` decides whether and against what the server's chain is verified;
// `verifyHostName` also requires the certificate to name the host (or address) of the URL. With a
// `proxy`, http requests are sent to it whole and https ones through a CONNECT tunnel, with the
// same TLS checks as without.
class HttpConnection {
public:
    HttpConnection(boost::asio::any_io_executor executor, std::shared_ptr<boost::asio::ssl::context> tls,
                   bool verifyHostName, std::optional<HttpProxy> proxy = std::nullopt);
    ~HttpConnection();
    HttpConnection(const HttpConnection&) = delete;
    HttpConnection& operator=(const HttpConnection&) = delete;

    boost::asio::awaitable<HttpResult> send(const HttpRequest& request, Duration timeout);

private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace fluxrelay
