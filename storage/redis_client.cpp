// The Redis spool's connection: RESP written by hand, replies parsed by hiredis' reader, all I/O
// asynchronous on one single-threaded executor.
#include "storage/redis_client.hpp"

#include <hiredis.h>

#include <array>
#include <chrono>
#include <deque>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace fluxrelay {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

RedisReply copyReply(const redisReply& reply) {
    RedisReply out;
    switch (reply.type) {
        case REDIS_REPLY_STRING:
            out.type = RedisReply::Type::string;
            out.text.assign(reply.str, reply.len);
            break;
        case REDIS_REPLY_STATUS:
            out.type = RedisReply::Type::status;
            out.text.assign(reply.str, reply.len);
            break;
        case REDIS_REPLY_ERROR:
            out.type = RedisReply::Type::error;
            out.text.assign(reply.str, reply.len);
            break;
        case REDIS_REPLY_INTEGER:
            out.type = RedisReply::Type::integer;
            out.integer = reply.integer;
            break;
        case REDIS_REPLY_ARRAY:
            out.type = RedisReply::Type::array;
            out.elements.reserve(reply.elements);
            for (std::size_t i = 0; i < reply.elements; ++i) out.elements.push_back(copyReply(*reply.element[i]));
            break;
        default:
            out.type = RedisReply::Type::nil;
            break;
    }
    return out;
}

struct ReaderDeleter {
    void operator()(redisReader* reader) const { redisReaderFree(reader); }
};
struct ReplyDeleter {
    void operator()(void* reply) const { freeReplyObject(reply); }
};

class Connection final : public RedisConnection {
public:
    Connection(asio::any_io_executor executor, RedisEndpoint endpoint)
        : executor_(executor),
          endpoint_(std::move(endpoint)),
          socket_(executor),
          watchdog_(executor),
          reader_(redisReaderCreate()) {}

    asio::awaitable<std::string> connect() override {
        auto self = std::static_pointer_cast<Connection>(shared_from_this());
        // One deadline for resolving and connecting: the socket and resolver are cancelled at it.
        tcp::resolver resolver(executor_);
        asio::steady_timer deadline(executor_);
        deadline.expires_after(endpoint_.timeout);
        bool timedOut = false;
        deadline.async_wait([&](boost::system::error_code error) {
            if (error) return;
            timedOut = true;
            resolver.cancel();
            boost::system::error_code ignored;
            socket_.close(ignored);
        });
        auto [resolveError, results] = co_await resolver.async_resolve(endpoint_.host, std::to_string(endpoint_.port),
                                                                       asio::as_tuple(asio::use_awaitable));
        if (resolveError) {
            deadline.cancel();
            co_return "cannot resolve " + endpoint_.host + ": " + (timedOut ? "timed out" : resolveError.message());
        }
        auto [connectError, ignoredEndpoint] =
            co_await asio::async_connect(socket_, results, asio::as_tuple(asio::use_awaitable));
        deadline.cancel();
        const std::string where = endpoint_.host + ":" + std::to_string(endpoint_.port);
        if (connectError || timedOut) {
            co_return "cannot connect to " + where + ": " + (timedOut ? "timed out" : connectError.message());
        }
        socket_.set_option(tcp::no_delay(true));
        open_ = true;
        asio::co_spawn(executor_, self->readLoop(), asio::detached);
        asio::co_spawn(executor_, self->watch(), asio::detached);

        std::vector<std::vector<std::string>> hello;
        if (!endpoint_.password.empty()) {
            if (endpoint_.username.empty()) {
                hello.push_back({"AUTH", endpoint_.password});
            } else {
                hello.push_back({"AUTH", endpoint_.username, endpoint_.password});
            }
        }
        if (endpoint_.database != 0) hello.push_back({"SELECT", std::to_string(endpoint_.database)});
        hello.push_back({"PING"});
        try {
            const auto replies = co_await pipeline(std::move(hello));
            for (const auto& reply : replies) {
                if (reply.isError()) {
                    close(reply.text);
                    co_return where + ": " + reply.text;
                }
            }
        } catch (const RedisError& error) {
            co_return where + ": " + error.what();
        }
        co_return std::string();
    }

    asio::awaitable<std::vector<RedisReply>> pipeline(std::vector<std::vector<std::string>> commands) override {
        auto self = shared_from_this();
        auto [why, replies] =
            co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(std::string, std::vector<RedisReply>)>(
                [this](auto handler, std::vector<std::vector<std::string>> commands) {
                    enqueue(std::move(commands), std::move(handler));
                },
                asio::use_awaitable, std::move(commands));
        if (!why.empty()) throw RedisError(why);
        co_return std::move(replies);
    }

    bool open() const override { return open_; }

    void close(const std::string& why) override {
        if (!open_ && closed_) return;
        open_ = false;
        boost::system::error_code ignored;
        socket_.close(ignored);
        watchdog_.cancel();
        auto batches = std::exchange(batches_, {});
        for (auto& batch : batches) {
            asio::post(executor_, [handler = std::move(batch.handler), why]() mutable { handler(why, {}); });
        }
        if (!closed_) {
            closed_ = true;
            if (listener_) asio::post(executor_, [listener = std::move(listener_), why] { listener(why); });
        }
    }

    void onClose(std::function<void(const std::string&)> listener) override { listener_ = std::move(listener); }

private:
    using Handler = std::function<void(std::string, std::vector<RedisReply>)>;

    // Commands sent together, answered together.
    struct Batch {
        std::size_t expected = 0;
        std::vector<RedisReply> replies;
        Handler handler;
        SteadyClock::time_point sent;
    };

    template <class CompletionHandler>
    void enqueue(std::vector<std::vector<std::string>> commands, CompletionHandler&& handler) {
        // The handler is move-only; std::function needs a copyable callable.
        auto shared = std::make_shared<std::decay_t<CompletionHandler>>(std::forward<CompletionHandler>(handler));
        Handler callback = [shared](std::string why, std::vector<RedisReply> replies) {
            (*shared)(std::move(why), std::move(replies));
        };
        if (!open_) {
            asio::post(executor_, [callback = std::move(callback)] { callback("redis: not connected", {}); });
            return;
        }
        if (commands.empty()) {
            asio::post(executor_, [callback = std::move(callback)] { callback({}, {}); });
            return;
        }
        for (const auto& command : commands) outgoing_ += encodeRedisCommand(command);
        batches_.push_back(Batch{
            .expected = commands.size(), .replies = {}, .handler = std::move(callback), .sent = SteadyClock::now()});
        flush();
    }

    void flush() {
        if (writing_ || outgoing_.empty() || !open_) return;
        writing_ = true;
        auto buffer = std::make_shared<std::string>(std::exchange(outgoing_, {}));
        asio::async_write(socket_, asio::buffer(*buffer),
                          [self = shared_from_this(), this, buffer](boost::system::error_code error, std::size_t) {
                              writing_ = false;
                              if (error) {
                                  close("redis: write failed: " + error.message());
                                  return;
                              }
                              flush();
                          });
    }

    asio::awaitable<void> readLoop() {
        auto self = shared_from_this();
        std::array<char, 16384> buffer;
        while (open_) {
            auto [error, read] =
                co_await socket_.async_read_some(asio::buffer(buffer), asio::as_tuple(asio::use_awaitable));
            if (error) {
                close(error == asio::error::eof ? "redis: connection closed by the server"
                                                : "redis: read failed: " + error.message());
                co_return;
            }
            if (redisReaderFeed(reader_.get(), buffer.data(), read) != REDIS_OK) {
                close(std::string("redis: unreadable reply: ") + reader_->errstr);
                co_return;
            }
            for (;;) {
                void* raw = nullptr;
                if (redisReaderGetReply(reader_.get(), &raw) != REDIS_OK) {
                    close(std::string("redis: unreadable reply: ") + reader_->errstr);
                    co_return;
                }
                if (raw == nullptr) break;
                std::unique_ptr<void, ReplyDeleter> owned(raw);
                if (batches_.empty()) {
                    close("redis: a reply nobody asked for");
                    co_return;
                }
                Batch& batch = batches_.front();
                batch.replies.push_back(copyReply(*static_cast<redisReply*>(raw)));
                if (batch.replies.size() == batch.expected) {
                    Batch done = std::move(batch);
                    batches_.pop_front();
                    if (!batches_.empty()) batches_.front().sent = SteadyClock::now();
                    // Not inline: the caller resumes outside this loop.
                    asio::post(executor_,
                               [handler = std::move(done.handler), replies = std::move(done.replies)]() mutable {
                                   handler({}, std::move(replies));
                               });
                }
            }
        }
    }

    // A Redis that stops answering fails the connection instead of holding callers forever.
    asio::awaitable<void> watch() {
        auto self = shared_from_this();
        const auto tick = std::max<Duration>(std::chrono::milliseconds(100), endpoint_.timeout / 4);
        while (open_) {
            watchdog_.expires_after(tick);
            co_await watchdog_.async_wait(asio::as_tuple(asio::use_awaitable));
            if (!open_) co_return;
            if (!batches_.empty() && SteadyClock::now() - batches_.front().sent > endpoint_.timeout) {
                close("redis: no reply within " + formatDuration(endpoint_.timeout));
                co_return;
            }
        }
    }

    asio::any_io_executor executor_;
    RedisEndpoint endpoint_;
    tcp::socket socket_;
    asio::steady_timer watchdog_;
    std::unique_ptr<redisReader, ReaderDeleter> reader_;
    bool open_ = false;
    bool closed_ = false;
    bool writing_ = false;
    std::string outgoing_;
    std::deque<Batch> batches_;
    std::function<void(const std::string&)> listener_;
};

}  // namespace

std::optional<std::string> RedisReply::string() const {
    switch (type) {
        case Type::string:
        case Type::status:
            return text;
        case Type::integer:
            return std::to_string(integer);
        default:
            return std::nullopt;
    }
}

std::string encodeRedisCommand(const std::vector<std::string>& args) {
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& arg : args) {
        out += "$" + std::to_string(arg.size()) + "\r\n";
        out += arg;
        out += "\r\n";
    }
    return out;
}

std::shared_ptr<RedisConnection> RedisConnection::create(boost::asio::any_io_executor executor,
                                                         RedisEndpoint endpoint) {
    return std::make_shared<Connection>(std::move(executor), std::move(endpoint));
}

boost::asio::awaitable<RedisReply> RedisConnection::command(std::vector<std::string> args) {
    std::vector<std::vector<std::string>> commands;
    commands.push_back(std::move(args));
    auto replies = co_await pipeline(std::move(commands));
    if (replies.size() != 1) throw RedisError("redis: no reply");
    if (replies[0].isError()) throw RedisError("redis: " + replies[0].text);
    co_return std::move(replies[0]);
}

}  // namespace fluxrelay
