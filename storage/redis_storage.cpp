// The shared spool for several replicas: everything the SQLite spool holds, in one Redis
// that every replica uses. Keys, under storage.redis.keyPrefix (P):
//   P seq                 delivery id counter
//   P held                deliveries queued, leased or dead: the maxQueuedDeliveries bound
//   P targets             set of the targets that ever had a delivery
//   P d:<id>              hash: one delivery (route, target, event JSON, attempts, times, state)
//   P due:<target>        sorted set: deliveries waiting for their time (debounce, retry), score in µs
//   P q:<target>          stream of due deliveries, read by the consumer group "fluxrelay" in which
//                         each replica is a consumer; an entry is acknowledged and deleted when its
//                         delivery is settled, so the stream holds only work not yet done
//   P dead                stream: dead letters, newest last; P dead:<target> (set) counts them,
//                         P deadage (sorted set) ages them out after storage.retention
//   P idem:<key>          idempotency keys (GitHub delivery ids), with their window as expiry
//   P gate:<key>          dedup gate state, with its expiry
//   P co:<target>:<key>   debounce: the queued delivery a burst coalesces into
//   P kv:<key>            values (commit statuses posted, firing alerts), with their ttl
// An accept is one optimistic transaction: WATCH every key its decision reads, read them, decide
// with the same pure dedup functions as every spool, then MULTI ... EXEC; a nil EXEC (another
// replica wrote one of them first) decides again. The handler completes after EXEC's reply.
// Standalone Redis 7 (scripts name keys they derive from others' values: not for Redis Cluster).
#include "storage/redis_storage.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "core/observer.hpp"
#include "storage/accept.hpp"
#include "storage/completion.hpp"
#include "storage/redis_client.hpp"

namespace fluxrelay {
namespace {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kGroup = "fluxrelay";
// A consumer (a replica's name in a group) idle this long with nothing pending is removed.
constexpr long long kConsumerForgottenAfterMs = 24LL * 3600 * 1000;

// Moves deliveries that fell due from the schedule into the target's stream. A debounced one
// leaves its burst: later events start a new delivery.
// KEYS: due, stream. ARGV: now (µs), max, key prefix.
constexpr const char* kPromoteScript = R"lua(
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local d = ARGV[3] .. 'd:' .. id
  local co = redis.call('HGET', d, 'co')
  if co then
    if redis.call('GET', co) == id then redis.call('DEL', co) end
    redis.call('HDEL', d, 'co')
  end
  redis.call('XADD', KEYS[2], '*', 'id', id)
end
return #ids
)lua";

// The earliest scheduled delivery's due time (ns), or nil. KEYS: due. ARGV: key prefix.
constexpr const char* kNextDueScript = R"lua(
local first = redis.call('ZRANGE', KEYS[1], 0, 0)
if #first == 0 then return false end
return redis.call('HGET', ARGV[1] .. 'd:' .. first[1], 'next')
)lua";

// One settlement. Only the first settlement of a lease counts: once its stream entry is
// acknowledged (by this replica or one that took the lease over), later ones change nothing.
// KEYS: stream, delivery. ARGV: group, entry, kind, id, error, next (ns), next (µs), now (ns),
// now (µs), key prefix, target.
constexpr const char* kSettleScript = R"lua(
local q, d = KEYS[1], KEYS[2]
local prefix, target, id = ARGV[10], ARGV[11], ARGV[4]
if redis.call('XACK', q, ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', q, ARGV[2])
if redis.call('EXISTS', d) == 0 then return 0 end
local kind = ARGV[3]
if kind == 'release' then
  redis.call('ZADD', prefix .. 'due:' .. target, redis.call('HGET', d, 'score'), id)
  return 1
end
if kind == 'delivered' then
  redis.call('DEL', d)
  redis.call('DECR', prefix .. 'held')
  return 1
end
redis.call('HINCRBY', d, 'attempts', 1)
redis.call('HSET', d, 'lastError', ARGV[5])
if kind == 'retry' then
  redis.call('HSET', d, 'next', ARGV[6], 'score', ARGV[7])
  redis.call('ZADD', prefix .. 'due:' .. target, ARGV[7], id)
  return 1
end
local entry = redis.call('XADD', prefix .. 'dead', '*', 'id', id)
redis.call('HSET', d, 'state', 'dead', 'deadReason', ARGV[5], 'deadAt', ARGV[8], 'deadEntry', entry)
redis.call('SADD', prefix .. 'dead:' .. target, id)
redis.call('ZADD', prefix .. 'deadage', ARGV[9], id)
return 1
)lua";

// Lets go of failing-object records a read found expired or past the bound, unless another
// replica rewrote one meanwhile (the object failed again). KEYS: the hash. ARGV: field, value, ...
constexpr const char* kForgetObjectsScript = R"lua(
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 0
)lua";

// A dead letter back into its target's schedule, due now, with no attempts; its target, or nil.
// KEYS: delivery. ARGV: id, now (ns), now (µs), key prefix.
constexpr const char* kReplayScript = R"lua(
local d, id, prefix = KEYS[1], ARGV[1], ARGV[4]
if redis.call('HGET', d, 'state') ~= 'dead' then return false end
local target = redis.call('HGET', d, 'target')
local entry = redis.call('HGET', d, 'deadEntry')
if entry then redis.call('XDEL', prefix .. 'dead', entry) end
redis.call('SREM', prefix .. 'dead:' .. target, id)
redis.call('ZREM', prefix .. 'deadage', id)
redis.call('HDEL', d, 'deadReason', 'deadAt', 'deadEntry')
redis.call('HSET', d, 'state', 'queued', 'attempts', 0, 'created', ARGV[2], 'next', ARGV[2], 'score', ARGV[3])
redis.call('ZADD', prefix .. 'due:' .. target, ARGV[3], id)
return target
)lua";

// Renews this replica's leases (resets their idle time) where it still holds them, so that no
// other replica takes over a delivery in flight. KEYS: stream. ARGV: group, consumer, entries...
constexpr const char* kHeartbeatScript = R"lua(
local renewed = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    renewed = renewed + 1
  end
end
return renewed
)lua";

// Deletes a lease only while the token that took it still holds it: one that expired and was
// taken by another replica is theirs. KEYS: lease. ARGV: token.
constexpr const char* kReleaseLeaseScript = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua";

// Removes up to 500 dead letters that died before ARGV[1] (µs). KEYS: deadage. ARGV: cutoff, prefix.
constexpr const char* kPruneScript = R"lua(
local prefix = ARGV[2]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, id in ipairs(ids) do
  local d = prefix .. 'd:' .. id
  local target = redis.call('HGET', d, 'target')
  local entry = redis.call('HGET', d, 'deadEntry')
  if target then redis.call('SREM', prefix .. 'dead:' .. target, id) end
  if entry then redis.call('XDEL', prefix .. 'dead', entry) end
  if redis.call('DEL', d) == 1 then redis.call('DECR', prefix .. 'held') end
  redis.call('ZREM', KEYS[1], id)
end
return #ids
)lua";

// ---- Time in Redis: ns in hashes (exact round trip), µs as scores (exact in a double), ms for expiry.

std::string nanos(TimePoint time) {
    return std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count());
}

std::string micros(TimePoint time) {
    return std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch()).count());
}

TimePoint fromNanos(const std::string& text) {
    return TimePoint(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(std::stoll(text))));
}

// Rounded up: a key never expires before its time.
std::string expiryMillis(TimePoint time) {
    return std::to_string(std::chrono::ceil<std::chrono::milliseconds>(time.time_since_epoch()).count());
}

std::string millis(Duration duration) { return std::to_string(std::max<std::int64_t>(duration.count(), 1)); }

std::vector<std::string> command(std::initializer_list<std::string> head, const std::vector<std::string>& tail = {}) {
    std::vector<std::string> args(head);
    args.insert(args.end(), tail.begin(), tail.end());
    return args;
}

std::string consumerName() {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "replica");
    std::random_device random;
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, "%08x", random());
    return std::string(host) + "-" + std::to_string(getpid()) + "-" + suffix;
}

// HGETALL's flat field/value list as a map.
std::map<std::string, std::string> fieldsOf(const RedisReply& reply) {
    std::map<std::string, std::string> fields;
    for (std::size_t i = 0; i + 1 < reply.elements.size(); i += 2) {
        fields[reply.elements[i].text] = reply.elements[i + 1].text;
    }
    return fields;
}

void check(const RedisReply& reply) {
    if (reply.isError()) throw RedisError("redis: " + reply.text);
}

// One stream entry as [id, [field, value, ...]] → (entry id, delivery id).
std::optional<std::pair<std::string, std::string>> streamEntry(const RedisReply& entry) {
    if (entry.type != RedisReply::Type::array || entry.elements.size() < 2) return std::nullopt;
    const auto fields = fieldsOf(entry.elements[1]);
    const auto id = fields.find("id");
    if (id == fields.end()) return std::nullopt;
    return std::make_pair(entry.elements[0].text, id->second);
}

// An accept with its events already in storage form (serialised on the caller's thread).
struct PreparedAccept {
    AcceptRequest request;
    std::vector<std::string> routeBodies;  // per route, its form of the event
};

struct PendingAccept {
    std::shared_ptr<PreparedAccept> prepared;
    asio::any_completion_handler<void(AcceptResult)> handler;
};

// Accepts decided in one transaction at most; and waiting at most, past which they are refused
// as busy rather than held in memory while Redis is slow.
constexpr std::size_t kMaxAcceptBatch = 256;
constexpr std::size_t kMaxWaitingAccepts = 8192;

class RedisStorage final : public Storage {
public:
    RedisStorage(const StorageConfig& config, RedisTuning tuning)
        : redis_(*config.redis),
          retention_(config.retention),
          maxQueued_(config.maxQueuedDeliveries),
          tuning_(std::move(tuning)),
          prefix_(redis_.keyPrefix),
          consumer_(tuning_.consumer.empty() ? consumerName() : tuning_.consumer),
          work_(asio::make_work_guard(io_)),
          timer_(io_) {
        const Duration quarter = std::chrono::duration_cast<Duration>(redis_.claimIdle / 4);
        pollInterval_ = std::max<Duration>(std::chrono::milliseconds(50), std::min(tuning_.pollInterval, quarter));
        lastError_ = "redis: connecting to " + redis_.host + ":" + std::to_string(redis_.port);
        asio::co_spawn(io_, supervise(), asio::detached);
        thread_ = std::thread([this] { io_.run(); });
    }

    // Requests under way are answered (refused, once the connections are closed); then the thread stops.
    ~RedisStorage() override {
        asio::post(io_, [this] {
            stopping_ = true;
            timer_.cancel();
            if (cmd_) cmd_->close("redis: storage is shutting down");
            if (tx_) tx_->close("redis: storage is shutting down");
        });
        work_.reset();
        thread_.join();
    }

    void accept(AcceptRequest request, asio::any_completion_handler<void(AcceptResult)> handler) override {
        auto prepared = std::make_shared<PreparedAccept>();
        try {
            if (!request.event) throw std::runtime_error("no event to store");
            for (const auto& route : request.routes) {
                if (!route.event) throw std::runtime_error("route " + route.name + " has no event to store");
                prepared->routeBodies.push_back(toStorageText(*route.event));
            }
        } catch (const std::exception& error) {
            complete(std::move(handler), AcceptResult{.stored = false, .error = error.what()});
            return;
        }
        if (!healthy_) {
            complete(std::move(handler), AcceptResult{.stored = false, .error = "storage unavailable: " + lastError()});
            return;
        }
        prepared->request = std::move(request);
        asio::post(io_, [this, pending = PendingAccept{std::move(prepared), std::move(handler)}]() mutable {
            if (accepts_.size() >= kMaxWaitingAccepts) {
                complete(
                    std::move(pending.handler),
                    AcceptResult{.stored = false,
                                 .error = "storage busy: " + std::to_string(accepts_.size()) + " accepts waiting"});
                return;
            }
            accepts_.push_back(std::move(pending));
            if (!accepting_) {
                accepting_ = true;
                asio::co_spawn(io_, drainAccepts(), asio::detached);
            }
        });
    }

    void claim(std::string target, std::size_t max, TimePoint now,
               asio::any_completion_handler<void(Claim)> handler) override {
        spawn<Claim>(
            std::move(handler), [this, target = std::move(target), max, now] { return doClaim(target, max, now); },
            // Ask again once Redis may be back, rather than sleep until new work arrives.
            [this](const std::string&) { return Claim{.deliveries = {}, .nextDue = Clock::now() + pollInterval_}; });
    }

    void settle(std::vector<Settlement> settlements, asio::any_completion_handler<void()> handler) override {
        asio::co_spawn(io_, doSettle(std::move(settlements)),
                       [handler = std::move(handler)](std::exception_ptr) mutable { complete(std::move(handler)); });
    }

    void deadLetters(std::size_t limit, asio::any_completion_handler<void(std::vector<DeadLetter>)> handler) override {
        spawn<std::vector<DeadLetter>>(
            std::move(handler), [this, limit] { return doDeadLetters(limit); },
            [](const std::string&) { return std::vector<DeadLetter>(); });
    }

    void replay(std::uint64_t deliveryId, asio::any_completion_handler<void(bool)> handler) override {
        spawn<bool>(
            std::move(handler), [this, deliveryId] { return doReplay(deliveryId); },
            [](const std::string&) { return false; });
    }

    void getValue(std::string key, asio::any_completion_handler<void(std::optional<std::string>)> handler) override {
        spawn<std::optional<std::string>>(
            std::move(handler), [this, key = std::move(key)] { return doGetValue(key); },
            [](const std::string&) { return std::optional<std::string>(); });
    }

    void putValue(std::string key, std::string value, Duration ttl,
                  asio::any_completion_handler<void(bool)> handler) override {
        spawn<bool>(
            std::move(handler),
            [this, key = std::move(key), value = std::move(value), ttl] { return doPutValue(key, value, ttl); },
            [](const std::string&) { return false; });
    }

    void eraseValue(std::string key, asio::any_completion_handler<void()> handler) override {
        asio::co_spawn(io_, doEraseValue(std::move(key)),
                       [handler = std::move(handler)](std::exception_ptr error) mutable {
                           if (error) spdlog::warn("storage: a value was not erased: {}", describe(error));
                           complete(std::move(handler));
                       });
    }

    void tryLease(std::string name, Duration ttl,
                  asio::any_completion_handler<void(std::optional<std::string>)> handler) override {
        spawn<std::optional<std::string>>(
            std::move(handler), [this, name = std::move(name), ttl] { return doTryLease(name, ttl); },
            [](const std::string&) { return std::optional<std::string>(); });
    }

    void releaseLease(std::string name, std::string token, asio::any_completion_handler<void()> handler) override {
        asio::co_spawn(io_, doReleaseLease(std::move(name), std::move(token)),
                       [handler = std::move(handler)](std::exception_ptr error) mutable {
                           // Not released: it expires by itself after its ttl.
                           if (error) spdlog::warn("storage: a lease was not released: {}", describe(error));
                           complete(std::move(handler));
                       });
    }

    bool sharesJournal() const override { return true; }

    void journalEvent(std::string eventId, std::string json, std::string object, bool failing) override {
        std::vector<std::vector<std::string>> writes{
            {"XADD", key("journal"), "MAXLEN", "~", std::to_string(kJournalEvents), "*", "id", eventId, "e", json}};
        if (!object.empty()) {
            const nlohmann::json latest{
                {"at", std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch()).count()},
                {"failing", failing},
                {"e", json}};
            writes.push_back({"HSET", key("journal-objects"), std::move(object), latest.dump()});
        }
        writeJournal(std::move(writes));
    }

    void journalAttempt(std::string eventId, std::string json) override {
        const std::string attempts = key("journal-attempts", eventId);
        writeJournal({{"RPUSH", attempts, std::move(json)},
                      {"LTRIM", attempts, "-" + std::to_string(kJournalAttemptsPerEvent), "-1"},
                      {"PEXPIRE", attempts, millis(kJournalAttemptsMemory)}});
    }

    void recentJournal(std::size_t limit,
                       asio::any_completion_handler<void(std::vector<JournalEntry>)> handler) override {
        spawn<std::vector<JournalEntry>>(
            std::move(handler), [this, limit] { return doRecentJournal(limit); },
            [](const std::string& error) {
                spdlog::warn("storage: the shared journal cannot be read: {}", error);
                return std::vector<JournalEntry>();
            });
    }

    void failingJournalObjects(asio::any_completion_handler<void(std::vector<std::string>)> handler) override {
        spawn<std::vector<std::string>>(
            std::move(handler), [this] { return doFailingJournalObjects(); },
            [](const std::string& error) {
                spdlog::warn("storage: the shared journal cannot be read: {}", error);
                return std::vector<std::string>();
            });
    }

    void failingObjects(TimePoint now, asio::any_completion_handler<void(std::vector<ObjectHealth>)> handler) override {
        spawn<std::vector<ObjectHealth>>(
            std::move(handler), [this, now] { return doFailingObjects(now); },
            [](const std::string& error) {
                spdlog::warn("storage: the failing objects cannot be read: {}", error);
                return std::vector<ObjectHealth>();
            });
    }

    void counts(asio::any_completion_handler<void(std::vector<TargetCounts>)> handler) override {
        spawn<std::vector<TargetCounts>>(
            std::move(handler), [this] { return doCounts(); },
            [](const std::string&) { return std::vector<TargetCounts>(); });
    }

    void onWork(std::function<void(const std::string&)> listener) override {
        std::lock_guard lock(listenerMutex_);
        listener_ = std::move(listener);
    }

    bool healthy() const override { return healthy_.load(); }

    std::map<std::string, std::uint64_t> repairs() const override {
        return {{"consumer_group", groupsRecreated_.load()}};
    }

private:
    // The accept sequence's steps over what the accept's WATCH read: reads come from `values`,
    // writes become commands of its MULTI.
    class AcceptWrites final : public AcceptSteps {
    public:
        // `held` and `nextId` are the batch's: each accept of it counts on from the one before.
        AcceptWrites(const RedisStorage& spool, const PreparedAccept& prepared,
                     std::map<std::string, std::optional<std::string>>& values, std::uint64_t& held,
                     std::uint64_t& nextId, std::vector<std::vector<std::string>>& writes, TimePoint now)
            : spool_(spool),
              prepared_(prepared),
              values_(values),
              held_(held),
              nextId_(nextId),
              writes_(writes),
              now_(now) {}

        std::optional<std::string> read(const std::string& key, TimePoint) override { return values_[gate(key)]; }
        void put(const std::string& key, const std::string& value, TimePoint expiry) override {
            if (expiry == TimePoint::max()) {
                writes_.push_back({"SET", gate(key), value});
            } else if (expiry <= now_) {
                erase(key);
                return;
            } else {
                writes_.push_back({"SET", gate(key), value, "PXAT", expiryMillis(expiry)});
            }
            values_[gate(key)] = value;
        }
        void erase(const std::string& key) override {
            writes_.push_back({"DEL", gate(key)});
            values_[gate(key)] = std::nullopt;
        }
        bool idempotencyKeyHeld(const std::string& key, TimePoint) override {
            return values_[spool_.key("idem", key)].has_value();
        }
        void holdIdempotencyKey(const std::string& key, TimePoint expiry) override {
            writes_.push_back({"SET", spool_.key("idem", key), "1", "PXAT", expiryMillis(expiry)});
            values_[spool_.key("idem", key)] = "1";  // a later accept of the same batch sees it held
        }
        std::size_t deliveriesHeld() override { return held_; }
        void enqueue(std::size_t routeIndex, const AcceptRequest::Route& route, const std::string& target,
                     TimePoint now) override {
            const std::string& body = prepared_.routeBodies[routeIndex];
            const TimePoint due = now + route.delay;
            std::string burst;
            if (!route.coalesceKey.empty()) {
                burst = spool_.coalesceKey(target, route.coalesceKey);
                // A queued, not yet due delivery of the burst takes this event and keeps its time.
                if (const auto& queued = values_[burst]) {
                    writes_.push_back({"HSET", spool_.key("d", *queued), "event", body, "route", route.name});
                    return;
                }
            }
            const std::string id = std::to_string(nextId_++);
            auto fields =
                command({"HSET",  spool_.key("d", id), "route",     route.name, "target",   target,  "event",
                         body,    "attempts",          "0",         "created",  nanos(now), "next",  nanos(due),
                         "score", micros(due),         "lastError", "",         "state",    "queued"});
            if (!burst.empty()) {
                fields.push_back("co");
                fields.push_back(burst);
            }
            writes_.push_back(std::move(fields));
            if (burst.empty() && route.delay.count() <= 0) {
                writes_.push_back({"XADD", spool_.key("q", target), "*", "id", id});
            } else {
                writes_.push_back({"ZADD", spool_.key("due", target), micros(due), id});
            }
            if (!burst.empty()) {
                // Expires long after its delivery fell due, should the promotion never come.
                writes_.push_back({"SET", burst, id, "PXAT", expiryMillis(due + std::chrono::hours(24))});
                values_[burst] = id;
            }
            writes_.push_back({"SADD", spool_.key("targets"), target});
            ++created;
            ++held_;
            woken.push_back(target);
        }
        void recordObjectHealth(const ObjectHealth& health) override {
            if (!health.failing) {
                writes_.push_back({"HDEL", spool_.key("failing-objects"), health.object()});
                return;
            }
            const nlohmann::json record{{"kind", health.kind},    {"namespace", health.namespace_},
                                        {"name", health.name},    {"reason", health.reason},
                                        {"at", nanos(health.at)}, {"expiry", nanos(health.expiry)}};
            writes_.push_back({"HSET", spool_.key("failing-objects"), health.object(), record.dump()});
        }

        std::size_t created = 0;
        std::vector<std::string> woken;

    private:
        std::string gate(const std::string& key) const { return spool_.key("gate", key); }

        const RedisStorage& spool_;
        const PreparedAccept& prepared_;
        std::map<std::string, std::optional<std::string>>& values_;
        std::uint64_t& held_;
        std::uint64_t& nextId_;
        std::vector<std::vector<std::string>>& writes_;
        TimePoint now_;
    };

    // A delivery this replica holds: where its stream entry is.
    struct Lease {
        std::string target;
        std::string entry;
    };

    static std::string describe(std::exception_ptr error) {
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            return e.what();
        } catch (...) {
            return "unknown error";
        }
    }

    // Runs `make()` (an awaitable) on the storage thread and completes `handler` with its result,
    // or with `fail(why)` when it threw.
    template <class Result, class Make, class Fail>
    void spawn(asio::any_completion_handler<void(Result)> handler, Make make, Fail fail) {
        asio::co_spawn(
            io_, std::move(make),
            [handler = std::move(handler), fail = std::move(fail)](std::exception_ptr error, Result result) mutable {
                if (error) {
                    complete(std::move(handler), fail(describe(error)));
                } else {
                    complete(std::move(handler), std::move(result));
                }
            });
    }

    std::string key(std::string_view kind) const { return prefix_ + std::string(kind); }
    std::string key(std::string_view kind, std::string_view rest) const {
        return prefix_ + std::string(kind) + ":" + std::string(rest);
    }
    std::string coalesceKey(const std::string& target, const std::string& burst) const {
        return key("co", target + ":" + burst);
    }

    std::string lastError() const {
        std::lock_guard lock(errorMutex_);
        return lastError_;
    }

    // The connection if it is up; else the operation fails as "storage unavailable".
    std::shared_ptr<RedisConnection> connection(const std::shared_ptr<RedisConnection>& which) const {
        if (!which || !which->open()) throw RedisError(lastError());
        return which;
    }

    // ---- Accept ----------------------------------------------------------------------------------

    // Accepts waiting meanwhile go together: one WATCH and one MULTI/EXEC for all of them, as the
    // SQLite spool commits a burst in one transaction. Runs while accepts_ has any.
    asio::awaitable<void> drainAccepts() {
        while (!accepts_.empty()) {
            std::vector<PendingAccept> batch;
            while (!accepts_.empty() && batch.size() < kMaxAcceptBatch) {
                batch.push_back(std::move(accepts_.front()));
                accepts_.pop_front();
            }
            std::vector<AcceptResult> results;
            try {
                results = co_await acceptBatch(batch);
            } catch (const std::exception& error) {
                results.assign(
                    batch.size(),
                    AcceptResult{.stored = false, .error = std::string("storage unavailable: ") + error.what()});
            }
            for (std::size_t i = 0; i < batch.size(); ++i) {
                complete(std::move(batch[i].handler), std::move(results[i]));
            }
        }
        accepting_ = false;
    }

    asio::awaitable<std::vector<AcceptResult>> acceptBatch(const std::vector<PendingAccept>& batch) {
        std::size_t newDeliveries = 0;
        for (const auto& pending : batch) {
            for (const auto& route : pending.prepared->request.routes) newDeliveries += route.targets.size();
        }
        for (int attempt = 0; attempt < tuning_.maxTransactionAttempts; ++attempt) {
            auto tx = connection(tx_);
            const auto now = Clock::now();
            // Every key the decisions read is watched: should another replica write one before
            // EXEC, the transaction does nothing and all of them are decided again.
            std::vector<std::string> watched;
            std::set<std::string> seen;
            const auto watch = [&](std::string name) {
                if (seen.insert(name).second) watched.push_back(std::move(name));
            };
            for (const auto& pending : batch) {
                const AcceptRequest& request = pending.prepared->request;
                if (!request.idempotencyKey.empty()) watch(key("idem", request.idempotencyKey));
                for (const auto& route : request.routes) {
                    for (const auto& gate : route.dedup) watch(key("gate", gate.key));
                    if (route.coalesceKey.empty()) continue;
                    for (const auto& target : route.targets) watch(coalesceKey(target, route.coalesceKey));
                }
            }
            std::vector<std::vector<std::string>> reads;
            if (!watched.empty()) {
                reads.push_back(command({"WATCH"}, watched));
                reads.push_back(command({"MGET"}, watched));
            }
            reads.push_back({"GET", key("held")});
            // Ids for every delivery these accepts may create; those left unused are skipped.
            reads.push_back({"INCRBY", key("seq"), std::to_string(std::max<std::size_t>(newDeliveries, 1))});
            auto replies = co_await tx->pipeline(std::move(reads));
            const bool failed = std::any_of(replies.begin(), replies.end(), [](const auto& r) { return r.isError(); });
            if (failed || (!watched.empty() && replies[1].elements.size() != watched.size())) {
                co_await unwatch(*tx);
                for (const auto& reply : replies) check(reply);
                throw RedisError("redis: MGET answered the wrong number of values");
            }
            std::map<std::string, std::optional<std::string>> values;
            for (std::size_t i = 0; i < watched.size(); ++i) {
                const RedisReply& value = replies[1].elements[i];
                values[watched[i]] = value.isNil() ? std::nullopt : std::optional<std::string>(value.text);
            }
            const RedisReply& heldReply = replies[replies.size() - 2];
            std::uint64_t held = heldReply.isNil() ? 0 : std::stoull(heldReply.text);
            const auto lastId = static_cast<std::uint64_t>(replies.back().integer);
            std::uint64_t nextId = lastId - std::max<std::size_t>(newDeliveries, 1) + 1;
            const std::uint64_t heldBefore = held;

            std::vector<std::vector<std::string>> writes{{"MULTI"}};
            std::vector<AcceptResult> results;
            std::vector<std::string> woken;
            for (const auto& pending : batch) {
                AcceptWrites steps(*this, *pending.prepared, values, held, nextId, writes, now);
                results.push_back(runAccept(pending.prepared->request, steps, maxQueued_, now));
                woken.insert(woken.end(), steps.woken.begin(), steps.woken.end());
            }
            if (writes.size() == 1) {  // duplicates and refusals only: nothing to write
                co_await unwatch(*tx);
                co_return results;
            }
            if (held > heldBefore) writes.push_back({"INCRBY", key("held"), std::to_string(held - heldBefore)});
            writes.push_back({"EXEC"});
            const auto committed = co_await tx->pipeline(std::move(writes));
            const RedisReply& exec = committed.back();
            if (exec.isNil()) continue;  // a watched key changed: decide again on what is there now
            check(exec);
            for (const auto& reply : exec.elements) {
                if (reply.isError()) spdlog::error("storage: redis: part of an accept failed: {}", reply.text);
            }
            notify(std::move(woken));
            co_return results;
        }
        co_return std::vector<AcceptResult>(
            batch.size(),
            AcceptResult{.stored = false, .error = "storage busy: dedup state kept changing under concurrent accepts"});
    }

    static asio::awaitable<void> unwatch(RedisConnection& tx) {
        std::vector<std::vector<std::string>> commands(1);
        commands[0].push_back("UNWATCH");
        co_await tx.pipeline(std::move(commands));
    }

    // ---- Claim and settle ----------------------------------------------------------------------------

    asio::awaitable<void> ensureGroup(RedisConnection& connection, const std::string& target) {
        if (groups_.contains(target)) co_return;
        std::vector<std::vector<std::string>> createGroup{
            {"XGROUP", "CREATE", key("q", target), kGroup, "0", "MKSTREAM"}};
        const auto replies = co_await connection.pipeline(std::move(createGroup));
        if (replies[0].isError() && !replies[0].text.starts_with("BUSYGROUP")) check(replies[0]);
        const bool seenBefore = !groupsSeen_.insert(target).second;
        if (!replies[0].isError() && seenBefore) {
            groupsRecreated_.fetch_add(1);
            spdlog::warn(
                "storage: the consumer group of target {} was gone (Redis restarted without its data, or was "
                "flushed) and is created again; what Redis lost is lost",
                target);
        }
        groups_.insert(target);
    }

    asio::awaitable<Claim> doClaim(std::string target, std::size_t max, TimePoint now) {
        auto cmd = connection(cmd_);
        const std::string stream = key("q", target);
        co_await ensureGroup(*cmd, target);
        std::vector<std::pair<std::string, std::string>> entries;  // stream entry, delivery id
        const auto leasedHere = [&](const std::string& entry) {
            return std::any_of(leased_.begin(), leased_.end(), [&](const auto& lease) {
                return lease.second.target == target && lease.second.entry == entry;
            });
        };
        // Deliveries leased by a replica that stopped renewing them: taken over after claimIdle.
        // The scan goes on where the last one stopped, so live leases at the head of the pending list
        // never hide abandoned ones behind them.
        std::string& cursor = autoclaimCursor_[target];
        if (cursor.empty()) cursor = "0-0";
        std::vector<std::vector<std::string>> autoclaim{{"XAUTOCLAIM", stream, kGroup, consumer_,
                                                         millis(redis_.claimIdle), cursor, "COUNT",
                                                         std::to_string(std::max<std::size_t>(max, 1))}};
        auto reclaimed = co_await cmd->pipeline(std::move(autoclaim));
        if (reclaimed[0].isError() && reclaimed[0].text.starts_with("NOGROUP")) groups_.erase(target);
        check(reclaimed[0]);
        if (!reclaimed[0].elements.empty()) autoclaimCursor_[target] = reclaimed[0].elements[0].text;
        if (reclaimed[0].elements.size() >= 2) {
            for (const auto& entry : reclaimed[0].elements[1].elements) {
                auto parsed = streamEntry(entry);
                if (parsed && !leasedHere(parsed->first) && entries.size() < max) entries.push_back(*parsed);
            }
        }
        if (!entries.empty())
            spdlog::info("storage: took over {} deliveries of {} from a replica that stopped", entries.size(), target);
        bool more = false;
        if (entries.size() < max) {
            const std::string remaining = std::to_string(max - entries.size());
            std::vector<std::vector<std::string>> promoteAndRead{
                {"EVAL", kPromoteScript, "2", key("due", target), stream, micros(now), remaining, prefix_},
                {"XREADGROUP", "GROUP", kGroup, consumer_, "COUNT", remaining, "STREAMS", stream, ">"}};
            auto replies = co_await cmd->pipeline(std::move(promoteAndRead));
            if (replies[1].isError() && replies[1].text.starts_with("NOGROUP")) groups_.erase(target);
            check(replies[0]);
            check(replies[1]);
            std::size_t read = 0;
            for (const auto& streamReply : replies[1].elements) {
                if (streamReply.elements.size() < 2) continue;
                for (const auto& entry : streamReply.elements[1].elements) {
                    ++read;
                    if (auto parsed = streamEntry(entry)) entries.push_back(*parsed);
                }
            }
            // A full read may have left more in the stream: the caller should ask again at once.
            more = std::to_string(read) == remaining;
        }

        std::vector<std::vector<std::string>> loads;
        for (const auto& [entry, id] : entries) loads.push_back({"HGETALL", key("d", id)});
        loads.push_back({"EVAL", kNextDueScript, "1", key("due", target), prefix_});
        const auto loaded = co_await cmd->pipeline(std::move(loads));
        Claim claim;
        std::vector<std::vector<std::string>> cleanup;
        for (std::size_t i = 0; i < entries.size(); ++i) {
            const auto& [entry, id] = entries[i];
            check(loaded[i]);
            auto fields = fieldsOf(loaded[i]);
            if (fields.empty()) {
                // Its delivery is gone (settled elsewhere): the entry is left over.
                cleanup.push_back({"XACK", stream, kGroup, entry});
                cleanup.push_back({"XDEL", stream, entry});
                continue;
            }
            const auto deliveryId = static_cast<std::uint64_t>(std::stoull(id));
            leased_[deliveryId] = Lease{target, entry};
            try {
                claim.deliveries.push_back(
                    Delivery{.id = deliveryId,
                             .route = fields["route"],
                             .target = target,
                             .event = std::make_shared<const Event>(fromStorageText(fields["event"])),
                             .attempts = std::stoi(fields["attempts"]),
                             .createdAt = fromNanos(fields["created"]),
                             .nextAttemptAt = fromNanos(fields["next"]),
                             .lastError = fields["lastError"]});
            } catch (const std::exception& error) {
                // A record nobody can read would be claimed forever: it becomes a dead letter.
                const std::string reason = std::string("unreadable delivery record: ") + error.what();
                spdlog::error("storage: delivery {}: {}", id, reason);
                cleanup.push_back(settleCommand(
                    Settlement{
                        .deliveryId = deliveryId, .kind = SettleKind::dead, .nextAttemptAt = {}, .error = reason},
                    leased_[deliveryId]));
                leased_.erase(deliveryId);
            }
        }
        if (!cleanup.empty()) co_await cmd->pipeline(std::move(cleanup));
        const RedisReply& next = loaded.back();
        check(next);
        if (more) {
            claim.nextDue = now;
        } else if (next.type == RedisReply::Type::string) {
            claim.nextDue = fromNanos(next.text);
        }
        co_return claim;
    }

    std::vector<std::string> settleCommand(const Settlement& settlement, const Lease& lease) const {
        const auto now = Clock::now();
        const char* kind = "delivered";
        switch (settlement.kind) {
            case SettleKind::delivered:
                kind = "delivered";
                break;
            case SettleKind::retry:
                kind = "retry";
                break;
            case SettleKind::dead:
                kind = "dead";
                break;
            case SettleKind::release:
                kind = "release";
                break;
        }
        const std::string id = std::to_string(settlement.deliveryId);
        return {"EVAL",
                kSettleScript,
                "2",
                key("q", lease.target),
                key("d", id),
                kGroup,
                lease.entry,
                kind,
                id,
                settlement.error,
                nanos(settlement.nextAttemptAt),
                micros(settlement.nextAttemptAt),
                nanos(now),
                micros(now),
                prefix_,
                lease.target};
    }

    // A settlement Redis did not take is kept, with its lease, and applied once Redis is back; until
    // then the lease is renewed, so its delivery is not sent again.
    asio::awaitable<void> doSettle(std::vector<Settlement> settlements) {
        for (auto& settlement : settlements) {
            if (leased_.contains(settlement.deliveryId)) unsettled_.push_back(std::move(settlement));
        }
        co_await flushSettlements();
    }

    asio::awaitable<void> flushSettlements() {
        if (unsettled_.empty() || !cmd_ || !cmd_->open()) co_return;
        auto batch = std::exchange(unsettled_, {});
        std::vector<std::vector<std::string>> commands;
        for (const auto& settlement : batch)
            commands.push_back(settleCommand(settlement, leased_.at(settlement.deliveryId)));
        std::vector<RedisReply> replies;
        std::string failure;
        try {
            replies = co_await cmd_->pipeline(std::move(commands));
        } catch (const RedisError& error) {
            failure = error.what();
        }
        if (!failure.empty()) {
            spdlog::warn("storage: {} settlements held until Redis is back: {}", batch.size(), failure);
            unsettled_.insert(unsettled_.begin(), batch.begin(), batch.end());
            co_return;
        }
        for (std::size_t i = 0; i < batch.size(); ++i) {
            if (replies[i].isError()) {
                spdlog::error("storage: settling delivery {} failed: {}", batch[i].deliveryId, replies[i].text);
            }
            leased_.erase(batch[i].deliveryId);
        }
    }

    // ---- Dead letters, values, counts --------------------------------------------------------------

    asio::awaitable<std::vector<DeadLetter>> doDeadLetters(std::size_t limit) {
        auto cmd = connection(cmd_);
        std::vector<std::string> newest{"XREVRANGE", key("dead"), "+", "-", "COUNT", std::to_string(limit)};
        const auto listed = co_await cmd->command(std::move(newest));
        std::vector<std::string> ids;
        for (const auto& entry : listed.elements) {
            if (auto parsed = streamEntry(entry)) ids.push_back(parsed->second);
        }
        std::vector<DeadLetter> letters;
        if (ids.empty()) co_return letters;
        std::vector<std::vector<std::string>> loads;
        for (const auto& id : ids) loads.push_back({"HGETALL", key("d", id)});
        const auto loaded = co_await cmd->pipeline(std::move(loads));
        for (std::size_t i = 0; i < ids.size(); ++i) {
            auto fields = fieldsOf(loaded[i]);
            if (fields["state"] != "dead") continue;
            try {
                letters.push_back(DeadLetter{
                    .delivery = Delivery{.id = std::stoull(ids[i]),
                                         .route = fields["route"],
                                         .target = fields["target"],
                                         .event = std::make_shared<const Event>(fromStorageText(fields["event"])),
                                         .attempts = std::stoi(fields["attempts"]),
                                         .createdAt = fromNanos(fields["created"]),
                                         .nextAttemptAt = fromNanos(fields["next"]),
                                         .lastError = fields["lastError"]},
                    .reason = fields["deadReason"],
                    .deadAt = fromNanos(fields["deadAt"])});
            } catch (const std::exception& error) {
                spdlog::warn("storage: dead letter {} has an unreadable record: {}", ids[i], error.what());
            }
        }
        co_return letters;
    }

    asio::awaitable<bool> doReplay(std::uint64_t deliveryId) {
        auto cmd = connection(cmd_);
        const auto now = Clock::now();
        const std::string id = std::to_string(deliveryId);
        std::vector<std::string> replay{"EVAL", kReplayScript, "1", key("d", id), id, nanos(now), micros(now), prefix_};
        const auto target = co_await cmd->command(std::move(replay));
        if (target.isNil()) co_return false;
        notify({target.text});
        co_return true;
    }

    asio::awaitable<std::optional<std::string>> doGetValue(std::string name) {
        std::vector<std::string> get{"GET", key("kv", name)};
        const auto value = co_await connection(cmd_)->command(std::move(get));
        co_return value.isNil() ? std::nullopt : std::optional<std::string>(value.text);
    }

    asio::awaitable<bool> doPutValue(std::string name, std::string value, Duration ttl) {
        if (ttl.count() > 0) {
            std::vector<std::string> set{"SET", key("kv", name), std::move(value), "PX", millis(ttl)};
            co_await connection(cmd_)->command(std::move(set));
        } else {
            std::vector<std::string> set{"SET", key("kv", name), std::move(value)};
            co_await connection(cmd_)->command(std::move(set));
        }
        co_return true;
    }

    asio::awaitable<void> doEraseValue(std::string name) {
        std::vector<std::string> erase{"DEL", key("kv", name)};
        co_await connection(cmd_)->command(std::move(erase));
    }

    asio::awaitable<std::optional<std::string>> doTryLease(std::string name, Duration ttl) {
        std::string token = consumer_ + ":" + std::to_string(leasesTaken_.fetch_add(1) + 1);
        std::vector<std::string> take{"SET", key("lease", name), token, "NX", "PX", millis(ttl)};
        const auto reply = co_await connection(cmd_)->command(std::move(take));
        check(reply);
        co_return reply.isNil() ? std::nullopt : std::optional(std::move(token));
    }

    asio::awaitable<void> doReleaseLease(std::string name, std::string token) {
        std::vector<std::string> release{"EVAL", kReleaseLeaseScript, "1", key("lease", name), std::move(token)};
        check(co_await connection(cmd_)->command(std::move(release)));
    }

    // ---- The shared journal --------------------------------------------------------------------------

    // History is worth less than the spool's own work: while Redis is slow or away, records beyond
    // kJournalWritesInFlight are dropped rather than queued.
    void writeJournal(std::vector<std::vector<std::string>> writes) {
        if (journalWritesInFlight_.fetch_add(1) >= kJournalWritesInFlight) {
            journalWritesInFlight_.fetch_sub(1);
            return;
        }
        asio::co_spawn(
            io_,
            [this, writes = std::move(writes)]() mutable -> asio::awaitable<void> {
                co_await connection(cmd_)->pipeline(std::move(writes));
            },
            [this](std::exception_ptr error) {
                journalWritesInFlight_.fetch_sub(1);
                if (error) spdlog::debug("storage: a journal record was dropped: {}", describe(error));
            });
    }

    asio::awaitable<std::vector<JournalEntry>> doRecentJournal(std::size_t limit) {
        auto cmd = connection(cmd_);
        std::vector<std::string> range{"XREVRANGE", key("journal"), "+", "-", "COUNT", std::to_string(limit)};
        const RedisReply entries = co_await cmd->command(std::move(range));
        std::vector<JournalEntry> out;
        std::vector<std::vector<std::string>> attempts;
        for (const RedisReply& entry : entries.elements) {
            if (entry.elements.size() != 2) continue;
            std::string id;
            JournalEntry journal;
            const auto& fields = entry.elements[1].elements;
            for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
                if (fields[i].text == "id") id = fields[i + 1].text;
                if (fields[i].text == "e") journal.json = fields[i + 1].text;
            }
            out.push_back(std::move(journal));
            attempts.push_back({"LRANGE", key("journal-attempts", id), "0", "-1"});
        }
        if (attempts.empty()) co_return out;
        const auto replies = co_await cmd->pipeline(std::move(attempts));
        for (std::size_t i = 0; i < out.size() && i < replies.size(); ++i) {
            for (const RedisReply& attempt : replies[i].elements) out[i].attempts.push_back(attempt.text);
        }
        co_return out;
    }

    // Objects past kJournalObjects, least recently updated first, are let go here, as the
    // in-memory journal lets go of them.
    asio::awaitable<std::vector<std::string>> doFailingJournalObjects() {
        auto cmd = connection(cmd_);
        std::vector<std::string> all{"HGETALL", key("journal-objects")};
        const RedisReply reply = co_await cmd->command(std::move(all));
        std::vector<std::tuple<std::int64_t, std::string, nlohmann::json>> objects;  // at, object, latest
        const auto& fields = reply.elements;
        for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
            nlohmann::json latest = nlohmann::json::parse(fields[i + 1].text, nullptr, false);
            if (!latest.is_object() || !latest["at"].is_number_integer()) continue;
            objects.emplace_back(latest["at"].get<std::int64_t>(), fields[i].text, std::move(latest));
        }
        std::sort(objects.begin(), objects.end(),
                  [](const auto& a, const auto& b) { return std::get<0>(a) > std::get<0>(b); });
        if (objects.size() > kJournalObjects) {
            std::vector<std::string> forget{"HDEL", key("journal-objects")};
            for (std::size_t i = kJournalObjects; i < objects.size(); ++i) forget.push_back(std::get<1>(objects[i]));
            co_await cmd->command(std::move(forget));
            objects.resize(kJournalObjects);
        }
        std::vector<std::string> failing;
        for (auto& [at, object, latest] : objects) {
            if (latest.value("failing", false) && latest["e"].is_string())
                failing.push_back(latest["e"].get<std::string>());
        }
        co_return failing;
    }

    // One hash field per failing object. Those expired or past kFailingObjectsHeld are let go
    // here, as the journal's objects are.
    asio::awaitable<std::vector<ObjectHealth>> doFailingObjects(TimePoint now) {
        auto cmd = connection(cmd_);
        std::vector<std::string> all{"HGETALL", key("failing-objects")};
        const RedisReply reply = co_await cmd->command(std::move(all));
        std::vector<ObjectHealth> held;
        std::map<std::string, std::string> records;  // field → the record read, for the forget
        std::vector<std::string> letGo;              // fields unreadable, expired or past the bound
        const auto& fields = reply.elements;
        for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
            const nlohmann::json record = nlohmann::json::parse(fields[i + 1].text, nullptr, false);
            const auto time = [&](const char* name) { return fromNanos(record.at(name).get<std::string>()); };
            try {
                held.push_back({.kind = record.at("kind").get<std::string>(),
                                .namespace_ = record.at("namespace").get<std::string>(),
                                .name = record.at("name").get<std::string>(),
                                .failing = true,
                                .reason = record.at("reason").get<std::string>(),
                                .at = time("at"),
                                .expiry = time("expiry")});
            } catch (const std::exception&) {
                letGo.push_back(fields[i].text);
            }
            records.emplace(fields[i].text, fields[i + 1].text);
        }
        FailingObjects sorted = sortFailingObjects(std::move(held), now);
        for (const auto& health : sorted.forgotten) letGo.push_back(health.object());
        if (!letGo.empty()) {
            std::vector<std::string> forget{"EVAL", kForgetObjectsScript, "1", key("failing-objects")};
            for (const auto& field : letGo) {
                forget.push_back(field);
                forget.push_back(records[field]);
            }
            co_await cmd->command(std::move(forget));
        }
        co_return std::move(sorted.kept);
    }

    asio::awaitable<std::vector<TargetCounts>> doCounts() {
        auto cmd = connection(cmd_);
        std::vector<std::string> members{"SMEMBERS", key("targets")};
        const auto targets = co_await cmd->command(std::move(members));
        std::vector<TargetCounts> out;
        if (targets.elements.empty()) co_return out;
        std::vector<std::vector<std::string>> counts;
        for (const auto& target : targets.elements) {
            counts.push_back({"ZCARD", key("due", target.text)});
            counts.push_back({"XLEN", key("q", target.text)});
            counts.push_back({"SCARD", key("dead", target.text)});
        }
        const auto replies = co_await cmd->pipeline(std::move(counts));
        for (std::size_t i = 0; i < targets.elements.size(); ++i) {
            for (std::size_t j = 0; j < 3; ++j) check(replies[3 * i + j]);
            out.push_back({.target = targets.elements[i].text,
                           .waiting = static_cast<std::uint64_t>(replies[3 * i].integer + replies[3 * i + 1].integer),
                           .dead = static_cast<std::uint64_t>(replies[3 * i + 2].integer)});
        }
        std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.target < b.target; });
        co_return out;
    }

    // ---- Connection upkeep ---------------------------------------------------------------------------

    // Connects, and reconnects with backoff whenever a connection fails; while connected, renews
    // leases, finds work other replicas left and prunes old dead letters.
    asio::awaitable<void> supervise() {
        Duration backoff = tuning_.reconnectMin;
        auto nextPrune = SteadyClock::now();
        while (!stopping_) {
            if (!connected()) {
                const std::string why = co_await reconnect();
                if (stopping_) break;
                if (!why.empty()) {
                    setUnhealthy(why);
                    co_await sleep(backoff);
                    backoff = std::min(backoff * 2, tuning_.reconnectMax);
                    continue;
                }
                backoff = tuning_.reconnectMin;
                groups_.clear();  // a Redis restarted without its data has none
                if (!healthy_.exchange(true)) spdlog::info("storage: redis {}:{} available", redis_.host, redis_.port);
            }
            try {
                co_await flushSettlements();
                co_await upkeep();
                if (SteadyClock::now() >= nextPrune) {
                    co_await prune();
                    nextPrune = SteadyClock::now() + tuning_.pruneInterval;
                }
            } catch (const std::exception& error) {
                spdlog::debug("storage: redis upkeep: {}", error.what());
            }
            co_await sleep(pollInterval_);
        }
    }

    bool connected() const { return cmd_ && cmd_->open() && tx_ && tx_->open(); }

    void setUnhealthy(const std::string& why) {
        bool changed = false;
        {
            std::lock_guard lock(errorMutex_);
            changed = lastError_ != why;
            lastError_ = why;
        }
        if (healthy_.exchange(false) || changed) spdlog::error("storage: {}; answering 503 until it is back", why);
    }

    asio::awaitable<std::string> reconnect() {
        for (auto* old : {&cmd_, &tx_}) {
            if (!*old) continue;
            (*old)->onClose({});  // their failure was reported already
            (*old)->close("redis: reconnecting");
        }
        cmd_.reset();
        tx_.reset();
        const RedisEndpoint endpoint{.host = redis_.host,
                                     .port = redis_.port,
                                     .database = redis_.database,
                                     .username = redis_.username,
                                     .password = redis_.password,
                                     .timeout = redis_.timeout};
        auto cmd = RedisConnection::create(io_.get_executor(), endpoint);
        auto tx = RedisConnection::create(io_.get_executor(), endpoint);
        for (auto* connection : {&cmd, &tx}) {
            std::string why = co_await (*connection)->connect();
            if (!why.empty()) co_return "redis: " + why;
            (*connection)->onClose([this](const std::string& why) {
                if (stopping_) return;
                setUnhealthy(why);
                timer_.cancel();  // reconnect now, not at the next poll
            });
        }
        if (!cmd->open() || !tx->open()) co_return "redis: connection lost while connecting";
        cmd_ = std::move(cmd);
        tx_ = std::move(tx);
        co_return std::string();
    }

    asio::awaitable<void> sleep(Duration duration) {
        if (stopping_) co_return;
        timer_.expires_after(duration);
        co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    }

    // Renews this replica's leases, and tells the dispatcher about targets with work it may not
    // know of: retries or debounced deliveries falling due, entries another replica added, and
    // leases of a replica that stopped.
    asio::awaitable<void> upkeep() {
        auto cmd = connection(cmd_);
        std::map<std::string, std::vector<std::string>> byTarget;
        for (const auto& [id, lease] : leased_) byTarget[lease.target].push_back(lease.entry);
        std::vector<std::vector<std::string>> renewals;
        for (const auto& [target, entries] : byTarget) {
            renewals.push_back(command({"EVAL", kHeartbeatScript, "1", key("q", target), kGroup, consumer_}, entries));
        }
        if (!renewals.empty()) co_await cmd->pipeline(std::move(renewals));

        std::vector<std::string> members{"SMEMBERS", key("targets")};
        const auto targets = co_await cmd->command(std::move(members));
        if (targets.elements.empty()) co_return;
        const auto now = Clock::now();
        std::vector<std::vector<std::string>> probes;
        for (const auto& target : targets.elements) {
            const std::string stream = key("q", target.text);
            probes.push_back({"ZRANGEBYSCORE", key("due", target.text), "-inf", micros(now), "LIMIT", "0", "1"});
            probes.push_back({"XPENDING", stream, kGroup, "IDLE", millis(redis_.claimIdle), "-", "+", "1"});
            probes.push_back({"XLEN", stream});
            probes.push_back({"XPENDING", stream, kGroup});
        }
        const auto replies = co_await cmd->pipeline(std::move(probes));
        std::vector<std::string> woken;
        for (std::size_t i = 0; i < targets.elements.size(); ++i) {
            const RedisReply* probe = &replies[4 * i];
            const bool due = !probe[0].elements.empty();
            const bool abandoned = probe[1].isError() || !probe[1].elements.empty();
            const long long pending = probe[3].elements.empty() ? 0 : probe[3].elements[0].integer;
            const bool unread = probe[2].integer > pending;
            const std::string& target = targets.elements[i].text;
            // Due or unread work is normally taken at once by the dispatcher it was announced to; told
            // here only when it is still there a round later (its replica may have stopped).
            const bool waiting = due || unread;
            if (abandoned || (waiting && waitingSeen_.contains(target))) woken.push_back(target);
            if (waiting) {
                waitingSeen_.insert(target);
            } else {
                waitingSeen_.erase(target);
            }
        }
        notify(std::move(woken));
    }

    asio::awaitable<void> prune() {
        const auto cutoff = Clock::now() - retention_;
        for (;;) {
            std::vector<std::string> prune{"EVAL", kPruneScript, "1", key("deadage"), micros(cutoff), prefix_};
            const auto removed = co_await connection(cmd_)->command(std::move(prune));
            if (removed.integer < 500) break;
        }
        // Consumers of replicas long gone that hold nothing: each restart adds one to every group.
        auto cmd = connection(cmd_);
        std::vector<std::string> members{"SMEMBERS", key("targets")};
        const auto targets = co_await cmd->command(std::move(members));
        for (const auto& target : targets.elements) {
            const std::string stream = key("q", target.text);
            std::vector<std::vector<std::string>> info{{"XINFO", "CONSUMERS", stream, kGroup}};
            const auto consumers = co_await cmd->pipeline(std::move(info));
            if (consumers[0].isError()) continue;  // no group yet
            std::vector<std::vector<std::string>> deletions;
            for (const auto& consumer : consumers[0].elements) {
                std::string name;
                long long pending = 0;
                long long idle = 0;
                for (std::size_t i = 0; i + 1 < consumer.elements.size(); i += 2) {
                    const std::string& field = consumer.elements[i].text;
                    if (field == "name") name = consumer.elements[i + 1].text;
                    if (field == "pending") pending = consumer.elements[i + 1].integer;
                    if (field == "idle") idle = consumer.elements[i + 1].integer;
                }
                if (!name.empty() && name != consumer_ && pending == 0 && idle > kConsumerForgottenAfterMs) {
                    deletions.push_back({"XGROUP", "DELCONSUMER", stream, kGroup, name});
                }
            }
            if (!deletions.empty()) co_await cmd->pipeline(std::move(deletions));
        }
    }

    void notify(std::vector<std::string> targets) {
        if (targets.empty()) return;
        std::sort(targets.begin(), targets.end());
        targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
        std::function<void(const std::string&)> listener;
        {
            std::lock_guard lock(listenerMutex_);
            listener = listener_;
        }
        if (!listener) return;
        for (const auto& target : targets) {
            try {
                listener(target);
            } catch (const std::exception& error) {
                spdlog::error("storage: the work listener failed for target {}: {}", target, error.what());
            }
        }
    }

    const RedisConfig redis_;
    const Duration retention_;
    const std::size_t maxQueued_;
    const RedisTuning tuning_;
    const std::string prefix_;
    const std::string consumer_;
    Duration pollInterval_{};

    std::mutex listenerMutex_;
    std::function<void(const std::string&)> listener_;
    std::atomic<bool> healthy_{false};
    mutable std::mutex errorMutex_;
    std::string lastError_;

    // The storage thread's own.
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    asio::steady_timer timer_;
    bool stopping_ = false;
    std::shared_ptr<RedisConnection> cmd_;  // claims, settlements, values: pipelined
    std::shared_ptr<RedisConnection> tx_;   // accepts, one batch's transaction at a time
    // Accepts waiting for the transaction connection (io_ thread only), taken a batch at a time.
    std::deque<PendingAccept> accepts_;
    bool accepting_ = false;
    std::set<std::string> groups_;      // targets whose consumer group is known to exist
    std::set<std::string> groupsSeen_;  // targets whose consumer group existed at some time
    std::atomic<std::uint64_t> groupsRecreated_{0};
    std::atomic<std::uint64_t> leasesTaken_{0};
    static constexpr int kJournalWritesInFlight = 1000;
    // An event's attempts outlive its place in the journal's stream by far, and then go.
    static constexpr Duration kJournalAttemptsMemory = std::chrono::hours(24);
    std::atomic<int> journalWritesInFlight_{0};
    std::unordered_map<std::uint64_t, Lease> leased_;
    std::vector<Settlement> unsettled_;
    std::map<std::string, std::string> autoclaimCursor_;  // per target: where XAUTOCLAIM goes on
    std::set<std::string> waitingSeen_;                   // targets that had due or unread work at the last upkeep
    std::thread thread_;                                  // last: starts once everything above is ready
};

}  // namespace

std::unique_ptr<Storage> makeRedisStorage(const StorageConfig& config, RedisTuning tuning) {
    if (!config.redis) throw std::invalid_argument("makeRedisStorage: storage.redis is not set");
    return std::make_unique<RedisStorage>(config, std::move(tuning));
}

std::unique_ptr<Storage> makeRedisStorage(const StorageConfig& config) { return makeRedisStorage(config, {}); }

}  // namespace fluxrelay
