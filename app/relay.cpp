// Relay wiring: everything is built from one config at start; SIGTERM drains and exits.
#include "app/relay.hpp"

#include <atomic>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "admin/admin.hpp"
#include "config/loader.hpp"
#include "gateway/ingest.hpp"
#include "gateway/server.hpp"
#include "providers/dispatcher.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {

namespace asio = boost::asio;

namespace {

// The config in force; a reload will build a new one and swap it here.
class ConfigHolder {
public:
    explicit ConfigHolder(ConfigPtr config) : config_(std::move(config)) {}
    ConfigPtr get() const { return config_.load(); }

private:
    std::atomic<ConfigPtr> config_;
};

// Stop accepting, let requests in progress be answered, then let deliveries in flight settle.
asio::awaitable<void> shutDown(HttpServer& ingest, HttpServer& admin, Dispatcher& dispatcher) {
    ingest.stop();
    admin.stop();
    asio::steady_timer poll(co_await asio::this_coro::executor);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (ingest.openConnections() + admin.openConnections() > 0 && std::chrono::steady_clock::now() < deadline) {
        poll.expires_after(std::chrono::milliseconds(20));
        co_await poll.async_wait(asio::use_awaitable);
    }
    co_await dispatcher.stop();
}

}  // namespace

int runRelay(const std::string& configPath) {
    ConfigPtr initial;
    try {
        initial = loadConfigFile(configPath);
    } catch (const ConfigError& error) {
        for (const auto& diagnostic : error.diagnostics()) {
            spdlog::error("invalid config: {}", diagnostic.toString());
        }
        return 1;
    }
    if (initial->server.tls) {
        spdlog::error("server.tls is not available in this build yet; terminate TLS in front of fluxrelay");
        return 1;
    }

    ConfigHolder holder(initial);
    auto currentConfig = [&holder] { return holder.get(); };
    asio::io_context io(initial->server.ioThreads);
    auto storage = makeMemoryStorage(initial->storage.maxQueuedDeliveries);
    Ingest ingest(currentConfig, *storage);
    Admin admin(currentConfig, *storage);

    std::unique_ptr<Dispatcher> dispatcher;
    std::unique_ptr<HttpServer> ingestServer;
    std::unique_ptr<HttpServer> adminServer;
    try {
        dispatcher = std::make_unique<Dispatcher>(io, *storage, *initial);
        ServerLimits ingestLimits{.maxBodyBytes = initial->server.maxBodyBytes};
        ingestServer = std::make_unique<HttpServer>(
            io, initial->server.listen, ingestLimits,
            [&ingest](HttpServerRequest& request) { return ingest.handle(request); }, "ingest");
        adminServer = std::make_unique<HttpServer>(
            io, initial->admin.listen, ServerLimits{.maxBodyBytes = 64 * 1024},
            [&admin](HttpServerRequest& request) { return admin.handle(request); }, "admin");
    } catch (const std::exception& error) {
        spdlog::error("cannot start: {}", error.what());
        return 1;
    }

    dispatcher->start();
    ingestServer->start();
    adminServer->start();

    asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](const boost::system::error_code& error, int signal) {
        if (error) {
            return;
        }
        spdlog::info("signal {} received, shutting down", signal);
        asio::co_spawn(io, shutDown(*ingestServer, *adminServer, *dispatcher), [&io](std::exception_ptr) { io.stop(); });
    });

    std::vector<std::jthread> threads;
    for (int i = 1; i < initial->server.ioThreads; ++i) {
        threads.emplace_back([&io] { io.run(); });
    }
    io.run();
    for (auto& thread : threads) {
        thread.join();
    }
    spdlog::info("stopped");
    return 0;
}

}  // namespace fluxrelay
