// HTTP/1.1 listener and sessions on Beast: reads each request with limits and deadlines, hands it
// to a handler, writes the answer, keeps the connection alive. Knows nothing of sources.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_set>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "config/config.hpp"

namespace fluxrelay {

using HttpServerRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpServerResponse = boost::beast::http::response<boost::beast::http::string_body>;
using RequestHandler = std::function<boost::asio::awaitable<HttpServerResponse>(HttpServerRequest&)>;

struct ServerLimits {
    std::size_t maxBodyBytes = 3 * 1024 * 1024;
    std::size_t maxHeaderBytes = 16 * 1024;
    Duration readTimeout = std::chrono::seconds(30);  // whole request, once its first byte arrived
    Duration idleTimeout = std::chrono::seconds(75);  // keep-alive connection waiting for a request
    Duration writeTimeout = std::chrono::seconds(30);
    std::size_t maxConnections = 1024;  // open at once; past it a new connection gets a 503 and is closed
    Duration handshakeTimeout = std::chrono::seconds(10);  // TLS listeners: from accept to an established session
};

// A JSON answer `{"error": message}` (or any body) with the usual headers.
HttpServerResponse jsonResponse(unsigned status, std::string body, unsigned version = 11);
HttpServerResponse errorResponse(unsigned status, std::string_view message, unsigned version = 11);

class ListenerTls;

class HttpServer {
public:
    // Binds at once (throws on failure: a start-up error); call start() to accept. With `tls`,
    // every connection speaks TLS, each new one with the context `tls` holds at its accept.
    HttpServer(boost::asio::io_context& io, const Endpoint& listen, ServerLimits limits, RequestHandler handler,
               std::string name, std::shared_ptr<const ListenerTls> tls = nullptr);
    ~HttpServer();

    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    boost::asio::ip::tcp::endpoint localEndpoint() const;
    void start();
    // Stops accepting and closes idle connections; requests being handled finish and are answered
    // with `Connection: close`. Safe from any thread.
    void stop();
    // Connections still open (being served or idle).
    std::size_t openConnections() const;

private:
    struct Connection;
    boost::asio::awaitable<void> acceptLoop();
    boost::asio::awaitable<void> serve(std::shared_ptr<Connection> connection);
    // One session for plain and TLS streams.
    template <class Stream>
    boost::asio::awaitable<void> session(Connection& connection, Stream& stream);
    boost::asio::awaitable<HttpServerResponse> handleGuarded(HttpServerRequest& request);
    template <class Stream>
    static boost::asio::awaitable<void> lingeringClose(Stream& stream);
    boost::asio::awaitable<void> refuse(boost::beast::tcp_stream stream);

    boost::asio::io_context& io_;
    boost::asio::ip::tcp::acceptor acceptor_;
    ServerLimits limits_;
    RequestHandler handler_;
    std::string name_;
    std::shared_ptr<const ListenerTls> tls_;  // null: plain HTTP
    std::atomic<bool> stopping_{false};
    std::atomic<std::size_t> refusing_{0};  // connections over the cap being answered 503
    mutable std::mutex mutex_;
    std::unordered_set<std::shared_ptr<Connection>> connections_;
};

}  // namespace fluxrelay
