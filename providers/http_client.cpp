// HTTP client connection: plain or TLS stream behind one send(), reconnecting when needed.
#include "providers/http_client.hpp"

#include <stdexcept>
#include <variant>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

namespace fluxrelay {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxResponseBody = 1024 * 1024;

std::shared_ptr<ssl::context> makeClientTlsContext(const TargetConfig& target) {
    auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
    context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                         ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    beast::error_code error;
    // caFile adds a CA to the system's, as Flux's certSecretRef does.
    context->set_default_verify_paths(error);
    if (!error && !target.caFile.empty()) {
        context->load_verify_file(target.caFile, error);
    }
    if (error) {
        throw std::runtime_error("target " + target.name + ": cannot load CA certificates" +
                                 (target.caFile.empty() ? "" : " from " + target.caFile) + ": " + error.message());
    }
    context->set_verify_mode(target.insecureSkipVerify ? ssl::verify_none : ssl::verify_peer);
    if (!target.certFile.empty()) {
        context->use_certificate_chain_file(target.certFile, error);
        if (!error) {
            context->use_private_key_file(target.keyFile, ssl::context::pem, error);
        }
        if (error) {
            throw std::runtime_error("target " + target.name + ": cannot load client certificate: " + error.message());
        }
    }
    return context;
}

struct HttpConnection::State {
    using TlsStream = beast::ssl_stream<beast::tcp_stream>;

    asio::any_io_executor executor;
    std::shared_ptr<ssl::context> tls;
    bool verifyHostName = true;
    std::optional<HttpProxy> proxy;
    std::variant<std::monostate, beast::tcp_stream, TlsStream> stream;
    // What the open stream may carry: the origin, and the proxy it goes through if any.
    std::string route;
    beast::flat_buffer buffer;

    void close() {
        stream.emplace<std::monostate>();
        buffer.clear();
        route.clear();
    }

    std::string routeTo(const Url& url) const {
        return (proxy ? "via " + proxy->url.hostHeader() + " " : std::string{}) + url.scheme + "://" + url.hostHeader();
    }

    // The TCP connection to the next hop: the proxy when there is one, else the origin.
    asio::awaitable<std::string> connectTcp(const Url& hop, beast::tcp_stream& tcpStream, Duration timeout) {
        const std::string role = proxy ? "proxy " : "";
        tcp::resolver resolver(executor);
        auto [resolveError, endpoints] = co_await resolver.async_resolve(hop.host, std::to_string(hop.port), kNoThrow);
        if (resolveError) {
            co_return "resolve " + role + hop.host + ": " + resolveError.message();
        }
        tcpStream.expires_after(timeout);
        auto [connectError, endpoint] = co_await tcpStream.async_connect(endpoints, kNoThrow);
        if (connectError) {
            co_return "connect " + role + hop.hostHeader() + ": " + connectError.message();
        }
        tcpStream.socket().set_option(tcp::no_delay(true));
        co_return std::string{};
    }

    // Asks the proxy for a tunnel to the origin; its answer is read to the end of its header, so
    // that what follows on the stream is the origin's.
    asio::awaitable<std::string> openTunnel(const Url& url, beast::tcp_stream& tcpStream, Duration timeout) {
        const std::string authority = tunnelAuthority(url);
        http::request<http::empty_body> connectRequest{http::verb::connect, authority, 11};
        connectRequest.set(http::field::host, authority);
        connectRequest.set(http::field::user_agent, "fluxrelay/" FLUXRELAY_VERSION);
        if (!proxy->credentials.empty()) {
            connectRequest.set(http::field::proxy_authorization, proxyAuthorization(proxy->credentials));
        }
        const std::string failed = "CONNECT " + authority + ": ";
        const std::string proxyName = "proxy " + proxy->url.hostHeader();
        tcpStream.expires_after(timeout);
        auto [writeError, written] = co_await http::async_write(tcpStream, connectRequest, kNoThrow);
        if (writeError) {
            co_return failed + proxyName + ": " + writeError.message();
        }
        // A 2xx answer to CONNECT has no body whatever its headers say; a refusal's body is not read.
        http::response_parser<http::empty_body> parser;
        parser.skip(true);
        beast::flat_buffer answerBuffer;
        auto [readError, read] = co_await http::async_read_header(tcpStream, answerBuffer, parser, kNoThrow);
        if (readError) {
            co_return failed + proxyName + ": " +
                (readError == beast::error::timeout ? "timeout after " + formatDuration(timeout) : readError.message());
        }
        const auto& answer = parser.get();
        if (answer.result_int() / 100 != 2) {
            co_return failed + proxyRefusal(*proxy, static_cast<int>(answer.result_int()), answer.reason());
        }
        if (answerBuffer.size() != 0) {
            co_return failed + proxyName + " sent data before the TLS handshake";
        }
        co_return std::string{};
    }

    // TLS with the origin over `tcpStream` (direct, or a tunnel through the proxy): SNI, the host
    // name check and the target's CA and client certificate apply either way.
    asio::awaitable<std::string> startTls(const Url& url, beast::tcp_stream tcpStream, Duration timeout) {
        auto& tlsStream = stream.emplace<TlsStream>(std::move(tcpStream), *tls);
        SSL* native = tlsStream.native_handle();
        beast::error_code notAnAddress;
        asio::ip::make_address(url.host, notAnAddress);
        const bool ipAddress = !notAnAddress;
        // SNI names hosts only, never addresses (RFC 6066).
        if (!ipAddress && !SSL_set_tlsext_host_name(native, url.host.c_str())) {
            close();
            co_return "TLS: cannot set SNI host name";
        }
        if (verifyHostName) {
            // The certificate must name the host (or address) we meant to reach: OpenSSL's
            // own check, so that a failure says which check failed.
            X509_VERIFY_PARAM* param = SSL_get0_param(native);
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            const int named = ipAddress ? X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str())
                                        : X509_VERIFY_PARAM_set1_host(param, url.host.c_str(), url.host.size());
            if (named != 1) {
                close();
                co_return "TLS: cannot verify host name " + url.host;
            }
        }
        beast::get_lowest_layer(tlsStream).expires_after(timeout);
        auto [handshakeError] = co_await tlsStream.async_handshake(ssl::stream_base::client, kNoThrow);
        if (handshakeError) {
            std::string message = "TLS handshake with " + url.hostHeader() + ": " + handshakeError.message();
            const long verified = SSL_get_verify_result(native);
            if (SSL_get_verify_mode(native) != SSL_VERIFY_NONE && verified != X509_V_OK) {
                message += ": " + std::string(X509_verify_cert_error_string(verified));
            }
            close();
            co_return message;
        }
        co_return std::string{};
    }

    asio::awaitable<std::string> connect(const Url& url, Duration timeout) {
        close();
        beast::tcp_stream tcpStream(executor);
        if (auto error = co_await connectTcp(proxy ? proxy->url : url, tcpStream, timeout); !error.empty()) {
            co_return error;
        }
        if (!url.tls()) {
            stream.emplace<beast::tcp_stream>(std::move(tcpStream));
        } else {
            if (proxy) {
                if (auto error = co_await openTunnel(url, tcpStream, timeout); !error.empty()) {
                    co_return error;
                }
            }
            if (auto error = co_await startTls(url, std::move(tcpStream), timeout); !error.empty()) {
                co_return error;
            }
        }
        route = routeTo(url);
        co_return std::string{};
    }

    template <class Stream>
    asio::awaitable<HttpResult> exchange(Stream& s, const http::request<http::string_body>& request, Duration timeout) {
        beast::get_lowest_layer(s).expires_after(timeout);
        auto [writeError, written] = co_await http::async_write(s, request, kNoThrow);
        if (writeError) {
            co_return HttpResult{.error = "send: " + writeError.message()};
        }
        http::response_parser<http::string_body> parser;
        parser.body_limit(kMaxResponseBody);
        auto [readError, read] = co_await http::async_read(s, buffer, parser, kNoThrow);
        // A proxy refusing credentials may close with the request body unread, so that a reset cuts
        // off its answer's body; the status says all there is to know.
        const bool credentialsAsked =
            parser.is_header_done() && parser.get().result_int() == kProxyAuthenticationRequired;
        if (readError && !credentialsAsked) {
            co_return HttpResult{.error = readError == beast::error::timeout
                                              ? "timeout after " + formatDuration(timeout)
                                              : "receive: " + readError.message()};
        }
        auto message = parser.release();
        HttpResponse response{.status = static_cast<int>(message.result_int()), .body = std::move(message.body())};
        for (const auto& field : message) {
            response.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
        }
        if (readError || !message.keep_alive()) {
            close();
        }
        co_return HttpResult{.response = std::move(response)};
    }
};

HttpConnection::HttpConnection(asio::any_io_executor executor, std::shared_ptr<ssl::context> tls, bool verifyHostName,
                               std::optional<HttpProxy> proxy)
    : state_(std::make_unique<State>()) {
    state_->executor = std::move(executor);
    state_->tls = std::move(tls);
    state_->verifyHostName = verifyHostName;
    state_->proxy = std::move(proxy);
}

HttpConnection::~HttpConnection() = default;

asio::awaitable<HttpResult> HttpConnection::send(const HttpRequest& request, Duration timeout) {
    const auto& proxy = state_->proxy;
    // Plain http goes to the proxy as a whole URL; https goes through a tunnel, where the proxy
    // sees nothing and the origin must see neither the whole URL nor the proxy's credentials.
    const bool forwarded = proxy && !request.url.tls();
    http::request<http::string_body> message{http::string_to_verb(request.method),
                                             requestTarget(request.url, forwarded), 11};
    message.set(http::field::host, request.url.hostHeader());
    message.set(http::field::user_agent, "fluxrelay/" FLUXRELAY_VERSION);
    for (const auto& [name, value] : request.headers) {
        message.set(name, value);
    }
    if (forwarded && !proxy->credentials.empty()) {
        message.set(http::field::proxy_authorization, proxyAuthorization(proxy->credentials));
    }
    message.body() = request.body;
    message.keep_alive(true);
    message.prepare_payload();

    if (request.url.tls() && !state_->tls) {
        co_return HttpResult{.error = "https address but no TLS context for this target"};
    }
    const std::string route = state_->routeTo(request.url);
    // A kept-alive connection the peer closed meanwhile fails at once; one retry on a fresh
    // connection tells that apart from a real failure.
    for (int attempt = 0; attempt < 2; ++attempt) {
        const bool reused = state_->route == route && !std::holds_alternative<std::monostate>(state_->stream);
        if (!reused) {
            if (auto error = co_await state_->connect(request.url, timeout); !error.empty()) {
                co_return HttpResult{.error = std::move(error)};
            }
        }
        // Not a conditional expression: GCC 12 miscompiles co_await inside `?:`.
        HttpResult result;
        if (auto* plain = std::get_if<beast::tcp_stream>(&state_->stream)) {
            result = co_await state_->exchange(*plain, message, timeout);
        } else {
            result = co_await state_->exchange(std::get<State::TlsStream>(state_->stream), message, timeout);
        }
        if (!result.response) {
            state_->close();
            if (reused) {
                continue;
            }
        } else if (forwarded && result.response->status == kProxyAuthenticationRequired) {
            // The proxy's answer, not the origin's: failing the exchange keeps the delivery queued
            // for a retry instead of settling it on a status its target never sent.
            state_->close();
            co_return HttpResult{.error = proxyRefusal(*proxy, result.response->status, {})};
        }
        co_return result;
    }
    co_return HttpResult{.error = "connection closed by peer"};
}

}  // namespace fluxrelay
