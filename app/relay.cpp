// Relay wiring: everything is built from one config at start; SIGHUP or a change of the file
// reloads it off the io threads and swaps it in; SIGTERM drains and exits.
#include "app/relay.hpp"

#include <atomic>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "admin/admin.hpp"
#include "admin/shared_journal.hpp"
#include "admin/telemetry.hpp"
#include "app/config_watch.hpp"
#include "config/loader.hpp"
#include "gateway/ingest.hpp"
#include "gateway/server.hpp"
#include "gateway/tls.hpp"
#include "providers/dispatcher.hpp"
#include "providers/provider.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {

namespace asio = boost::asio;

namespace {

void logDiagnostics(const ConfigError& error, std::string_view what) {
    for (const auto& diagnostic : error.diagnostics()) {
        spdlog::error("{}: {}", what, diagnostic.toString());
    }
}

// Each connection is a descriptor: as Go does, lift the soft limit to the hard one (the soft default
// of 1024 is lower than one listener's default cap), and say so when even that is too low.
void raiseOpenFileLimit(const ServerConfig& server) {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return;
    }
    if (limit.rlim_cur < limit.rlim_max) {
        rlimit raised = limit;
        raised.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
            limit = raised;
        }
    }
    // Both listeners full, plus the spool, outbound connections and the like.
    const rlim_t wanted = 2 * static_cast<rlim_t>(server.maxConnections) + 256;
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < wanted) {
        spdlog::warn(
            "open-file limit is {}, below the {} that server.maxConnections {} may need; lower it or raise the "
            "limit (ulimit -n)",
            limit.rlim_cur, wanted, server.maxConnections);
    }
}

// Both listeners take the connection cap and deadlines of `server`; the admin API's bodies are small.
ServerLimits serverLimits(const ServerConfig& server, std::size_t maxBodyBytes) {
    return ServerLimits{.maxBodyBytes = maxBodyBytes,
                        .readTimeout = server.readTimeout,
                        .idleTimeout = server.idleTimeout,
                        .writeTimeout = server.writeTimeout,
                        .maxConnections = server.maxConnections};
}

void logWarnings(const Config& config) {
    for (const auto& warning : config.warnings) {
        spdlog::warn("config: {}", warning);
    }
    for (const auto& warning : shadowedHeaderWarnings(config)) {
        spdlog::warn("config: {}", warning);
    }
}

// Settings bound at start (sockets, storage, threads): a reload cannot change them.
void warnAboutRestartOnlyChanges(const Config& running, const Config& loaded) {
    if (!(running.server.listen == loaded.server.listen) || !(running.admin.listen == loaded.admin.listen) ||
        running.server.ioThreads != loaded.server.ioThreads ||
        running.server.maxBodyBytes != loaded.server.maxBodyBytes ||
        running.server.maxConnections != loaded.server.maxConnections ||
        running.server.readTimeout != loaded.server.readTimeout ||
        running.server.idleTimeout != loaded.server.idleTimeout ||
        running.server.writeTimeout != loaded.server.writeTimeout ||
        running.server.tls.has_value() != loaded.server.tls.has_value() ||
        running.admin.tls.has_value() != loaded.admin.tls.has_value() || running.storage.path != loaded.storage.path ||
        running.storage.redis != loaded.storage.redis) {
        spdlog::warn("config reload: changes to server, admin.listen or storage take effect at the next restart");
    }
}

class Relay {
public:
    Relay(std::string configPath, ConfigPtr initial)
        : configPath_(std::move(configPath)),
          config_(initial),
          io_(initial->server.ioThreads),
          control_(asio::make_strand(io_)),
          storage_(makeStorage(initial->storage)),
          ingest_([this] { return config(); }, *storage_, telemetry_),
          admin_([this] { return config(); }, *storage_, telemetry_, [this] { return dispatcher_->health(); }),
          signals_(io_, SIGTERM, SIGINT),
          reloadSignal_(io_, SIGHUP) {
        // Start-up errors throw from here, before anything listens.
        raiseOpenFileLimit(initial->server);
        // Replicas behind one Service show one history, whichever of them a user's browser reaches.
        if (storage_->sharesJournal()) telemetry_.journal().shareThrough(journalRecords_);
        dispatcher_ = std::make_unique<Dispatcher>(io_, *storage_, *initial, telemetry_);
        if (initial->server.tls) {
            ingestTls_ = std::make_shared<ListenerTls>("ingest", *initial->server.tls);
        }
        if (initial->admin.tls) {
            adminTls_ = std::make_shared<ListenerTls>("admin", *initial->admin.tls);
        }
        ingestServer_ = std::make_unique<HttpServer>(
            io_, initial->server.listen, serverLimits(initial->server, initial->server.maxBodyBytes),
            [this](HttpServerRequest& request) { return ingest_.handle(request); }, "ingest", ingestTls_);
        adminServer_ = std::make_unique<HttpServer>(
            io_, initial->admin.listen, serverLimits(initial->server, 64 * 1024),
            [this](HttpServerRequest& request) { return admin_.handle(request); }, "admin", adminTls_);
    }

    int run() {
        dispatcher_->start();
        ingestServer_->start();
        adminServer_->start();
        watch_ = std::make_unique<ConfigWatch>(control_, configPath_, [this] { requestReload("config file changed"); });
        awaitReloadSignal();
        if (ingestTls_ || adminTls_) {
            asio::co_spawn(blocking_, watchTlsFiles(), asio::detached);
        }
        signals_.async_wait([this](const boost::system::error_code& error, int signal) {
            if (!error) {
                spdlog::info("signal {} received, shutting down", signal);
                asio::co_spawn(control_, shutDown(), [this](std::exception_ptr) { io_.stop(); });
            }
        });

        std::vector<std::jthread> threads;
        for (int i = 1; i < config()->server.ioThreads; ++i) {
            threads.emplace_back([this] { io_.run(); });
        }
        io_.run();
        for (auto& thread : threads) {
            thread.join();
        }
        blocking_.join();
        spdlog::info("stopped");
        return 0;
    }

private:
    ConfigPtr config() const { return config_.load(); }

    void awaitReloadSignal() {
        reloadSignal_.async_wait([this](const boost::system::error_code& error, int) {
            if (!error) {
                requestReload("SIGHUP");
                awaitReloadSignal();
            }
        });
    }

    // One reload at a time; a request during one is folded into a single follow-up.
    void requestReload(std::string why) {
        asio::post(control_, [this, why = std::move(why)] {
            if (reloading_) {
                reloadAgain_ = true;
                return;
            }
            reloading_ = true;
            asio::co_spawn(control_, reload(why), asio::detached);
        });
    }

    asio::awaitable<void> reload(std::string why) {
        do {
            reloadAgain_ = false;
            spdlog::info("reloading config ({})", why);
            // Reading and validating touch the disk: not on an io thread.
            auto loaded = co_await asio::co_spawn(blocking_, loadOffThread(configPath_), asio::use_awaitable);
            if (!loaded) {
                telemetry_.metrics().setConfigReload(false, Clock::now());
                continue;
            }
            if (auto error = co_await dispatcher_->reconfigure(*loaded); !error.empty()) {
                spdlog::error("config reload rejected, the old config keeps serving: {}", error);
                telemetry_.metrics().setConfigReload(false, Clock::now());
                continue;
            }
            warnAboutRestartOnlyChanges(*config(), *loaded);
            logWarnings(*loaded);
            config_.store(loaded);
            co_await asio::co_spawn(blocking_, reloadTls(loaded), asio::use_awaitable);
            telemetry_.metrics().setConfigReload(true, Clock::now());
            spdlog::info("config reloaded: {} sources, {} targets, {} routes", loaded->sources.size(),
                         loaded->targets.size(), loaded->routes.size());
        } while (reloadAgain_);
        reloading_ = false;
    }

    static asio::awaitable<ConfigPtr> loadOffThread(std::string path) {
        try {
            co_return loadConfigFile(path);
        } catch (const ConfigError& error) {
            logDiagnostics(error, "config reload rejected, the old config keeps serving");
        }
        co_return nullptr;
    }

    // A rotated certificate (cert-manager, an updated Secret) is picked up within a few seconds.
    // On the blocking thread: stat() and reading PEM files are file I/O.
    asio::awaitable<void> watchTlsFiles() {
        while (!tlsWatchStopped_) {
            tlsWatchTimer_.expires_after(kTlsFilesCheckInterval);
            auto [error] = co_await tlsWatchTimer_.async_wait(asio::as_tuple(asio::use_awaitable));
            if (error || tlsWatchStopped_) {
                break;
            }
            for (ListenerTls* tls : {ingestTls_.get(), adminTls_.get()}) {
                if (tls != nullptr) {
                    tls->refresh();
                }
            }
        }
    }

    // A reload may name other files (turning TLS on or off needs a restart), and reads them all
    // again, so SIGHUP also forces a certificate reload.
    asio::awaitable<void> reloadTls(ConfigPtr loaded) {
        if (ingestTls_ && loaded->server.tls) {
            ingestTls_->reconfigure(*loaded->server.tls);
            ingestTls_->refresh(true);
        }
        if (adminTls_ && loaded->admin.tls) {
            adminTls_->reconfigure(*loaded->admin.tls);
            adminTls_->refresh(true);
        }
        co_return;
    }

    // Stop accepting, let requests in progress be answered, then let deliveries in flight settle.
    asio::awaitable<void> shutDown() {
        // The watch's pending wait would keep the blocking pool, and so run(), from finishing.
        tlsWatchStopped_ = true;
        asio::post(blocking_, [this] { tlsWatchTimer_.cancel(); });
        reloadSignal_.cancel();
        watch_->stop();
        ingestServer_->stop();
        adminServer_->stop();
        asio::steady_timer poll(co_await asio::this_coro::executor);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (ingestServer_->openConnections() + adminServer_->openConnections() > 0 &&
               std::chrono::steady_clock::now() < deadline) {
            poll.expires_after(std::chrono::milliseconds(20));
            co_await poll.async_wait(asio::use_awaitable);
        }
        co_await dispatcher_->stop();
    }

    const std::string configPath_;
    std::atomic<ConfigPtr> config_;
    asio::io_context io_;
    asio::strand<asio::io_context::executor_type> control_;  // reloads and shutdown
    asio::thread_pool blocking_{1};                          // config files and YAML, TLS files
    static constexpr auto kTlsFilesCheckInterval = std::chrono::seconds(1);
    asio::steady_timer tlsWatchTimer_{blocking_};  // used on blocking_ only
    std::atomic<bool> tlsWatchStopped_{false};
    std::unique_ptr<Storage> storage_;
    SpoolJournalRecords journalRecords_{*storage_};
    Telemetry telemetry_;
    Ingest ingest_;
    Admin admin_;
    std::unique_ptr<Dispatcher> dispatcher_;
    std::shared_ptr<ListenerTls> ingestTls_;  // null: plain HTTP
    std::shared_ptr<ListenerTls> adminTls_;
    std::unique_ptr<HttpServer> ingestServer_;
    std::unique_ptr<HttpServer> adminServer_;
    std::unique_ptr<ConfigWatch> watch_;
    asio::signal_set signals_;
    asio::signal_set reloadSignal_;
    bool reloading_ = false;  // on control_
    bool reloadAgain_ = false;
};

}  // namespace

int runRelay(const std::string& configPath) {
    ConfigPtr initial;
    try {
        initial = loadConfigFile(configPath);
    } catch (const ConfigError& error) {
        logDiagnostics(error, "invalid config");
        return 1;
    }
    logWarnings(*initial);
    std::unique_ptr<Relay> relay;
    try {
        relay = std::make_unique<Relay>(configPath, initial);
    } catch (const std::exception& error) {
        spdlog::error("cannot start: {}", error.what());
        return 1;
    }
    return relay->run();
}

}  // namespace fluxrelay
