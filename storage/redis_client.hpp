// A small asynchronous Redis client for the Redis spool: commands written as RESP over an Asio
// socket, pipelined, replies parsed by hiredis' reader. Never blocks: every step is an async
// operation on the connection's executor, which must be single-threaded (one io_context thread).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "core/duration.hpp"

namespace fluxrelay {

// One reply, copied out of hiredis' reply object.
struct RedisReply {
    enum class Type { string, array, integer, nil, status, error };
    Type type = Type::nil;
    std::string text;  // string, status and error replies
    long long integer = 0;
    std::vector<RedisReply> elements;

    bool isError() const { return type == Type::error; }
    bool isNil() const { return type == Type::nil; }
    // A string or status as text; an integer in decimal; nullopt otherwise.
    std::optional<std::string> string() const;
};

// A failed command: Redis' error reply, or the connection's failure.
class RedisError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Where and how to connect (storage.redis.url and its credentials).
struct RedisEndpoint {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    int database = 0;
    std::string username;
    std::string password;
    Duration timeout = std::chrono::seconds(5);  // connecting, and any reply
};

// One connection. Commands may be issued by several coroutines at once: they are pipelined and
// their replies matched in order. Once closed it stays closed; a new one is made to reconnect.
class RedisConnection : public std::enable_shared_from_this<RedisConnection> {
public:
    static std::shared_ptr<RedisConnection> create(boost::asio::any_io_executor executor, RedisEndpoint endpoint);
    virtual ~RedisConnection() = default;

    // Connects, authenticates and selects the database; empty on success, else why not.
    virtual boost::asio::awaitable<std::string> connect() = 0;
    // Every reply, in order; a reply may be an error. Throws RedisError when the connection fails.
    virtual boost::asio::awaitable<std::vector<RedisReply>> pipeline(
        std::vector<std::vector<std::string>> commands) = 0;
    // One command's reply; throws RedisError when the connection fails or Redis answers an error.
    boost::asio::awaitable<RedisReply> command(std::vector<std::string> args);

    virtual bool open() const = 0;
    // Fails every command waiting for a reply; `why` is their error.
    virtual void close(const std::string& why) = 0;
    // Called once, on the executor, when the connection closes for whatever reason.
    virtual void onClose(std::function<void(const std::string& why)> listener) = 0;
};

// The RESP form of one command (an array of bulk strings).
std::string encodeRedisCommand(const std::vector<std::string>& args);

}  // namespace fluxrelay
