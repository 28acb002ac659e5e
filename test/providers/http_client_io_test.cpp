// The HTTP client against a server of ours on loopback: keep-alive reuse, the request as sent,
// and a deadline that ends a silent exchange.
#include "providers/http_client.hpp"

#include <atomic>
#include <chrono>
#include <string>

#include <doctest/doctest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include "gateway/server.hpp"

namespace fluxrelay {

namespace {

namespace asio = boost::asio;

struct Exchange {
    HttpResult first;
    HttpResult second;
};

}  // namespace

TEST_CASE("http client: two requests to one origin share one connection; headers and body arrive as built") {
    asio::io_context io;
    std::atomic<int> requests = 0;
    std::string seen;
    HttpServer server(
        io, Endpoint{"127.0.0.1", 0}, ServerLimits{},
        [&](HttpServerRequest& request) -> asio::awaitable<HttpServerResponse> {
            ++requests;
            seen = std::string(request.method_string()) + " " + std::string(request.target()) + " " +
                   std::string(request["X-Scope-OrgID"]) + " " + std::string(request[boost::beast::http::field::host]) +
                   " " + request.body();
            co_return jsonResponse(200, R"({"ok":true})");
        },
        "peer");
    server.start();
    const auto port = server.localEndpoint().port();
    HttpConnection connection(io.get_executor(), nullptr, true);
    HttpRequest request{.method = "POST",
                        .url = Url{.scheme = "http", .host = "127.0.0.1", .port = port, .target = "/api/v2/alerts?x=1"},
                        .headers = {{"X-Scope-OrgID", "home"}},
                        .body = "[]"};
    std::size_t openDuring = 0;
    auto exchange = asio::co_spawn(
        io,
        [&]() -> asio::awaitable<Exchange> {
            Exchange out;
            out.first = co_await connection.send(request, std::chrono::seconds(5));
            out.second = co_await connection.send(request, std::chrono::seconds(5));
            openDuring = server.openConnections();
            server.stop();
            co_return out;
        },
        asio::use_future);
    io.run();
    const Exchange result = exchange.get();
    REQUIRE(result.first.response.has_value());
    REQUIRE(result.second.response.has_value());
    CHECK(result.second.response->status == 200);
    CHECK(result.second.response->body == R"({"ok":true})");
    CHECK(requests == 2);
    CHECK(openDuring == 1);  // kept alive, not reconnected
    CHECK(seen == "POST /api/v2/alerts?x=1 home 127.0.0.1:" + std::to_string(port) + " []");
}

TEST_CASE("http client: a peer that does not answer within the timeout is an error that says so") {
    asio::io_context io;
    HttpServer server(
        io, Endpoint{"127.0.0.1", 0}, ServerLimits{},
        [](HttpServerRequest&) -> asio::awaitable<HttpServerResponse> {
            asio::steady_timer wait(co_await asio::this_coro::executor, std::chrono::seconds(2));
            co_await wait.async_wait(asio::use_awaitable);
            co_return jsonResponse(200, "");
        },
        "silent");
    server.start();
    HttpConnection connection(io.get_executor(), nullptr, true);
    const HttpRequest request{
        .method = "GET",
        .url = Url{.scheme = "http", .host = "127.0.0.1", .port = server.localEndpoint().port(), .target = "/"},
        .headers = {},
        .body = {}};
    auto answer = asio::co_spawn(
        io,
        [&]() -> asio::awaitable<HttpResult> {
            HttpResult result = co_await connection.send(request, std::chrono::milliseconds(100));
            server.stop();
            co_return result;
        },
        asio::use_future);
    io.run();
    const HttpResult result = answer.get();
    CHECK_FALSE(result.response.has_value());
    CHECK(result.error == "timeout after 100ms");
}

TEST_CASE("http client: a refused connection is an error naming the peer") {
    asio::io_context io;
    std::uint16_t closedPort = 0;
    {
        // A port that was just free: nothing listens on it now.
        HttpServer probe(
            io, Endpoint{"127.0.0.1", 0}, ServerLimits{},
            [](HttpServerRequest&) -> asio::awaitable<HttpServerResponse> { co_return jsonResponse(200, ""); },
            "probe");
        closedPort = probe.localEndpoint().port();
    }
    HttpConnection connection(io.get_executor(), nullptr, true);
    const HttpRequest request{.method = "GET",
                              .url = Url{.scheme = "http", .host = "127.0.0.1", .port = closedPort, .target = "/"},
                              .headers = {},
                              .body = {}};
    auto answer = asio::co_spawn(io, connection.send(request, std::chrono::seconds(2)), asio::use_future);
    io.run();
    const HttpResult result = answer.get();
    CHECK_FALSE(result.response.has_value());
    CHECK(result.error.starts_with("connect 127.0.0.1:" + std::to_string(closedPort) + ": "));
}

}  // namespace fluxrelay
