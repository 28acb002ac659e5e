// Beast session skeleton in C++20 coroutines: one strand per connection, a new parser per
// request with body and header limits, a deadline on every read and write, errors as values.
#include "gateway/server.hpp"

#include <array>
#include <type_traits>
#include <variant>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <nlohmann/json.hpp>

#include "gateway/tls.hpp"

namespace fluxrelay {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxLingerBytes = 64 * 1024 * 1024;
// Connections over the cap are answered without reading their request; answering them is
// bounded too, past it they are just closed.
constexpr std::size_t kMaxRefusing = 256;
constexpr auto kRefuseTimeout = std::chrono::seconds(2);
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);
// How long a TLS client gets to answer our close_notify with its own.
constexpr auto kTlsShutdownTimeout = std::chrono::seconds(1);

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

struct HttpServer::Connection {
    explicit Connection(tcp::socket socket) : stream(std::in_place_type<beast::tcp_stream>, std::move(socket)) {}
    Connection(tcp::socket socket, std::shared_ptr<asio::ssl::context> context)
        : tls(std::move(context)), stream(std::in_place_type<TlsStream>, std::move(socket), *tls) {}

    // The TCP layer under either stream: executor, deadlines, cancellation.
    beast::tcp_stream& transport() {
        return std::visit([](auto& s) -> beast::tcp_stream& { return beast::get_lowest_layer(s); }, stream);
    }

    std::shared_ptr<asio::ssl::context> tls;  // the context of this connection's handshake, kept while it lives
    std::variant<beast::tcp_stream, TlsStream> stream;
    bool busy = false;  // touched only on the connection's strand
};

HttpServerResponse jsonResponse(unsigned status, std::string body, unsigned version) {
    HttpServerResponse response{static_cast<http::status>(status), version};
    response.set(http::field::content_type, "application/json");
    response.set(http::field::cache_control, "no-store");
    response.body() = std::move(body);
    return response;
}

HttpServerResponse errorResponse(unsigned status, std::string_view message, unsigned version) {
    const nlohmann::json body{{"error", message}};
    return jsonResponse(status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), version);
}

namespace {

// The answer to a request Beast could not read, or nullopt when the connection just went away.
std::optional<HttpServerResponse> answerForReadError(const beast::error_code& error, std::size_t bodyLimit) {
    if (error == http::error::body_limit) {
        return errorResponse(413, "request body is larger than " + std::to_string(bodyLimit) + " bytes");
    }
    if (error == http::error::header_limit) {
        return errorResponse(431, "request headers are too large");
    }
    if (error == http::error::partial_message) {
        // The client closed its side mid-request; it may still read the answer.
        return errorResponse(400, "request ended before it was complete (truncated headers or body)");
    }
    const beast::error_code endOfStream = http::error::end_of_stream;
    if (error.category() == endOfStream.category() && error != http::error::end_of_stream) {
        return errorResponse(400, "malformed HTTP request: " + error.message());
    }
    return std::nullopt;
}

// Request smuggling: the body's framing must be unambiguous to every hop. Beast already refuses
// Content-Length together with Transfer-Encoding and differing Content-Lengths; it accepts a
// Transfer-Encoding that does not end in chunked (then reads no body, and the body would be read
// as the next request) and one in HTTP/1.0, which a proxy may frame differently (RFC 9112 §6.1).
std::optional<HttpServerResponse> framingProblem(const http::request_header<>& header) {
    const auto [first, end] = header.equal_range(http::field::transfer_encoding);
    if (first == end) {
        return std::nullopt;
    }
    if (header.version() < 11) {
        return errorResponse(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request");
    }
    std::string_view coding = first->value();
    while (!coding.empty() && (coding.front() == ' ' || coding.front() == '\t')) coding.remove_prefix(1);
    while (!coding.empty() && (coding.back() == ' ' || coding.back() == '\t')) coding.remove_suffix(1);
    if (std::next(first) != end || !beast::iequals(coding, "chunked")) {
        return errorResponse(400, "unsupported Transfer-Encoding; only a single \"chunked\" is accepted");
    }
    return std::nullopt;
}

// The end of a connection. TLS sends close_notify first, so the client can tell the end of the
// stream from a cut one, and waits briefly for the client's own.
template <class Stream>
asio::awaitable<void> closeStream(Stream& stream) {
    auto& tcpStream = beast::get_lowest_layer(stream);
    if constexpr (std::is_same_v<Stream, TlsStream>) {
        tcpStream.expires_after(kTlsShutdownTimeout);
        co_await stream.async_shutdown(kNoThrow);
    }
    beast::error_code ignored;
    tcpStream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    tcpStream.close();
}

}  // namespace

HttpServer::HttpServer(asio::io_context& io, const Endpoint& listen, ServerLimits limits, RequestHandler handler,
                       std::string name, std::shared_ptr<const ListenerTls> tls)
    : io_(io),
      acceptor_(io),
      limits_(limits),
      handler_(std::move(handler)),
      name_(std::move(name)),
      tls_(std::move(tls)) {
    const tcp::endpoint endpoint{asio::ip::make_address(listen.host), listen.port};
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(asio::socket_base::max_listen_connections);
}

HttpServer::~HttpServer() = default;

tcp::endpoint HttpServer::localEndpoint() const { return acceptor_.local_endpoint(); }

void HttpServer::start() {
    spdlog::info("{} listening on {}:{} ({})", name_, localEndpoint().address().to_string(), localEndpoint().port(),
                 tls_ ? "https" : "http");
    asio::co_spawn(acceptor_.get_executor(), acceptLoop(), asio::detached);
}

void HttpServer::stop() {
    stopping_ = true;
    asio::post(acceptor_.get_executor(), [this] {
        beast::error_code ignored;
        acceptor_.close(ignored);
    });
    std::lock_guard lock(mutex_);
    for (const auto& connection : connections_) {
        asio::post(connection->transport().get_executor(), [connection] {
            // A connection mid-request finishes it and closes afterwards (serve() checks stopping_).
            // Others stop reading: the shutdown also ends a read that a composed operation (a TLS
            // record, a request's headers) starts after this cancel, which would otherwise wait
            // out its whole deadline.
            if (!connection->busy) {
                beast::error_code ignored;
                connection->transport().socket().shutdown(tcp::socket::shutdown_receive, ignored);
                connection->transport().cancel();
            }
        });
    }
}

std::size_t HttpServer::openConnections() const {
    std::lock_guard lock(mutex_);
    return connections_.size();
}

asio::awaitable<void> HttpServer::acceptLoop() {
    asio::steady_timer pause(acceptor_.get_executor());
    beast::error_code lastError;
    bool full = false;
    while (!stopping_) {
        auto [error, socket] = co_await acceptor_.async_accept(asio::make_strand(io_), kNoThrow);
        if (error) {
            if (error == asio::error::operation_aborted || stopping_) {
                break;
            }
            // Out of descriptors and the like: keep accepting rather than go deaf, but pause so
            // that the loop neither spins nor floods the log while the condition lasts.
            if (error != lastError) {
                spdlog::warn("{} accept failed: {}", name_, error.message());
            }
            lastError = error;
            pause.expires_after(kAcceptRetryDelay);
            co_await pause.async_wait(kNoThrow);
            continue;
        }
        lastError = {};
        auto connection = tls_ ? std::make_shared<Connection>(std::move(socket), tls_->current())
                               : std::make_shared<Connection>(std::move(socket));
        {
            std::lock_guard lock(mutex_);
            if (connections_.size() >= limits_.maxConnections) {
                if (!full) {
                    spdlog::warn("{}: {} connections open, the most allowed (server.maxConnections); new ones get 503",
                                 name_, connections_.size());
                }
                full = true;
            } else {
                full = false;
                connections_.insert(connection);
            }
        }
        if (full) {
            // A TLS client could read the 503 only after a handshake, too costly on a full
            // listener: it is just closed.
            if (!tls_ && refusing_ < kMaxRefusing) {
                ++refusing_;
                const auto executor = connection->transport().get_executor();
                asio::co_spawn(executor, refuse(std::move(std::get<beast::tcp_stream>(connection->stream))),
                               asio::detached);
            }
            continue;  // else the socket closes here
        }
        asio::co_spawn(connection->transport().get_executor(), serve(connection), asio::detached);
    }
}

// A connection over the cap: answered at once, without reading its request, so that a client
// learns why instead of waiting on a full listener.
asio::awaitable<void> HttpServer::refuse(beast::tcp_stream stream) {
    HttpServerResponse answer = errorResponse(503, "too many connections; retry later");
    answer.set(http::field::retry_after, "1");
    answer.keep_alive(false);
    answer.prepare_payload();
    stream.expires_after(kRefuseTimeout);
    auto [error, written] = co_await http::async_write(stream, answer, kNoThrow);
    if (!error) {
        co_await lingeringClose(stream);
    }
    stream.close();
    --refusing_;
}

// Closing a socket with unread input makes the kernel send a reset, and the client then loses
// the answer it has not read yet (a 413 while it is still sending its body). So: stop sending,
// drain what arrives for a short while, then close. (TLS cannot half-close below its records: the
// client's bytes are drained through TLS, and close_notify follows in closeStream.)
template <class Stream>
asio::awaitable<void> HttpServer::lingeringClose(Stream& stream) {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
        beast::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
    std::array<char, 16 * 1024> sink;
    std::size_t drained = 0;
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(1));
    while (drained < kMaxLingerBytes) {
        auto [error, n] = co_await stream.async_read_some(asio::buffer(sink), kNoThrow);
        if (error) {
            break;
        }
        drained += n;
    }
}

asio::awaitable<HttpServerResponse> HttpServer::handleGuarded(HttpServerRequest& request) {
    // Handlers answer bad input with a 4xx value; an exception here is a bug, and one request's
    // bug must not take the connection's other requests or the process down with it.
    try {
        co_return co_await handler_(request);
    } catch (const std::exception& error) {
        spdlog::error("{} handler failed on {}: {}", name_, std::string_view(request.target()), error.what());
    }
    co_return errorResponse(500, "internal error");
}

asio::awaitable<void> HttpServer::serve(std::shared_ptr<Connection> connection) {
    if (auto* tlsStream = std::get_if<TlsStream>(&connection->stream)) {
        co_await session(*connection, *tlsStream);
    } else {
        co_await session(*connection, std::get<beast::tcp_stream>(connection->stream));
    }
    std::lock_guard lock(mutex_);
    connections_.erase(connection);
}

template <class Stream>
asio::awaitable<void> HttpServer::session(Connection& connection, Stream& stream) {
    auto& tcpStream = beast::get_lowest_layer(stream);
    if constexpr (std::is_same_v<Stream, TlsStream>) {
        tcpStream.expires_after(limits_.handshakeTimeout);
        auto [handshakeError] = co_await stream.async_handshake(asio::ssl::stream_base::server, kNoThrow);
        if (handshakeError) {
            // Scanners, plain HTTP on the TLS port, TLS 1.1, a missing or foreign client
            // certificate: the client's problem, and noise for the operator.
            beast::error_code ignored;
            const auto peer = tcpStream.socket().remote_endpoint(ignored);
            spdlog::debug("{}: TLS handshake with {}:{} failed: {}", name_, peer.address().to_string(), peer.port(),
                          handshakeError.message());
            tcpStream.close();
            co_return;
        }
    }
    beast::flat_buffer buffer;
    while (!stopping_) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(limits_.maxHeaderBytes));
        parser.body_limit(limits_.maxBodyBytes);

        // Waiting for the next request on a kept-alive connection may take long; once its first
        // byte arrived the whole request, headers and body, must follow within readTimeout, one
        // deadline however slowly the bytes trickle in.
        if (buffer.size() == 0) {
            tcpStream.expires_after(limits_.idleTimeout);
            auto [idleError, firstBytes] = co_await stream.async_read_some(buffer.prepare(4096), kNoThrow);
            if (idleError) {
                break;  // closed, idle too long, or the server stops
            }
            buffer.commit(firstBytes);
        }
        tcpStream.expires_after(limits_.readTimeout);
        auto [readError, headerBytes] = co_await http::async_read_header(stream, buffer, parser, kNoThrow);
        std::optional<HttpServerResponse> refusal = readError ? std::nullopt : framingProblem(parser.get());
        if (!readError && !refusal && !parser.is_done()) {
            auto [bodyError, bodyBytes] = co_await http::async_read(stream, buffer, parser, kNoThrow);
            readError = bodyError;
        }
        if (readError || refusal) {
            if (readError) {
                refusal = answerForReadError(readError, limits_.maxBodyBytes);
            }
            if (refusal) {
                refusal->keep_alive(false);
                refusal->prepare_payload();
                tcpStream.expires_after(limits_.writeTimeout);
                co_await http::async_write(stream, *refusal, kNoThrow);
                co_await lingeringClose(stream);
            }
            break;
        }

        connection.busy = true;
        HttpServerRequest request = parser.release();
        HttpServerResponse response = co_await handleGuarded(request);
        connection.busy = false;

        response.version(request.version());
        response.keep_alive(request.keep_alive() && !stopping_);
        response.prepare_payload();
        tcpStream.expires_after(limits_.writeTimeout);
        auto [writeError, written] = co_await http::async_write(stream, response, kNoThrow);
        if (writeError || !response.keep_alive()) {
            break;
        }
    }
    co_await closeStream(stream);
}

}  // namespace fluxrelay
