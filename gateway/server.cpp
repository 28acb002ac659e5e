// Beast session skeleton in C++20 coroutines: one strand per connection, a new parser per
// request with body and header limits, a deadline on every read and write, errors as values.
#include "gateway/server.hpp"

#include <array>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>

namespace fluxrelay {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxLingerBytes = 64 * 1024 * 1024;

struct HttpServer::Connection {
    explicit Connection(tcp::socket socket) : stream(std::move(socket)) {}
    beast::tcp_stream stream;
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
    const beast::error_code endOfStream = http::error::end_of_stream;
    if (error.category() == endOfStream.category() && error != http::error::end_of_stream &&
        error != http::error::partial_message) {
        return errorResponse(400, "malformed HTTP request: " + error.message());
    }
    return std::nullopt;
}

}  // namespace

HttpServer::HttpServer(asio::io_context& io, const Endpoint& listen, ServerLimits limits, RequestHandler handler,
                       std::string name)
    : io_(io), acceptor_(io), limits_(limits), handler_(std::move(handler)), name_(std::move(name)) {
    const tcp::endpoint endpoint{asio::ip::make_address(listen.host), listen.port};
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(asio::socket_base::max_listen_connections);
}

HttpServer::~HttpServer() = default;

tcp::endpoint HttpServer::localEndpoint() const { return acceptor_.local_endpoint(); }

void HttpServer::start() {
    spdlog::info("{} listening on {}:{}", name_, localEndpoint().address().to_string(), localEndpoint().port());
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
        asio::post(connection->stream.get_executor(), [connection] {
            // A connection mid-request finishes it and closes afterwards (serve() checks stopping_).
            if (!connection->busy) {
                connection->stream.cancel();
            }
        });
    }
}

std::size_t HttpServer::openConnections() const {
    std::lock_guard lock(mutex_);
    return connections_.size();
}

asio::awaitable<void> HttpServer::acceptLoop() {
    while (!stopping_) {
        auto [error, socket] = co_await acceptor_.async_accept(asio::make_strand(io_), kNoThrow);
        if (error) {
            if (error == asio::error::operation_aborted || stopping_) {
                break;
            }
            // Out of descriptors and the like: log and keep accepting rather than go deaf.
            spdlog::warn("{} accept failed: {}", name_, error.message());
            continue;
        }
        auto connection = std::make_shared<Connection>(std::move(socket));
        {
            std::lock_guard lock(mutex_);
            connections_.insert(connection);
        }
        asio::co_spawn(connection->stream.get_executor(), serve(connection), asio::detached);
    }
}

// Closing a socket with unread input makes the kernel send a reset, and the client then loses
// the answer it has not read yet (a 413 while it is still sending its body). So: stop sending,
// drain what arrives for a short while, then close.
asio::awaitable<void> HttpServer::lingeringClose(beast::tcp_stream& stream) {
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    std::array<char, 16 * 1024> sink;
    std::size_t drained = 0;
    stream.expires_after(std::chrono::seconds(1));
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
    auto& stream = connection->stream;
    beast::flat_buffer buffer;
    while (!stopping_) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(limits_.maxHeaderBytes));
        parser.body_limit(limits_.maxBodyBytes);

        // Waiting for the next request on a kept-alive connection may take long; once its first
        // bytes arrived the whole request must follow within readTimeout.
        stream.expires_after(buffer.size() == 0 ? limits_.idleTimeout : limits_.readTimeout);
        auto [headerError, headerBytes] = co_await http::async_read_header(stream, buffer, parser, kNoThrow);
        if (!headerError && !parser.is_done()) {
            stream.expires_after(limits_.readTimeout);
            auto [bodyError, bodyBytes] = co_await http::async_read(stream, buffer, parser, kNoThrow);
            headerError = bodyError;
        }
        if (headerError) {
            if (auto answer = answerForReadError(headerError, limits_.maxBodyBytes)) {
                answer->keep_alive(false);
                answer->prepare_payload();
                stream.expires_after(limits_.writeTimeout);
                co_await http::async_write(stream, *answer, kNoThrow);
                co_await lingeringClose(stream);
            }
            break;
        }

        connection->busy = true;
        HttpServerRequest request = parser.release();
        HttpServerResponse response = co_await handleGuarded(request);
        connection->busy = false;

        response.version(request.version());
        response.keep_alive(request.keep_alive() && !stopping_);
        response.prepare_payload();
        stream.expires_after(limits_.writeTimeout);
        auto [writeError, written] = co_await http::async_write(stream, response, kNoThrow);
        if (writeError || !response.keep_alive()) {
            break;
        }
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.close();
    std::lock_guard lock(mutex_);
    connections_.erase(connection);
}

}  // namespace fluxrelay
