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
    std::variant<std::monostate, beast::tcp_stream, TlsStream> stream;
    std::string origin;  // scheme://host:port the open stream is connected to
    beast::flat_buffer buffer;

    void close() {
        stream.emplace<std::monostate>();
        buffer.clear();
        origin.clear();
    }

    asio::awaitable<std::string> connect(const Url& url, Duration timeout) {
        close();
        tcp::resolver resolver(executor);
        auto [resolveError, endpoints] = co_await resolver.async_resolve(url.host, std::to_string(url.port), kNoThrow);
        if (resolveError) {
            co_return "resolve " + url.host + ": " + resolveError.message();
        }
        beast::tcp_stream tcpStream(executor);
        tcpStream.expires_after(timeout);
        auto [connectError, endpoint] = co_await tcpStream.async_connect(endpoints, kNoThrow);
        if (connectError) {
            co_return "connect " + url.hostHeader() + ": " + connectError.message();
        }
        tcpStream.socket().set_option(tcp::no_delay(true));
        if (!url.tls()) {
            stream.emplace<beast::tcp_stream>(std::move(tcpStream));
        } else {
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
        }
        origin = url.scheme + "://" + url.hostHeader();
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
        if (readError) {
            co_return HttpResult{.error = readError == beast::error::timeout
                                              ? "timeout after " + formatDuration(timeout)
                                              : "receive: " + readError.message()};
        }
        auto message = parser.release();
        HttpResponse response{.status = static_cast<int>(message.result_int()), .body = std::move(message.body())};
        for (const auto& field : message) {
            response.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
        }
        if (!message.keep_alive()) {
            close();
        }
        co_return HttpResult{.response = std::move(response)};
    }
};

HttpConnection::HttpConnection(asio::any_io_executor executor, std::shared_ptr<ssl::context> tls, bool verifyHostName)
    : state_(std::make_unique<State>()) {
    state_->executor = std::move(executor);
    state_->tls = std::move(tls);
    state_->verifyHostName = verifyHostName;
}

HttpConnection::~HttpConnection() = default;

asio::awaitable<HttpResult> HttpConnection::send(const HttpRequest& request, Duration timeout) {
    http::request<http::string_body> message{http::string_to_verb(request.method), request.url.target, 11};
    message.set(http::field::host, request.url.hostHeader());
    message.set(http::field::user_agent, "fluxrelay/" FLUXRELAY_VERSION);
    for (const auto& [name, value] : request.headers) {
        message.set(name, value);
    }
    message.body() = request.body;
    message.keep_alive(true);
    message.prepare_payload();

    if (request.url.tls() && !state_->tls) {
        co_return HttpResult{.error = "https address but no TLS context for this target"};
    }
    const std::string origin = request.url.scheme + "://" + request.url.hostHeader();
    // A kept-alive connection the peer closed meanwhile fails at once; one retry on a fresh
    // connection tells that apart from a real failure.
    for (int attempt = 0; attempt < 2; ++attempt) {
        const bool reused = state_->origin == origin && !std::holds_alternative<std::monostate>(state_->stream);
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
        }
        co_return result;
    }
    co_return HttpResult{.error = "connection closed by peer"};
}

}  // namespace fluxrelay
