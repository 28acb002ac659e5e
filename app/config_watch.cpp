// inotify read through an Asio stream descriptor; a short quiet period folds a burst of events.
#include "app/config_watch.hpp"

#include <sys/inotify.h>
#include <unistd.h>

#include <array>
#include <filesystem>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace fluxrelay {

namespace asio = boost::asio;

struct ConfigWatch::State : std::enable_shared_from_this<State> {
    State(asio::any_io_executor executor) : descriptor(executor), quiet(executor) {}

    asio::posix::stream_descriptor descriptor;
    asio::steady_timer quiet;
    std::function<void()> changed;
    bool stopped = false;

    asio::awaitable<void> watch() {
        auto self = shared_from_this();
        std::array<char, 4096> buffer;
        while (!stopped) {
            auto [error, n] =
                co_await descriptor.async_read_some(asio::buffer(buffer), asio::as_tuple(asio::use_awaitable));
            if (error) {
                break;
            }
            // Editors and ConfigMap updates touch several files in a row: act once they settle.
            quiet.expires_after(std::chrono::milliseconds(200));
            quiet.async_wait([self](const boost::system::error_code& waitError) {
                if (!waitError && !self->stopped) {
                    self->changed();
                }
            });
        }
    }
};

ConfigWatch::ConfigWatch(asio::any_io_executor executor, const std::string& configPath, std::function<void()> changed)
    : state_(std::make_shared<State>(executor)) {
    state_->changed = std::move(changed);
    const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
        spdlog::warn("config file changes are not watched (inotify unavailable); reload with SIGHUP");
        return;
    }
    const auto folder = std::filesystem::absolute(configPath).parent_path();
    if (inotify_add_watch(fd, folder.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE) < 0) {
        spdlog::warn("cannot watch {} for config changes; reload with SIGHUP", folder.string());
        close(fd);
        return;
    }
    state_->descriptor.assign(fd);
    asio::co_spawn(executor, state_->watch(), asio::detached);
}

ConfigWatch::~ConfigWatch() { stop(); }

void ConfigWatch::stop() {
    asio::post(state_->descriptor.get_executor(), [state = state_] {
        state->stopped = true;
        boost::system::error_code ignored;
        state->descriptor.close(ignored);
        state->quiet.cancel();
    });
}

}  // namespace fluxrelay
