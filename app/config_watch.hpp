// Notices when the config file changes: inotify on its folder, so an editor's rename-over and a
// Kubernetes ConfigMap's symlink swap are seen as well as a plain write.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>

namespace fluxrelay {

class ConfigWatch {
public:
    // Calls `changed` (on `executor`) after the file's folder saw a change that may concern it,
    // once per burst of changes. Logs and watches nothing when inotify is unavailable.
    ConfigWatch(boost::asio::any_io_executor executor, const std::string& configPath, std::function<void()> changed);
    ~ConfigWatch();

    void stop();

private:
    struct State;
    std::shared_ptr<State> state_;
};

}  // namespace fluxrelay
