// The embedded durable spool (SPEC §8): SQLite in WAL mode, owned by one writer thread that
// commits every queued request of a burst in one transaction (group commit).
#include "storage/sqlite_storage.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "storage/completion.hpp"

namespace fluxrelay {
namespace {

namespace fs = std::filesystem;

constexpr const char* kDatabaseFile = "fluxrelay.db";
// Rows removed per table per prune transaction, so a large backlog never blocks ingest for long.
constexpr std::int64_t kPruneChunk = 2000;

// A failed SQLite call; the code tells trouble with the storage from trouble with one request.
class SqliteError : public std::runtime_error {
public:
    SqliteError(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
    int code() const { return code_; }

private:
    int code_;
};

// Disk full, read-only, I/O error, file gone, locked: the storage is unavailable, whatever was
// asked of it. The rest are faults of one request, which must not fail its batch neighbours.
bool isStorageFault(int code) {
    switch (code & 0xff) {
        case SQLITE_CONSTRAINT:
        case SQLITE_TOOBIG:
        case SQLITE_MISMATCH:
        case SQLITE_RANGE:
            return false;
        default:
            return true;
    }
}

// Times are stored as nanoseconds since the Unix epoch so they read back to the same time point.
std::int64_t toNanos(TimePoint time) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
}

TimePoint fromNanos(std::int64_t nanos) {
    return TimePoint(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(nanos)));
}

std::int64_t toLimit(std::size_t count) {
    return static_cast<std::int64_t>(std::min<std::size_t>(count, std::numeric_limits<std::int64_t>::max()));
}

// A statement prepared once and run many times.
class Statement {
public:
    Statement(sqlite3* db, std::string_view sql) {
        if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt_,
                               nullptr) != SQLITE_OK) {
            throw SqliteError(sqlite3_extended_errcode(db),
                              std::string("preparing a statement: ") + sqlite3_errmsg(db) + " in " + std::string(sql));
        }
    }
    ~Statement() { sqlite3_finalize(stmt_); }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    sqlite3_stmt* get() const { return stmt_; }

private:
    sqlite3_stmt* stmt_ = nullptr;
};

// One run of a prepared statement; leaves it reset and unbound however the scope ends.
class Query {
public:
    explicit Query(const Statement& statement) : stmt_(statement.get()) {}
    ~Query() {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
    }
    Query(const Query&) = delete;
    Query& operator=(const Query&) = delete;

    Query& bind(int index, std::int64_t value) {
        check(sqlite3_bind_int64(stmt_, index, value));
        return *this;
    }
    Query& bind(int index, std::string_view value) {
        check(sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
        return *this;
    }
    Query& bind(int index, std::optional<std::int64_t> value) { return value ? bind(index, *value) : bindNull(index); }
    Query& bindNull(int index) {
        check(sqlite3_bind_null(stmt_, index));
        return *this;
    }

    // True while a result row is ready.
    bool step() {
        const int rc = sqlite3_step(stmt_);
        if (rc == SQLITE_ROW) {
            return true;
        }
        if (rc != SQLITE_DONE) {
            throw SqliteError(rc, sqlite3_errmsg(sqlite3_db_handle(stmt_)));
        }
        return false;
    }
    // Runs a statement that returns no rows; the number of rows it changed.
    int run() {
        while (step()) {
        }
        return sqlite3_changes(sqlite3_db_handle(stmt_));
    }

    std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
    bool isNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
    std::string text(int column) const {
        const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
        return data ? std::string(data, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))) : std::string();
    }

private:
    void check(int rc) {
        if (rc != SQLITE_OK) {
            throw SqliteError(rc, sqlite3_errmsg(sqlite3_db_handle(stmt_)));
        }
    }

    sqlite3_stmt* stmt_;
};

// The open database file with the pragmas the spool relies on.
class Database {
public:
    Database(const fs::path& file, SyncMode sync) {
        const int rc = sqlite3_open_v2(file.c_str(), &db_,
                                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
        if (rc != SQLITE_OK) {
            const std::string message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
            sqlite3_close_v2(db_);
            throw SqliteError(rc, "cannot open " + file.string() + ": " + message);
        }
        try {
            configure(file, sync);
        } catch (...) {
            sqlite3_close_v2(db_);
            throw;
        }
    }
    ~Database() {
        sqlite3_exec(db_, "PRAGMA optimize", nullptr, nullptr, nullptr);
        sqlite3_close_v2(db_);
    }
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    sqlite3* get() const { return db_; }

    void exec(const std::string& sql) {
        char* error = nullptr;
        const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
        if (rc != SQLITE_OK) {
            const std::string message = error ? error : sqlite3_errstr(rc);
            sqlite3_free(error);
            throw SqliteError(sqlite3_extended_errcode(db_) ? sqlite3_extended_errcode(db_) : rc, message);
        }
    }

    std::string pragmaText(const std::string& sql) {
        Statement statement(db_, sql);
        Query query(statement);
        return query.step() ? query.text(0) : std::string();
    }

    bool inTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

    // Rolls back whatever transaction is open; never throws (it runs while handling a failure).
    void rollback() noexcept {
        if (inTransaction()) {
            sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        }
    }

    // True when the file was deleted or replaced since it was opened: writes would then go to a
    // file nobody can open again, so they must count as failed.
    bool hasMoved() const {
        int moved = 0;
        return sqlite3_file_control(db_, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK && moved != 0;
    }

private:
    void configure(const fs::path& file, SyncMode sync) {
        sqlite3_extended_result_codes(db_, 1);
        // Another process (a backup, the sqlite3 shell) may hold the lock for a moment.
        sqlite3_busy_timeout(db_, 5000);
        // WAL: readers never block the writer, and a commit is one append to the log.
        if (pragmaText("PRAGMA journal_mode=WAL") != "wal") {
            throw SqliteError(SQLITE_ERROR, file.string() + ": the file system does not support WAL mode");
        }
        // NORMAL in WAL mode survives a process crash; FULL syncs every commit, surviving power loss.
        exec(sync == SyncMode::full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
        // After a burst the log is truncated back to this, so it does not keep its peak size.
        exec("PRAGMA journal_size_limit=67108864");
        // A commit that crosses this many pages of log copies the log into the database file,
        // stalling the writer for the copy and two syncs. At SQLite's default of 1000 pages the
        // stalls set the ingest p99 at 1,000 events/s (5.8-6.7 ms); at 250 it is 2.7-2.9 ms, and
        // a saturated ingest is faster too (the log stays small and is reused). 100 syncs too often.
        exec("PRAGMA wal_autocheckpoint=250");
    }

    sqlite3* db_ = nullptr;
};

// ---- Schema ------------------------------------------------------------------------------------

// Version 1. Times are nanoseconds since the Unix epoch; `events` holds each event as received
// (route NULL) and, where a route delivers it with its own metadata, that form too.
void migrateToV1(Database& db) {
    db.exec(R"sql(
        CREATE TABLE events (
            ref INTEGER PRIMARY KEY,
            id TEXT NOT NULL,
            route TEXT,
            received_at INTEGER NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX events_by_id ON events(id);
        CREATE INDEX events_by_age ON events(received_at);

        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_ref INTEGER NOT NULL REFERENCES events(ref),
            route TEXT NOT NULL,
            target TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'delivered', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL,
            next_attempt_at INTEGER NOT NULL,
            last_error TEXT NOT NULL DEFAULT '',
            coalesce_key TEXT,
            settled_at INTEGER,
            dead_reason TEXT
        );
        CREATE INDEX deliveries_due ON deliveries(target, state, next_attempt_at);
        CREATE INDEX deliveries_settled ON deliveries(state, settled_at);
        CREATE INDEX deliveries_by_event ON deliveries(event_ref);
        CREATE INDEX deliveries_coalescing ON deliveries(coalesce_key, target) WHERE coalesce_key IS NOT NULL;

        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            delivery_id INTEGER NOT NULL,
            at INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        CREATE INDEX attempts_by_delivery ON attempts(delivery_id, id);

        CREATE TABLE dedup_keys (
            key TEXT PRIMARY KEY,
            expires_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX dedup_keys_by_expiry ON dedup_keys(expires_at);

        CREATE TABLE kv (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            expires_at INTEGER
        ) WITHOUT ROWID;
        CREATE INDEX kv_by_expiry ON kv(expires_at) WHERE expires_at IS NOT NULL;

        CREATE TABLE probe (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            at INTEGER NOT NULL
        );
    )sql");
}

// migrations[i] takes the schema from version i to i + 1; a new version is one more function.
constexpr std::array<void (*)(Database&), 1> kMigrations = {&migrateToV1};

void migrate(Database& db) {
    const int version = std::stoi(db.pragmaText("PRAGMA user_version"));
    const int latest = static_cast<int>(kMigrations.size());
    if (version > latest) {
        throw std::runtime_error("database schema version " + std::to_string(version) +
                                 " is newer than this build understands (" + std::to_string(latest) + ")");
    }
    for (int from = version; from < latest; ++from) {
        db.exec("BEGIN IMMEDIATE");
        try {
            kMigrations[static_cast<std::size_t>(from)](db);
            db.exec("PRAGMA user_version = " + std::to_string(from + 1));
            db.exec("COMMIT");
        } catch (...) {
            db.rollback();
            throw;
        }
    }
}

// Every statement the writer runs, prepared once per connection.
struct Statements {
    explicit Statements(sqlite3* db)
        : insertEvent(db, "INSERT INTO events(id, route, received_at, body) VALUES(?1, ?2, ?3, ?4)"),
          keyExpiry(db, "SELECT expires_at FROM dedup_keys WHERE key = ?1"),
          holdKey(db, "INSERT OR REPLACE INTO dedup_keys(key, expires_at) VALUES(?1, ?2)"),
          findCoalescing(db,
                         "SELECT id FROM deliveries WHERE coalesce_key = ?1 AND target = ?2 AND state = 'queued' "
                         "LIMIT 1"),
          recoalesce(db, "UPDATE deliveries SET event_ref = ?2 WHERE id = ?1"),
          insertDelivery(db,
                         "INSERT INTO deliveries(event_ref, route, target, state, created_at, next_attempt_at, "
                         "coalesce_key) VALUES(?1, ?2, ?3, 'queued', ?4, ?5, ?6)"),
          selectDue(db,
                    "SELECT d.id, d.route, d.attempts, d.created_at, d.next_attempt_at, d.last_error, d.event_ref, "
                    "e.body FROM deliveries d JOIN events e ON e.ref = d.event_ref "
                    "WHERE d.target = ?1 AND d.state = 'queued' AND d.next_attempt_at <= ?2 "
                    "ORDER BY d.next_attempt_at, d.id LIMIT ?3"),
          lease(db, "UPDATE deliveries SET state = 'leased', coalesce_key = NULL WHERE id = ?1"),
          nextDue(db, "SELECT MIN(next_attempt_at) FROM deliveries WHERE target = ?1 AND state = 'queued'"),
          quarantine(db,
                     "UPDATE deliveries SET state = 'dead', coalesce_key = NULL, last_error = ?2, dead_reason = ?2, "
                     "settled_at = ?3 WHERE id = ?1"),
          settleDelivered(db,
                          "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, last_error = ?2, "
                          "settled_at = ?3 WHERE id = ?1 AND state = 'leased'"),
          settleRetry(db,
                      "UPDATE deliveries SET state = 'queued', attempts = attempts + 1, last_error = ?2, "
                      "next_attempt_at = ?3 WHERE id = ?1 AND state = 'leased'"),
          settleDead(db,
                     "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, last_error = ?2, "
                     "dead_reason = ?2, settled_at = ?3 WHERE id = ?1 AND state = 'leased'"),
          release(db, "UPDATE deliveries SET state = 'queued' WHERE id = ?1 AND state = 'leased'"),
          insertAttempt(db, "INSERT INTO attempts(delivery_id, at, outcome, detail) VALUES(?1, ?2, ?3, ?4)"),
          trimAttempts(db,
                       "DELETE FROM attempts WHERE delivery_id = ?1 AND id <= (SELECT id FROM attempts "
                       "WHERE delivery_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)"),
          selectDead(db,
                     "SELECT d.id, d.route, d.target, d.attempts, d.created_at, d.next_attempt_at, d.last_error, "
                     "d.dead_reason, d.settled_at, e.body FROM deliveries d JOIN events e ON e.ref = d.event_ref "
                     "WHERE d.state = 'dead' ORDER BY d.settled_at DESC, d.id DESC LIMIT ?1"),
          deadTarget(db, "SELECT target FROM deliveries WHERE id = ?1 AND state = 'dead'"),
          replay(db,
                 "UPDATE deliveries SET state = 'queued', attempts = 0, created_at = ?2, next_attempt_at = ?2, "
                 "settled_at = NULL, dead_reason = NULL WHERE id = ?1 AND state = 'dead'"),
          getValue(db, "SELECT value, expires_at FROM kv WHERE key = ?1"),
          putValue(db, "INSERT OR REPLACE INTO kv(key, value, expires_at) VALUES(?1, ?2, ?3)"),
          eraseValue(db, "DELETE FROM kv WHERE key = ?1"),
          probe(db, "INSERT OR REPLACE INTO probe(id, at) VALUES(1, ?1)"),
          selectSettled(db,
                        "SELECT id, state FROM deliveries WHERE state IN ('delivered', 'dead') AND settled_at < ?1 "
                        "LIMIT ?2"),
          deleteAttempts(db, "DELETE FROM attempts WHERE delivery_id = ?1"),
          deleteDelivery(db, "DELETE FROM deliveries WHERE id = ?1"),
          pruneEvents(db,
                      "DELETE FROM events WHERE ref IN (SELECT ref FROM events e WHERE e.received_at < ?1 "
                      "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_ref = e.ref) LIMIT ?2)"),
          pruneKeys(db,
                    "DELETE FROM dedup_keys WHERE key IN (SELECT key FROM dedup_keys WHERE expires_at <= ?1 LIMIT ?2)"),
          pruneValues(db, "DELETE FROM kv WHERE key IN (SELECT key FROM kv WHERE expires_at <= ?1 LIMIT ?2)"),
          countUndelivered(db, "SELECT COUNT(*) FROM deliveries WHERE state IN ('queued', 'leased', 'dead')"),
          recoverLeases(db, "UPDATE deliveries SET state = 'queued' WHERE state = 'leased'"),
          countByTarget(db,
                        "SELECT target, SUM(state IN ('queued', 'leased')), SUM(state = 'dead') FROM deliveries "
                        "WHERE state IN ('queued', 'leased', 'dead') GROUP BY target") {}

    Statement insertEvent, keyExpiry, holdKey, findCoalescing, recoalesce, insertDelivery;
    Statement selectDue, lease, nextDue, quarantine;
    Statement settleDelivered, settleRetry, settleDead, release, insertAttempt, trimAttempts;
    Statement selectDead, deadTarget, replay;
    Statement getValue, putValue, eraseValue, probe;
    Statement selectSettled, deleteAttempts, deleteDelivery, pruneEvents, pruneKeys, pruneValues;
    Statement countUndelivered, recoverLeases, countByTarget;
};

fs::path createFolder(const fs::path& folder) {
    std::error_code error;
    fs::create_directories(folder, error);
    if (error) {
        throw std::runtime_error("cannot create the storage folder " + folder.string() + ": " + error.message());
    }
    return folder / kDatabaseFile;
}

// A database ready for the writer: created if missing, migrated, statements prepared.
struct Connection {
    Connection(const fs::path& folder, SyncMode sync) : db(createFolder(folder), sync) {
        migrate(db);
        statements.emplace(db.get());
    }

    Database db;
    std::optional<Statements> statements;  // declared after db: finalized before it closes
};

// Why a transaction did not commit. A storage fault fails every request in it and makes the
// spool unhealthy; any other error belongs to one request.
struct Failure {
    std::string text;
    bool storageFault = false;
};

// One request waiting for the writer.
class Op {
public:
    explicit Op(bool refusable) : refusable_(refusable) {}
    virtual ~Op() = default;

    // Accepts and value writes may be refused when too many wait; work the dispatcher already
    // holds (claims, settlements) never is.
    bool refusable() const { return refusable_; }
    // Runs inside the batch's transaction, on the writer thread; throws on failure.
    virtual void apply() = 0;
    // Completes the caller's handler: with apply()'s result once committed (failure null), or
    // with the failure of its transaction or of its submission.
    virtual void finish(const Failure* failure) = 0;

private:
    bool refusable_;
};

// The completion signature of an operation with this result.
template <class Result>
struct Signature {
    using type = void(Result);
};
template <>
struct Signature<void> {
    using type = void();
};

template <class Result, class Apply, class Fail>
class BasicOp final : public Op {
public:
    using Handler = boost::asio::any_completion_handler<typename Signature<Result>::type>;

    BasicOp(bool refusable, Handler handler, Apply apply, Fail fail)
        : Op(refusable), handler_(std::move(handler)), apply_(std::move(apply)), fail_(std::move(fail)) {}

    void apply() override {
        if constexpr (std::is_void_v<Result>) {
            apply_();
        } else {
            result_ = apply_();
        }
    }

    void finish(const Failure* failure) override {
        if constexpr (std::is_void_v<Result>) {
            if (failure) {
                fail_(*failure);
            }
            complete(std::move(handler_));
        } else {
            complete(std::move(handler_), failure ? fail_(*failure) : std::move(result_));
        }
    }

private:
    Handler handler_;
    Apply apply_;
    Fail fail_;
    std::conditional_t<std::is_void_v<Result>, std::monostate, Result> result_{};
};

template <class Result, class Handler, class Apply, class Fail>
std::unique_ptr<Op> makeOp(bool refusable, Handler handler, Apply apply, Fail fail) {
    return std::make_unique<BasicOp<Result, Apply, Fail>>(refusable, std::move(handler), std::move(apply),
                                                          std::move(fail));
}

// An accept request with its events already in storage form.
struct PreparedAccept {
    AcceptRequest request;
    std::string body;                      // the event as received
    std::vector<std::string> routeBodies;  // per route, its form of the event; empty when the same
};

class SqliteStorageImpl final : public SqliteStorage {
public:
    SqliteStorageImpl(const StorageConfig& config, SqliteTuning tuning)
        : folder_(config.path),
          sync_(config.sync),
          retention_(config.retention),
          maxQueued_(config.maxQueuedDeliveries),
          tuning_(std::move(tuning)) {
        tuning_.maxBatch = std::max<std::size_t>(tuning_.maxBatch, 1);
        try {
            connection_ = std::make_unique<Connection>(folder_, sync_);
            // A lease dies with the process that took it. Its attempt may or may not have reached
            // the target, so it is sent again: at-least-once.
            const int recovered = Query(statements().recoverLeases).run();
            if (recovered > 0) {
                spdlog::info("storage: {} deliveries in flight at the last stop are queued again", recovered);
            }
            view_.undelivered = countUndelivered();
        } catch (const std::exception& error) {
            throw std::runtime_error("storage " + folder_.string() + ": " + error.what());
        }
        nextPrune_ = SteadyClock::now() + tuning_.pruneInterval;
        writer_ = std::thread([this] { writerLoop(); });
    }

    // Queued requests are still written and answered; then the database is closed.
    ~SqliteStorageImpl() override {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_one();
        writer_.join();
    }

    void accept(AcceptRequest request, boost::asio::any_completion_handler<void(AcceptResult)> handler) override {
        auto prepared = prepareAccept(std::move(request));
        if (auto* error = std::get_if<std::string>(&prepared)) {
            complete(std::move(handler), AcceptResult{.stored = false, .error = std::move(*error)});
            return;
        }
        submit(makeOp<AcceptResult>(
            true, std::move(handler),
            [this, prepared = std::get<PreparedAccept>(std::move(prepared))] { return doAccept(prepared); },
            [](const Failure& failure) { return AcceptResult{.stored = false, .error = failure.text}; }));
    }

    void claim(std::string target, std::size_t max, TimePoint now,
               boost::asio::any_completion_handler<void(Claim)> handler) override {
        submit(makeOp<Claim>(
            false, std::move(handler),
            [this, target = std::move(target), max, now] { return doClaim(target, max, now); },
            // Ask again once the disk may work again, rather than sleep until new work arrives.
            [this](const Failure&) {
                return Claim{.deliveries = {}, .nextDue = Clock::now() + tuning_.probeInterval};
            }));
    }

    void settle(std::vector<Settlement> settlements, boost::asio::any_completion_handler<void()> handler) override {
        auto kept = settlements;
        submit(makeOp<void>(
            false, std::move(handler),
            [this, settlements = std::move(settlements)] { applySettlements(settlements, Clock::now()); },
            [this, kept = std::move(kept)](const Failure& failure) { holdBack(kept, failure); }));
    }

    void deadLetters(std::size_t limit,
                     boost::asio::any_completion_handler<void(std::vector<DeadLetter>)> handler) override {
        submit(makeOp<std::vector<DeadLetter>>(
            false, std::move(handler), [this, limit] { return doDeadLetters(limit); },
            [](const Failure&) { return std::vector<DeadLetter>(); }));
    }

    void replay(std::uint64_t deliveryId, boost::asio::any_completion_handler<void(bool)> handler) override {
        submit(makeOp<bool>(
            false, std::move(handler), [this, deliveryId] { return doReplay(deliveryId); },
            [](const Failure&) { return false; }));
    }

    void getValue(std::string key,
                  boost::asio::any_completion_handler<void(std::optional<std::string>)> handler) override {
        submit(makeOp<std::optional<std::string>>(
            false, std::move(handler), [this, key = std::move(key)] { return doGetValue(key); },
            [](const Failure&) { return std::optional<std::string>(); }));
    }

    void putValue(std::string key, std::string value, Duration ttl,
                  boost::asio::any_completion_handler<void(bool)> handler) override {
        submit(makeOp<bool>(
            true, std::move(handler),
            [this, key = std::move(key), value = std::move(value), ttl] { return doPutValue(key, value, ttl); },
            [](const Failure&) { return false; }));
    }

    void eraseValue(std::string key, boost::asio::any_completion_handler<void()> handler) override {
        submit(makeOp<void>(
            false, std::move(handler),
            [this, key = std::move(key)] { Query(statements().eraseValue).bind(1, key).run(); },
            [](const Failure& failure) { spdlog::warn("storage: a value was not erased: {}", failure.text); }));
    }

    void counts(boost::asio::any_completion_handler<void(std::vector<TargetCounts>)> handler) override {
        submit(makeOp<std::vector<TargetCounts>>(
            false, std::move(handler), [this] { return doCounts(); },
            [](const Failure&) { return std::vector<TargetCounts>(); }));
    }

    void onWork(std::function<void(const std::string&)> listener) override {
        std::lock_guard lock(listenerMutex_);
        listener_ = std::move(listener);
    }

    bool healthy() const override { return healthy_.load(); }

    std::uint64_t transactionsCommitted() const override { return transactions_.load(); }

private:
    using SteadyClock = std::chrono::steady_clock;

    // What the writer knows beyond the database, restored with it when a transaction rolls back.
    struct View {
        std::size_t undelivered = 0;        // queued, leased and dead deliveries: the bounded work
        std::vector<std::string> woken;     // targets with new due work, told after the commit
        std::vector<Settlement> unsettled;  // settlements a failed transaction did not record
    };

    // ---- Caller side ---------------------------------------------------------------------------

    // Serialises on the caller's thread, so the writer spends its time on the disk only.
    static std::variant<PreparedAccept, std::string> prepareAccept(AcceptRequest request) {
        if (!request.event) {
            return std::string("no event to store");
        }
        try {
            PreparedAccept prepared;
            prepared.body = toStorageJson(*request.event).dump();
            for (const auto& route : request.routes) {
                if (!route.event) {
                    return "route " + route.name + " has no event to store";
                }
                std::string body;
                if (route.event != request.event) {
                    body = toStorageJson(*route.event).dump();
                    if (body == prepared.body) {
                        body.clear();
                    }
                }
                prepared.routeBodies.push_back(std::move(body));
            }
            prepared.request = std::move(request);
            return prepared;
        } catch (const std::exception& error) {
            return std::string("event cannot be stored: ") + error.what();
        }
    }

    void submit(std::unique_ptr<Op> op) {
        std::unique_lock lock(mutex_);
        if (stopping_) {
            lock.unlock();
            const Failure failure{"storage is shutting down", false};
            op->finish(&failure);
            return;
        }
        if (op->refusable()) {
            if (waiting_ >= tuning_.maxWaitingRequests) {
                const auto waiting = waiting_;
                lock.unlock();
                const Failure failure{"storage busy: " + std::to_string(waiting) + " requests waiting", false};
                op->finish(&failure);
                return;
            }
            ++waiting_;
        }
        queue_.push_back(std::move(op));
        lock.unlock();
        wake_.notify_one();
    }

    // ---- Writer thread -------------------------------------------------------------------------

    void writerLoop() {
        std::unique_lock lock(mutex_);
        for (;;) {
            wake_.wait_until(lock, nextTimer(), [this] { return stopping_ || !queue_.empty(); });
            std::vector<std::unique_ptr<Op>> batch;
            while (!queue_.empty() && batch.size() < tuning_.maxBatch) {
                if (queue_.front()->refusable()) {
                    --waiting_;
                }
                batch.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
            const bool done = batch.empty() && stopping_;
            lock.unlock();
            if (done) {
                break;
            }
            try {
                if (!batch.empty()) {
                    if (tuning_.beforeBatch) {
                        tuning_.beforeBatch();
                    }
                    commit(batch);
                }
                runTimers();
            } catch (const std::exception& error) {
                // Storage failures are values; this is a bug or memory exhaustion. The writer
                // keeps serving rather than take the process down.
                spdlog::error("storage: writer: {}", error.what());
            }
            lock.lock();
        }
        // Last chance for settlements a failure held back; should it fail too, their leased rows
        // are queued again at the next start.
        if (!view_.unsettled.empty()) {
            Failure failure;
            transact([] {}, failure);
        }
        connection_.reset();
    }

    SteadyClock::time_point nextTimer() const { return healthy_ ? nextPrune_ : nextProbe_; }

    // Group commit: the whole batch is one transaction, so a burst costs one sync. Should one
    // request be at fault (not the storage), each is retried alone so only that one fails.
    void commit(const std::vector<std::unique_ptr<Op>>& ops) {
        Failure failure;
        if (transact(
                [&] {
                    for (const auto& op : ops) {
                        op->apply();
                    }
                },
                failure)) {
            for (const auto& op : ops) {
                op->finish(nullptr);
            }
            return;
        }
        if (!failure.storageFault && ops.size() > 1) {
            spdlog::warn("storage: a batch of {} requests failed ({}); retrying them one by one", ops.size(),
                         failure.text);
            for (const auto& op : ops) {
                commitOne(*op);
            }
            return;
        }
        for (const auto& op : ops) {
            op->finish(&failure);
        }
    }

    void commitOne(Op& op) {
        Failure failure;
        const bool committed = transact([&] { op.apply(); }, failure);
        op.finish(committed ? nullptr : &failure);
    }

    // Runs `body` in one write transaction; on any failure everything it did is rolled back, in
    // the database and in the view. Tells the onWork listener about new work after a commit.
    template <class Body>
    bool transact(Body&& body, Failure& failure) {
        const View saved = view_;
        bool moved = false;
        try {
            if (!connection_) {
                throw SqliteError(SQLITE_CANTOPEN, "the database is not open: " + openError_);
            }
            if (connection_->db.hasMoved()) {
                moved = true;
                throw SqliteError(SQLITE_READONLY_DBMOVED, "the database file was deleted or replaced");
            }
            connection_->db.exec("BEGIN IMMEDIATE");
            if (!healthy_) {
                // Only a commit that wrote proves the disk works again; a read-only one would not.
                Query(statements().probe).bind(1, toNanos(Clock::now())).run();
            }
            if (!view_.unsettled.empty()) {
                applySettlements(std::exchange(view_.unsettled, {}), Clock::now());
            }
            body();
            connection_->db.exec("COMMIT");
            ++transactions_;
            markHealthy();
            notify();
            return true;
        } catch (const SqliteError& error) {
            failure = {error.what(), isStorageFault(error.code())};
        } catch (const std::exception& error) {
            failure = {error.what(), false};
        } catch (...) {
            failure = {"unknown error", false};
        }
        if (connection_) {
            connection_->db.rollback();
        }
        view_ = saved;
        if (failure.storageFault) {
            failure.text = "storage unavailable: " + failure.text;
            markUnhealthy(failure.text);
            if (moved) {
                reopen();
            }
        }
        return false;
    }

    void markHealthy() {
        if (!healthy_.exchange(true)) {
            spdlog::info("storage: available again");
        }
    }

    void markUnhealthy(const std::string& why) {
        if (healthy_.exchange(false)) {
            spdlog::error("{}; answering 503 until a write succeeds", why);
        }
        nextProbe_ = SteadyClock::now() + tuning_.probeInterval;
    }

    // A deleted or replaced file is recreated: what it held is gone either way, and the spool
    // must take new work again.
    void reopen() {
        connection_.reset();
        try {
            connection_ = std::make_unique<Connection>(folder_, sync_);
            view_.undelivered = countUndelivered();
            spdlog::warn("storage: reopened {} after the database file went away", folder_.string());
        } catch (const std::exception& error) {
            openError_ = error.what();
        }
    }

    void runTimers() {
        const auto now = SteadyClock::now();
        if (!healthy_ && now >= nextProbe_) {
            if (!connection_) {
                reopen();
            }
            Failure failure;
            transact([] {}, failure);  // writes the probe row, as every transaction does while unhealthy
            nextProbe_ = SteadyClock::now() + tuning_.probeInterval;
        }
        if (healthy_ && now >= nextPrune_) {
            const bool more = prune();
            // A backlog is removed chunk by chunk, with queued requests served in between.
            nextPrune_ = more ? SteadyClock::now() : SteadyClock::now() + tuning_.pruneInterval;
        }
    }

    void notify() {
        if (view_.woken.empty()) {
            return;
        }
        auto targets = std::exchange(view_.woken, {});
        std::sort(targets.begin(), targets.end());
        targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
        std::function<void(const std::string&)> listener;
        {
            std::lock_guard lock(listenerMutex_);
            listener = listener_;
        }
        if (!listener) {
            return;
        }
        for (const auto& target : targets) {
            try {
                listener(target);
            } catch (const std::exception& error) {
                spdlog::error("storage: the work listener failed for target {}: {}", target, error.what());
            }
        }
    }

    // A settlement that was not recorded because the storage failed is applied with the next
    // transaction that works; until then its delivery stays leased, so it is not sent twice.
    void holdBack(const std::vector<Settlement>& settlements, const Failure& failure) {
        if (failure.storageFault) {
            view_.unsettled.insert(view_.unsettled.end(), settlements.begin(), settlements.end());
        } else {
            spdlog::warn("storage: {} settlements not recorded ({}); their deliveries are sent again after a restart",
                         settlements.size(), failure.text);
        }
    }

    Statements& statements() { return *connection_->statements; }

    // ---- Operations, inside a transaction --------------------------------------------------------

    AcceptResult doAccept(const PreparedAccept& prepared) {
        const AcceptRequest& request = prepared.request;
        const auto now = Clock::now();
        AcceptResult result;
        if (!request.idempotencyKey.empty() && keyHeld(request.idempotencyKey, now)) {
            result.stored = true;
            result.duplicateEvent = true;
            return result;
        }
        std::size_t newDeliveries = 0;
        for (const auto& route : request.routes) {
            newDeliveries += route.targets.size();
        }
        if (view_.undelivered + newDeliveries > maxQueued_) {
            result.error = "queue full: " + std::to_string(view_.undelivered) + " deliveries waiting";
            return result;
        }
        if (!request.idempotencyKey.empty()) {
            holdKey(request.idempotencyKey, now + request.idempotencyWindow);
        }
        const std::int64_t eventRef = insertEvent(*request.event, nullptr, prepared.body);
        GateState gates{*this};
        for (std::size_t i = 0; i < request.routes.size(); ++i) {
            const auto& route = request.routes[i];
            if (auto why = applyDedupGates(route.dedup, gates, now, request.event->id)) {
                result.suppressed.push_back({route.name, std::move(*why)});
                continue;
            }
            std::optional<std::int64_t> routeRef;  // this route's form of the event, stored when first needed
            const auto ref = [&] {
                if (prepared.routeBodies[i].empty()) {
                    return eventRef;
                }
                if (!routeRef) {
                    routeRef = insertEvent(*route.event, &route.name, prepared.routeBodies[i]);
                }
                return *routeRef;
            };
            for (const auto& target : route.targets) {
                if (!route.coalesceKey.empty()) {
                    // A queued, unclaimed delivery of the same burst takes the newer event and keeps its due time.
                    Query find(statements().findCoalescing);
                    find.bind(1, route.coalesceKey).bind(2, target);
                    if (find.step()) {
                        Query(statements().recoalesce).bind(1, find.integer(0)).bind(2, ref()).run();
                        continue;
                    }
                }
                Query insert(statements().insertDelivery);
                insert.bind(1, ref())
                    .bind(2, route.name)
                    .bind(3, target)
                    .bind(4, toNanos(now))
                    .bind(5, toNanos(now + route.delay));
                if (route.coalesceKey.empty()) {
                    insert.bindNull(6);
                } else {
                    insert.bind(6, route.coalesceKey);
                }
                insert.run();
                ++view_.undelivered;
                view_.woken.push_back(target);
            }
        }
        result.stored = true;
        return result;
    }

    Claim doClaim(const std::string& target, std::size_t max, TimePoint now) {
        struct Row {
            std::int64_t id;
            std::string route;
            std::int64_t attempts;
            std::int64_t createdAt;
            std::int64_t nextAttemptAt;
            std::string lastError;
            std::int64_t eventRef;
            std::string body;
        };
        std::vector<Row> rows;
        {
            Query due(statements().selectDue);
            due.bind(1, target).bind(2, toNanos(now)).bind(3, toLimit(max));
            while (due.step()) {
                rows.push_back({due.integer(0), due.text(1), due.integer(2), due.integer(3), due.integer(4),
                                due.text(5), due.integer(6), due.text(7)});
            }
        }
        Claim claim;
        std::map<std::int64_t, EventPtr> events;  // deliveries of one event share one parsed copy
        for (auto& row : rows) {
            EventPtr& event = events[row.eventRef];
            if (!event) {
                try {
                    event = std::make_shared<const Event>(fromStorageJson(nlohmann::json::parse(row.body)));
                } catch (const std::exception& error) {
                    // A record nobody can read would be claimed forever: it becomes a dead letter.
                    const std::string reason = std::string("unreadable event record: ") + error.what();
                    spdlog::error("storage: delivery {}: {}", row.id, reason);
                    Query(statements().quarantine).bind(1, row.id).bind(2, reason).bind(3, toNanos(Clock::now())).run();
                    events.erase(row.eventRef);
                    continue;
                }
            }
            Query(statements().lease).bind(1, row.id).run();
            claim.deliveries.push_back(Delivery{.id = static_cast<std::uint64_t>(row.id),
                                                .route = std::move(row.route),
                                                .target = target,
                                                .event = event,
                                                .attempts = static_cast<int>(row.attempts),
                                                .createdAt = fromNanos(row.createdAt),
                                                .nextAttemptAt = fromNanos(row.nextAttemptAt),
                                                .lastError = std::move(row.lastError)});
        }
        Query next(statements().nextDue);
        next.bind(1, target);
        if (next.step() && !next.isNull(0)) {
            claim.nextDue = fromNanos(next.integer(0));
        }
        return claim;
    }

    void applySettlements(const std::vector<Settlement>& settlements, TimePoint now) {
        for (const auto& settlement : settlements) {
            const auto id = static_cast<std::int64_t>(settlement.deliveryId);
            std::string_view outcome;
            int changed = 0;
            switch (settlement.kind) {
                case SettleKind::delivered:
                    changed = Query(statements().settleDelivered)
                                  .bind(1, id)
                                  .bind(2, settlement.error)
                                  .bind(3, toNanos(now))
                                  .run();
                    view_.undelivered -= static_cast<std::size_t>(changed);
                    outcome = "delivered";
                    break;
                case SettleKind::retry:
                    changed = Query(statements().settleRetry)
                                  .bind(1, id)
                                  .bind(2, settlement.error)
                                  .bind(3, toNanos(settlement.nextAttemptAt))
                                  .run();
                    outcome = "retry";
                    break;
                case SettleKind::dead:
                    // Dead letters stay counted against the bound: they are held until replayed.
                    changed = Query(statements().settleDead)
                                  .bind(1, id)
                                  .bind(2, settlement.error)
                                  .bind(3, toNanos(now))
                                  .run();
                    outcome = "dead";
                    break;
                case SettleKind::release:
                    // Not attempted: back to the queue as it was, with no attempt to remember.
                    Query(statements().release).bind(1, id).run();
                    break;
            }
            if (changed > 0) {
                Query(statements().insertAttempt)
                    .bind(1, id)
                    .bind(2, toNanos(now))
                    .bind(3, outcome)
                    .bind(4, settlement.error)
                    .run();
                Query(statements().trimAttempts).bind(1, id).bind(2, toLimit(tuning_.attemptsKept)).run();
            }
        }
    }

    std::vector<DeadLetter> doDeadLetters(std::size_t limit) {
        std::vector<DeadLetter> letters;
        Query dead(statements().selectDead);
        dead.bind(1, toLimit(limit));
        while (dead.step()) {
            const auto id = dead.integer(0);
            EventPtr event;
            try {
                event = std::make_shared<const Event>(fromStorageJson(nlohmann::json::parse(dead.text(9))));
            } catch (const std::exception& error) {
                spdlog::warn("storage: dead letter {} has an unreadable event record: {}", id, error.what());
                continue;
            }
            letters.push_back(DeadLetter{.delivery = Delivery{.id = static_cast<std::uint64_t>(id),
                                                              .route = dead.text(1),
                                                              .target = dead.text(2),
                                                              .event = std::move(event),
                                                              .attempts = static_cast<int>(dead.integer(3)),
                                                              .createdAt = fromNanos(dead.integer(4)),
                                                              .nextAttemptAt = fromNanos(dead.integer(5)),
                                                              .lastError = dead.text(6)},
                                         .reason = dead.text(7),
                                         .deadAt = fromNanos(dead.integer(8))});
        }
        return letters;
    }

    bool doReplay(std::uint64_t deliveryId) {
        const auto id = static_cast<std::int64_t>(deliveryId);
        std::string target;
        {
            Query find(statements().deadTarget);
            find.bind(1, id);
            if (!find.step()) {
                return false;
            }
            target = find.text(0);
        }
        // A replay is a fresh start: due now, no attempts, and a new maxAge.
        Query(statements().replay).bind(1, id).bind(2, toNanos(Clock::now())).run();
        view_.woken.push_back(std::move(target));
        return true;
    }

    std::optional<std::string> doGetValue(const std::string& key) {
        Query get(statements().getValue);
        get.bind(1, key);
        if (get.step() && (get.isNull(1) || get.integer(1) > toNanos(Clock::now()))) {
            return get.text(0);
        }
        return std::nullopt;
    }

    bool doPutValue(const std::string& key, const std::string& value, Duration ttl) {
        std::optional<std::int64_t> expiry;
        if (ttl.count() > 0) {
            expiry = toNanos(Clock::now() + ttl);
        }
        Query(statements().putValue).bind(1, key).bind(2, value).bind(3, expiry).run();
        return true;
    }

    // Removes delivered and dead rows older than the retention, events nothing refers to any
    // more, and expired keys and values. True when there is more to remove.
    bool prune() {
        bool more = false;
        Failure failure;
        transact(
            [&] {
                const auto now = Clock::now();
                const std::int64_t cutoff = toNanos(now - retention_);
                std::vector<std::pair<std::int64_t, bool>> settled;  // id, dead
                {
                    Query select(statements().selectSettled);
                    select.bind(1, cutoff).bind(2, kPruneChunk);
                    while (select.step()) {
                        settled.emplace_back(select.integer(0), select.text(1) == "dead");
                    }
                }
                for (const auto& [id, dead] : settled) {
                    Query(statements().deleteAttempts).bind(1, id).run();
                    Query(statements().deleteDelivery).bind(1, id).run();
                    if (dead) {
                        --view_.undelivered;
                    }
                }
                const int events = Query(statements().pruneEvents).bind(1, cutoff).bind(2, kPruneChunk).run();
                const int keys = Query(statements().pruneKeys).bind(1, toNanos(now)).bind(2, kPruneChunk).run();
                const int values = Query(statements().pruneValues).bind(1, toNanos(now)).bind(2, kPruneChunk).run();
                more = static_cast<std::int64_t>(settled.size()) == kPruneChunk || events == kPruneChunk ||
                       keys == kPruneChunk || values == kPruneChunk;
            },
            failure);
        return more;
    }

    // ---- Row helpers -----------------------------------------------------------------------------

    // Dedup gate state lives in the kv table under a prefix of its own, written in the accept's
    // transaction.
    struct GateState final : DedupStateStore {
        explicit GateState(SqliteStorageImpl& storage) : storage(storage) {}
        std::optional<std::string> read(const std::string& key, TimePoint now) override {
            Query get(storage.statements().getValue);
            get.bind(1, stored(key));
            if (get.step() && (get.isNull(1) || get.integer(1) > toNanos(now))) return get.text(0);
            return std::nullopt;
        }
        void put(const std::string& key, const std::string& value, TimePoint expiry) override {
            Query(storage.statements().putValue).bind(1, stored(key)).bind(2, value).bind(3, toNanos(expiry)).run();
        }
        void erase(const std::string& key) override {
            Query(storage.statements().eraseValue).bind(1, stored(key)).run();
        }
        static std::string stored(const std::string& key) { return "dedup-gate:" + key; }
        SqliteStorageImpl& storage;
    };

    bool keyHeld(const std::string& key, TimePoint now) {
        Query query(statements().keyExpiry);
        query.bind(1, key);
        return query.step() && query.integer(0) > toNanos(now);
    }

    void holdKey(const std::string& key, TimePoint expiry) {
        Query(statements().holdKey).bind(1, key).bind(2, toNanos(expiry)).run();
    }

    std::int64_t insertEvent(const Event& event, const std::string* route, const std::string& body) {
        Query insert(statements().insertEvent);
        insert.bind(1, event.id).bind(3, toNanos(event.receivedAt)).bind(4, body);
        if (route) {
            insert.bind(2, *route);
        } else {
            insert.bindNull(2);
        }
        insert.run();
        return sqlite3_last_insert_rowid(connection_->db.get());
    }

    std::vector<TargetCounts> doCounts() {
        std::vector<TargetCounts> out;
        Query count(statements().countByTarget);
        while (count.step()) {
            out.push_back({.target = count.text(0),
                           .waiting = static_cast<std::uint64_t>(count.integer(1)),
                           .dead = static_cast<std::uint64_t>(count.integer(2))});
        }
        return out;
    }

    std::size_t countUndelivered() {
        Query count(statements().countUndelivered);
        return count.step() ? static_cast<std::size_t>(count.integer(0)) : 0;
    }

    const fs::path folder_;
    const SyncMode sync_;
    const Duration retention_;
    const std::size_t maxQueued_;
    SqliteTuning tuning_;

    // Shared with callers.
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::unique_ptr<Op>> queue_;
    std::size_t waiting_ = 0;  // refusable requests in queue_
    bool stopping_ = false;
    std::mutex listenerMutex_;
    std::function<void(const std::string&)> listener_;
    std::atomic<bool> healthy_{true};
    std::atomic<std::uint64_t> transactions_{0};

    // The writer thread's own.
    std::unique_ptr<Connection> connection_;
    std::string openError_;
    View view_;
    SteadyClock::time_point nextPrune_;
    SteadyClock::time_point nextProbe_;
    std::thread writer_;  // last: starts once everything above is ready
};

}  // namespace

std::unique_ptr<SqliteStorage> makeSqliteStorage(const StorageConfig& config, SqliteTuning tuning) {
    return std::make_unique<SqliteStorageImpl>(config, std::move(tuning));
}

std::unique_ptr<Storage> makeSqliteStorage(const StorageConfig& config) { return makeSqliteStorage(config, {}); }

std::unique_ptr<Storage> makeStorage(const StorageConfig& config) {
    return config.redis ? makeRedisStorage(config) : makeSqliteStorage(config);
}

}  // namespace fluxrelay
