// Server-side TLS of a listener: the OpenSSL context built from certFile/keyFile/clientCAFile, and
// built again when those files change on disk, so a rotated certificate reaches new connections
// without a restart.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace boost::asio::ssl {
class context;
}

namespace fluxrelay {

// TLS 1.2 and 1.3 only; for 1.2 only ECDHE key exchange with AEAD ciphers, 1.3 keeps OpenSSL's
// suites (all AEAD). With clientCAFile, a client must present a certificate that CA signed.
// Throws std::runtime_error naming the file that cannot be used.
std::shared_ptr<boost::asio::ssl::context> makeServerTlsContext(const ServerTls& settings);

class ListenerTls {
public:
    // Loads the files at once: a start-up error throws, naming the listener and the file.
    ListenerTls(std::string listener, ServerTls settings);
    ~ListenerTls();
    ListenerTls(const ListenerTls&) = delete;
    ListenerTls& operator=(const ListenerTls&) = delete;

    // The context for the next handshake; any thread.
    std::shared_ptr<boost::asio::ssl::context> current() const;

    // Builds a new context when the files changed since the last load (a new inode, mtime or
    // size, as a rename-over or a Kubernetes Secret's symlink swap makes), or always when
    // `force`, and swaps it in. Files that cannot be used are logged once per change, and the
    // previous context keeps serving. Blocking file I/O: never call it on an io thread.
    void refresh(bool force = false);

    // File names from a reloaded config, loaded by the next refresh().
    void reconfigure(ServerTls settings);

    // What the files looked like when read: a change of any of these is a change of the file.
    struct FileStamp {
        std::uint64_t device = 0;
        std::uint64_t inode = 0;
        std::int64_t modifiedNs = 0;
        std::int64_t size = -1;  // -1: missing or unreadable

        bool operator==(const FileStamp&) const = default;
    };

private:
    std::vector<FileStamp> stamps() const;

    const std::string listener_;
    std::mutex mutex_;  // settings_ and the stamps: refresh() and reconfigure() may come from two threads
    ServerTls settings_;
    std::vector<FileStamp> loaded_;  // of the files behind current_
    std::vector<FileStamp> failed_;  // of files already reported as unusable
    std::atomic<std::shared_ptr<boost::asio::ssl::context>> current_;
};

}  // namespace fluxrelay
