// A real redis-server for one test binary: on a free loopback port, its data in a temp folder,
// killed at the end. Tests use it to run the Redis spool against the real thing.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test/support/temp_dir.hpp"

extern char** environ;

namespace fluxrelay::test {

class RedisServer {
public:
    // redis-server on PATH or in /usr/bin; nullopt when neither has it.
    static std::optional<std::string> binary() {
        std::vector<std::string> dirs;
        if (const char* path = std::getenv("PATH")) {
            std::string all = path;
            for (std::size_t start = 0; start <= all.size();) {
                const std::size_t colon = std::min(all.find(':', start), all.size());
                dirs.push_back(all.substr(start, colon - start));
                start = colon + 1;
            }
        }
        dirs.push_back("/usr/bin");
        for (const auto& dir : dirs) {
            const std::string candidate = dir + "/redis-server";
            if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
        }
        return std::nullopt;
    }

    explicit RedisServer(bool appendOnly = false) : appendOnly_(appendOnly), port_(freePort()) { start(); }
    ~RedisServer() { kill(); }
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    std::uint16_t port() const { return port_; }
    std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }

    // Starts (again) on the same port and folder; returns once it answers PING.
    void start() {
        const auto path = binary();
        if (!path) throw std::runtime_error("redis-server not found (scripts/install-deps.sh installs it)");
        std::vector<std::string> args = {*path,       "--port",       std::to_string(port_),      "--bind",
                                         "127.0.0.1", "--dir",        dir_.path().string(),       "--save",
                                         "",          "--appendonly", appendOnly_ ? "yes" : "no", "--daemonize",
                                         "no",        "--logfile",    dir_.file("redis.log")};
        // With everysec, Redis postpones the AOF write while the last fsync still runs (a busy disk) and
        // replies anyway; a SIGKILL then loses acknowledged writes. Tests that kill Redis and expect
        // every acknowledged write back need the write before the reply, which only always guarantees.
        if (appendOnly_) args.insert(args.end(), {"--appendfsync", "always"});
        std::vector<char*> argv;
        for (auto& arg : args) argv.push_back(arg.data());
        argv.push_back(nullptr);
        if (posix_spawn(&pid_, path->c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
            throw std::runtime_error("cannot start redis-server");
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (!answers()) {
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("redis-server exited at start-up; see " + dir_.file("redis.log"));
            }
            if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("redis-server did not answer");
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }

    // SIGKILL, as a crash would.
    void kill() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        int status = 0;
        waitpid(pid_, &status, 0);
        pid_ = -1;
    }

private:
    static std::uint16_t freePort() {
        const int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof address;
        if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
            getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
            if (fd >= 0) close(fd);
            throw std::runtime_error("no free port");
        }
        close(fd);
        return ntohs(address.sin_port);
    }

    bool answers() const {
        const int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) return false;
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = htons(port_);
        bool ok = false;
        if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
            const char ping[] = "PING\r\n";
            char reply[16] = {};
            ok = write(fd, ping, sizeof ping - 1) == static_cast<ssize_t>(sizeof ping - 1) &&
                 read(fd, reply, sizeof reply - 1) > 0 && std::strncmp(reply, "+PONG", 5) == 0;
        }
        close(fd);
        return ok;
    }

    TempDir dir_;
    bool appendOnly_;
    std::uint16_t port_;
    pid_t pid_ = -1;
};

}  // namespace fluxrelay::test
