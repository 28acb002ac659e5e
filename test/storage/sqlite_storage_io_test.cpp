// The SQLite spool: the Storage contract, plus what only a durable spool promises — restarts,
// schema migration, group commit, bounded waiting, retention, and storage failures it recovers from.
#include <doctest/doctest.h>

#include <sqlite3.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <stdexcept>
#include <thread>

#include "config/config.hpp"
#include "storage/sqlite_storage.hpp"
#include "storage_contract.hpp"
#include "test/support/temp_dir.hpp"

namespace fluxrelay {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace contract;

using test::TempDir;

StorageConfig configAt(const fs::path& folder, std::size_t maxQueued = 1'000'000) {
    return StorageConfig{.path = folder.string(), .sync = SyncMode::normal, .maxQueuedDeliveries = maxQueued};
}

// A second connection to the database file, to look at what the spool wrote.
class RawDatabase {
public:
    explicit RawDatabase(const fs::path& file) {
        if (sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
            throw std::runtime_error("cannot open " + file.string());
        }
        sqlite3_busy_timeout(db_, 5000);
    }
    ~RawDatabase() { sqlite3_close_v2(db_); }
    RawDatabase(const RawDatabase&) = delete;
    RawDatabase& operator=(const RawDatabase&) = delete;

    std::string text(const std::string& sql) {
        sqlite3_stmt* stmt = nullptr;
        if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
            throw std::runtime_error(sqlite3_errmsg(db_));
        }
        std::string value;
        const int rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW && sqlite3_column_text(stmt, 0)) {
            value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
        } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            value = std::string("error: ") + sqlite3_errmsg(db_);
        }
        sqlite3_finalize(stmt);
        return value;
    }
    long long number(const std::string& sql) { return std::stoll(text(sql)); }
    void exec(const std::string& sql) {
        if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
            throw std::runtime_error(sqlite3_errmsg(db_));
        }
    }

private:
    sqlite3* db_ = nullptr;
};

// Holds the writer thread before its first batch until released, so tests can line requests
// up behind it. Safe to outlive: the hook shares its state.
class WriterGate {
public:
    WriterGate() : state_(std::make_shared<State>()) { state_->released = state_->release.get_future().share(); }
    ~WriterGate() { release(); }

    std::function<void()> hook() {
        return [state = state_] {
            if (state->armed.exchange(false)) {
                state->entered.set_value();
                state->released.wait();
            }
        };
    }
    void waitHeld() { state_->entered.get_future().wait(); }
    void release() {
        if (!state_->opened.exchange(true)) {
            state_->release.set_value();
        }
    }

private:
    struct State {
        std::atomic<bool> armed{true};
        std::atomic<bool> opened{false};
        std::promise<void> entered;
        std::promise<void> release;
        std::shared_future<void> released;
    };
    std::shared_ptr<State> state_;
};

// Makes every write to a regular file fail with EFBIG in this whole process, as a full disk
// makes them fail with ENOSPC. Unlike permissions, root is bound by it, and it needs no privilege.
class FileSizeLimit {
public:
    explicit FileSizeLimit(rlim_t bytes) {
        getrlimit(RLIMIT_FSIZE, &saved_);
        previous_ = std::signal(SIGXFSZ, SIG_IGN);  // fail the write instead of killing the process
        rlimit limited = saved_;
        limited.rlim_cur = bytes;
        active_ = setrlimit(RLIMIT_FSIZE, &limited) == 0;
    }
    ~FileSizeLimit() {
        setrlimit(RLIMIT_FSIZE, &saved_);
        std::signal(SIGXFSZ, previous_);
    }
    FileSizeLimit(const FileSizeLimit&) = delete;
    FileSizeLimit& operator=(const FileSizeLimit&) = delete;

    bool active() const { return active_; }

private:
    rlimit saved_{};
    void (*previous_)(int) = nullptr;
    bool active_ = false;
};

template <class Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!predicate()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

std::vector<std::string> eventIds(const Claim& claim) {
    std::vector<std::string> ids;
    for (const auto& delivery : claim.deliveries) {
        ids.push_back(delivery.event->id);
    }
    std::sort(ids.begin(), ids.end());
    return ids;
}

}  // namespace

struct SqliteStorageFixture {
    explicit SqliteStorageFixture(std::size_t maxQueuedDeliveries)
        : storage(makeSqliteStorage(configAt(dir.path() / "spool", maxQueuedDeliveries))) {}
    TempDir dir;
    std::unique_ptr<Storage> storage;  // after dir: closed before the folder is removed
};

}  // namespace fluxrelay

TYPE_TO_STRING(fluxrelay::SqliteStorageFixture);

namespace fluxrelay {

FLUXRELAY_STORAGE_CONTRACT(SqliteStorageFixture);

TEST_CASE("the SQLite spool creates its folder and a WAL database at the current schema version") {
    TempDir dir;
    const auto folder = dir.path() / "data" / "nested";
    {
        auto storage = makeSqliteStorage(configAt(folder));
        CHECK(storage->healthy());
    }
    REQUIRE(fs::exists(folder / "fluxrelay.db"));
    RawDatabase raw(folder / "fluxrelay.db");
    CHECK(raw.text("PRAGMA journal_mode") == "wal");
    CHECK(raw.number("PRAGMA user_version") == 3);
}

TEST_CASE("migration from an empty database creates the schema") {
    TempDir dir;
    std::ofstream(dir.path() / "fluxrelay.db").close();  // an empty file is an empty database to SQLite
    REQUIRE(fs::file_size(dir.path() / "fluxrelay.db") == 0);
    {
        auto storage = makeSqliteStorage(configAt(dir.path()));
        CHECK(accept(*storage, request("e1")).stored);
    }
    RawDatabase raw(dir.path() / "fluxrelay.db");
    CHECK(raw.number("PRAGMA user_version") == 3);
    for (const char* table : {"queue", "dead", "dedup", "kv", "probe", "failing_objects"}) {
        CAPTURE(table);
        CHECK(raw.number(std::string("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '") + table +
                         "'") == 1);
    }
    for (const char* gone : {"events", "deliveries", "attempts", "dedup_keys"}) {
        CAPTURE(gone);
        CHECK(raw.number(std::string("SELECT COUNT(*) FROM sqlite_master WHERE name = '") + gone + "'") == 0);
    }
    CHECK(raw.number("SELECT COUNT(*) FROM queue") == 1);
}

// test/storage/fixtures/spool-v1.db was written by the v1 spool (write_v1_spool.cpp beside it).
TEST_CASE("a v1 database left by the previous release migrates with nothing lost") {
    TempDir dir;
    fs::copy_file(fs::path(FLUXRELAY_STORAGE_FIXTURES) / "spool-v1.db", dir.path() / "fluxrelay.db");
    {
        RawDatabase raw(dir.path() / "fluxrelay.db");
        REQUIRE(raw.number("PRAGMA user_version") == 1);
    }
    auto storage = makeSqliteStorage(configAt(dir.path()));
    {
        RawDatabase raw(dir.path() / "fluxrelay.db");
        CHECK(raw.number("PRAGMA user_version") == 3);
    }

    // Queued work, including the delivery leased when v1 stopped, in due order, events intact.
    const auto am = claim(*storage, "am", 10);
    REQUIRE(am.deliveries.size() == 4);
    CHECK(eventIds(am) ==
          std::vector<std::string>{"0192f0a1b2c3aaaaaaaaaaaaaaaaaaa1", "0192f0a1b2c4aaaaaaaaaaaaaaaaaaa2",
                                   "0192f0a1b2c5aaaaaaaaaaaaaaaaaaa3", "0192f0a1b2c7aaaaaaaaaaaaaaaaaaa5"});
    const Delivery& retried = am.deliveries[0];
    CHECK(retried.id == 1);
    CHECK(retried.route == "errors");
    CHECK(retried.attempts == 1);
    CHECK(retried.lastError == "HTTP 503: try later");
    CHECK(retried.nextAttemptAt < retried.createdAt);
    const FluxEvent* flux = retried.event->flux();
    REQUIRE(flux != nullptr);
    CHECK(flux->involvedObject.path() == "Kustomization/flux-system/apps");
    CHECK(flux->severity == "error");
    CHECK(flux->metadata.at("revision") == "main@sha1:2f8b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d");
    CHECK(flux->reportingController == "kustomize-controller");
    // The route's own form of an event, not the form it was received in.
    const Delivery& withCluster = am.deliveries[2];
    CHECK(withCluster.route == "with-cluster");
    REQUIRE(withCluster.event->flux() != nullptr);
    CHECK(withCluster.event->flux()->metadata.at("cluster") == "home");
    for (const auto& delivery : am.deliveries) {
        settle(*storage, {{.deliveryId = delivery.id, .kind = SettleKind::delivered}});
    }

    // The dead letter, with its reason and its GitHub event byte for byte.
    const auto letters = deadLetters(*storage);
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].delivery.target == "gh");
    CHECK(letters[0].delivery.attempts == 1);
    CHECK(letters[0].reason == "HTTP 422: Validation Failed");
    REQUIRE(letters[0].delivery.event->github() != nullptr);
    CHECK(letters[0].delivery.event->github()->deliveryId == "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    CHECK(letters[0].delivery.event->github()->body ==
          R"({"ref":"refs/heads/main","after":"2f8b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"})");

    // Dedup: the GitHub delivery id is still held, and so is route "errors"' gate.
    auto redelivered = request("redelivered", "", {"gh"});
    redelivered.idempotencyKey = "github-delivery:72d3162e-cc78-11e3-81ab-4c9367dc0958";
    redelivered.idempotencyWindow = 24h;
    CHECK(accept(*storage, std::move(redelivered)).duplicateEvent);
    CHECK(suppressedRoutes(accept(*storage, request("again", "errors:flux:firstkey"))) ==
          std::vector<std::string>{"errors"});

    // The alertmanager target's firing set.
    const auto firing = getValue(*storage, "alertmanager-firing:am");
    REQUIRE(firing.has_value());
    CHECK(firing->find("Kustomization/flux-system/apps") != std::string::npos);

    // New deliveries get ids past v1's, and the replayed dead letter keeps its own.
    CHECK(accept(*storage, request("new")).stored);
    const auto fresh = claim(*storage, "am", 10);
    REQUIRE(fresh.deliveries.size() == 1);
    CHECK(fresh.deliveries[0].id > 5);
    CHECK(replay(*storage, letters[0].delivery.id));
    const auto replayed = claim(*storage, "gh", 10);
    REQUIRE(replayed.deliveries.size() == 1);
    CHECK(replayed.deliveries[0].id == letters[0].delivery.id);
}

TEST_CASE("start-up fails loudly when the database cannot be used") {
    TempDir dir;
    SUBCASE("a schema newer than this build") {
        {
            RawDatabase raw(dir.path() / "fluxrelay.db");
            raw.exec("PRAGMA user_version = 99");
        }
        CHECK_THROWS_AS(makeSqliteStorage(configAt(dir.path())), std::runtime_error);
    }
    SUBCASE("a file that is not a database") {
        std::ofstream(dir.path() / "fluxrelay.db") << std::string(4096, 'x');
        CHECK_THROWS_AS(makeSqliteStorage(configAt(dir.path())), std::runtime_error);
    }
    SUBCASE("a folder that cannot be created") {
        std::ofstream(dir.path() / "plain-file") << "x";
        CHECK_THROWS_AS(makeSqliteStorage(configAt(dir.path() / "plain-file" / "spool")), std::runtime_error);
    }
}

TEST_CASE("queued work, retry schedule, dead letters, keys and values survive a restart") {
    TempDir dir;
    const auto now = Clock::now();
    std::uint64_t leasedId = 0;
    std::uint64_t deadId = 0;
    {
        auto storage = makeSqliteStorage(configAt(dir.path()));
        CHECK(accept(*storage, request("e1", "", {"am", "github"})).stored);
        CHECK(accept(*storage, request("e2", "errors:k")).stored);
        CHECK(accept(*storage, request("e3", "", {"broken"})).stored);
        auto idempotent = request("e4", "", {"reconcile"});
        idempotent.idempotencyKey = "github-delivery:abc";
        idempotent.idempotencyWindow = 24h;
        CHECK(accept(*storage, std::move(idempotent)).stored);
        CHECK(putValue(*storage, "forever", "v1", Duration{0}));
        CHECK(putValue(*storage, "an-hour", "v2", 1h));

        // e1 to am: leased when the process stops, so it is sent again.
        const auto leased = claim(*storage, "am", 1);
        REQUIRE(leased.deliveries.size() == 1);
        leasedId = leased.deliveries[0].id;
        // e1 to github: failed once, retried in an hour.
        const auto retried = claim(*storage, "github", 10);
        REQUIRE(retried.deliveries.size() == 1);
        settle(*storage, {{.deliveryId = retried.deliveries[0].id,
                           .kind = SettleKind::retry,
                           .nextAttemptAt = now + 1h,
                           .error = "HTTP 503"}});
        // e3: dead.
        const auto broken = claim(*storage, "broken", 10);
        REQUIRE(broken.deliveries.size() == 1);
        deadId = broken.deliveries[0].id;
        settle(*storage, {{.deliveryId = deadId, .kind = SettleKind::dead, .nextAttemptAt = {}, .error = "HTTP 400"}});
    }

    auto storage = makeSqliteStorage(configAt(dir.path()));
    const auto am = claim(*storage, "am", 10);
    CHECK(eventIds(am) == std::vector<std::string>{"e1", "e2"});
    bool sawLeased = false;
    for (const auto& delivery : am.deliveries) {
        if (delivery.id == leasedId) {
            sawLeased = true;
            CHECK(delivery.attempts == 0);
        }
    }
    CHECK(sawLeased);

    const auto early = claim(*storage, "github", 10, now + 59min);
    CHECK(early.deliveries.empty());
    REQUIRE(early.nextDue.has_value());
    CHECK(*early.nextDue == now + 1h);
    const auto due = claim(*storage, "github", 10, now + 1h);
    REQUIRE(due.deliveries.size() == 1);
    CHECK(due.deliveries[0].attempts == 1);
    CHECK(due.deliveries[0].lastError == "HTTP 503");

    const auto letters = deadLetters(*storage);
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].delivery.id == deadId);
    CHECK(letters[0].reason == "HTTP 400");
    CHECK(letters[0].delivery.event->id == "e3");

    CHECK(suppressedRoutes(accept(*storage, request("e5", "errors:k"))) == std::vector<std::string>{"errors"});
    auto again = request("e6", "", {"reconcile"});
    again.idempotencyKey = "github-delivery:abc";
    again.idempotencyWindow = 24h;
    CHECK(accept(*storage, std::move(again)).duplicateEvent);
    CHECK(getValue(*storage, "forever") == std::optional<std::string>("v1"));
    CHECK(getValue(*storage, "an-hour") == std::optional<std::string>("v2"));

    CHECK(replay(*storage, deadId));
    CHECK(eventIds(claim(*storage, "broken", 10)) == std::vector<std::string>{"e3"});
}

TEST_CASE("the queue holds only work not yet done: a delivered row is deleted, a dead one moves out") {
    TempDir dir;
    auto storage = makeSqliteStorage(configAt(dir.path()));
    CHECK(accept(*storage, request("e1", "", {"am", "github"})).stored);
    RawDatabase raw(dir.path() / "fluxrelay.db");
    CHECK(raw.number("SELECT COUNT(*) FROM queue") == 2);
    // Each delivery carries its event's storage form.
    CHECK(raw.number("SELECT COUNT(*) FROM queue WHERE body LIKE '%\"id\":\"e1\"%'") == 2);

    for (int attempt = 1; attempt <= 3; ++attempt) {
        const auto claimed = claim(*storage, "am", 10);
        REQUIRE(claimed.deliveries.size() == 1);
        CHECK(claimed.deliveries[0].attempts == attempt - 1);
        settle(*storage, {{.deliveryId = claimed.deliveries[0].id,
                           .kind = SettleKind::retry,
                           .nextAttemptAt = Clock::now(),
                           .error = "HTTP 503 #" + std::to_string(attempt)}});
    }
    const auto am = claim(*storage, "am", 10);
    REQUIRE(am.deliveries.size() == 1);
    CHECK(am.deliveries[0].attempts == 3);
    CHECK(am.deliveries[0].lastError == "HTTP 503 #3");
    settle(*storage, {{.deliveryId = am.deliveries[0].id, .kind = SettleKind::delivered}});
    const auto github = claim(*storage, "github", 10);
    REQUIRE(github.deliveries.size() == 1);
    settle(*storage, {{.deliveryId = github.deliveries[0].id, .kind = SettleKind::dead, .error = "HTTP 400"}});

    CHECK(raw.number("SELECT COUNT(*) FROM queue") == 0);
    CHECK(raw.number("SELECT COUNT(*) FROM dead") == 1);
    CHECK(raw.text("SELECT reason FROM dead") == "HTTP 400");
}

TEST_CASE("a claim reads the event from the spool when it no longer holds it in memory") {
    TempDir dir;
    {
        auto storage = makeSqliteStorage(configAt(dir.path()));
        CHECK(accept(*storage, request("e1")).stored);
        // Claimed and released: the event is no longer held for a first claim.
        const auto first = claim(*storage, "am", 10);
        REQUIRE(first.deliveries.size() == 1);
        settle(*storage, {{.deliveryId = first.deliveries[0].id, .kind = SettleKind::release}});
        const auto again = claim(*storage, "am", 10);
        REQUIRE(again.deliveries.size() == 1);
        CHECK(again.deliveries[0].event->id == "e1");
        CHECK(again.deliveries[0].event != first.deliveries[0].event);  // parsed, not the held copy
        CHECK(again.deliveries[0].attempts == 0);
    }
}

// Sends `perThread` accepts from each of `threads` threads, each sender keeping up to `window` of
// them in flight (1: it waits for every answer, as one HTTP sender waits for its 202).
// Returns how many were stored.
int acceptFromThreads(Storage& storage, int threads, int perThread, std::size_t window) {
    std::atomic<int> stored{0};
    std::vector<std::thread> senders;
    for (int t = 0; t < threads; ++t) {
        senders.emplace_back([&, t] {
            std::deque<std::future<AcceptResult>> inFlight;
            for (int i = 0; i < perThread; ++i) {
                inFlight.push_back(asyncAccept(storage, request("t" + std::to_string(t) + "-" + std::to_string(i)),
                                               boost::asio::use_future));
                if (inFlight.size() >= window) {
                    stored += inFlight.front().get().stored ? 1 : 0;
                    inFlight.pop_front();
                }
            }
            for (auto& result : inFlight) {
                stored += result.get().stored ? 1 : 0;
            }
        });
    }
    for (auto& sender : senders) {
        sender.join();
    }
    return stored;
}

TEST_CASE("group commit: concurrent accepts from several threads share transactions") {
    TempDir dir;
    auto config = configAt(dir.path());
    config.sync = SyncMode::full;  // a real sync per transaction, as on a production disk
    auto storage = makeSqliteStorage(config, {});

    SUBCASE("senders that fire without waiting") {
        const auto before = storage->transactionsCommitted();
        CHECK(acceptFromThreads(*storage, 4, 250, 1000) == 1000);
        const auto transactions = storage->transactionsCommitted() - before;
        MESSAGE("1000 accepts from 4 threads, none waiting: " << transactions << " transactions");
        CHECK(transactions < 1000);
    }
    SUBCASE("senders that each wait for their answer") {
        const auto before = storage->transactionsCommitted();
        CHECK(acceptFromThreads(*storage, 8, 100, 1) == 800);
        const auto transactions = storage->transactionsCommitted() - before;
        MESSAGE("800 accepts from 8 threads, each waiting for its answer: " << transactions << " transactions");
        CHECK(transactions < 800);
    }
    CHECK(claim(*storage, "am", 5000).deliveries.size() > 0);
}

TEST_CASE("group commit: everything that queued up behind a busy writer is one transaction") {
    TempDir dir;
    WriterGate gate;
    auto storage = makeSqliteStorage(configAt(dir.path()), SqliteTuning{.maxBatch = 512, .beforeBatch = gate.hook()});
    auto first = asyncAccept(*storage, request("first"), boost::asio::use_future);
    gate.waitHeld();
    const auto before = storage->transactionsCommitted();
    std::vector<std::future<AcceptResult>> results;
    for (int i = 0; i < 1000; ++i) {
        results.push_back(asyncAccept(*storage, request("e" + std::to_string(i)), boost::asio::use_future));
    }
    gate.release();
    CHECK(first.get().stored);
    int stored = 0;
    for (auto& result : results) {
        stored += result.get().stored ? 1 : 0;
    }
    CHECK(stored == 1000);
    const auto transactions = storage->transactionsCommitted() - before;
    MESSAGE("1 + 1000 queued accepts committed in " << transactions << " transactions");
    CHECK(transactions <= 3);  // the held one, then 1000 in batches of 512
}

TEST_CASE("when too many requests wait for the writer, accepts are refused as busy, settlements are not") {
    TempDir dir;
    WriterGate gate;
    auto storage =
        makeSqliteStorage(configAt(dir.path()), SqliteTuning{.maxWaitingRequests = 4, .beforeBatch = gate.hook()});
    auto first = asyncAccept(*storage, request("first"), boost::asio::use_future);
    gate.waitHeld();
    std::vector<std::future<AcceptResult>> queued;
    for (int i = 0; i < 4; ++i) {
        queued.push_back(asyncAccept(*storage, request("e" + std::to_string(i)), boost::asio::use_future));
    }
    const auto refused = accept(*storage, request("one-too-many"));  // completes while the writer is held
    CHECK_FALSE(refused.stored);
    CHECK(refused.error.find("storage busy") != std::string::npos);
    // Queued behind the accepts, so it asks about a moment after they are stored.
    auto claimed = asyncClaim(*storage, "am", 100, Clock::now() + 1min, boost::asio::use_future);
    gate.release();
    CHECK(first.get().stored);
    for (auto& result : queued) {
        CHECK(result.get().stored);
    }
    CHECK(claimed.get().deliveries.size() == 5);
}

TEST_CASE("shutting down answers and writes everything still queued") {
    TempDir dir;
    std::vector<std::future<AcceptResult>> results;
    {
        WriterGate gate;
        auto storage = makeSqliteStorage(configAt(dir.path()), SqliteTuning{.beforeBatch = gate.hook()});
        results.push_back(asyncAccept(*storage, request("first"), boost::asio::use_future));
        gate.waitHeld();
        for (int i = 0; i < 50; ++i) {
            results.push_back(asyncAccept(*storage, request("e" + std::to_string(i)), boost::asio::use_future));
        }
        std::thread closer([&] { storage.reset(); });  // stops while the writer is still held
        std::this_thread::sleep_for(50ms);
        gate.release();
        closer.join();
    }
    for (auto& result : results) {
        CHECK(result.get().stored);
    }
    auto storage = makeSqliteStorage(configAt(dir.path()));
    CHECK(claim(*storage, "am", 100).deliveries.size() == 51);
}

TEST_CASE("retention removes old dead letters and expired values; dedup keys outlive it in their window") {
    TempDir dir;
    auto config = configAt(dir.path(), 3);
    config.retention = 100ms;
    auto storage = makeSqliteStorage(config, SqliteTuning{.pruneInterval = 20ms});
    CHECK(accept(*storage, request("delivered")).stored);
    CHECK(accept(*storage, request("dead", "errors:short")).stored);
    CHECK(accept(*storage, request("waiting", "", {"slow"})).stored);
    CHECK(putValue(*storage, "short", "v", 1ms));
    CHECK(putValue(*storage, "forever", "v", Duration{0}));
    auto claimed = claim(*storage, "am", 10);
    REQUIRE(claimed.deliveries.size() == 2);
    settle(*storage, {{.deliveryId = claimed.deliveries[0].id, .kind = SettleKind::delivered},
                      {.deliveryId = claimed.deliveries[1].id, .kind = SettleKind::dead, .error = "HTTP 400"}});
    CHECK_FALSE(accept(*storage, request("refused", "", {"a", "b"})).stored);  // the dead letter still counts

    // The dedup key's window is 5 minutes: it outlives the pruning.
    RawDatabase raw(dir.path() / "fluxrelay.db");
    CHECK(eventually([&] { return raw.number("SELECT COUNT(*) FROM dead") == 0; }));
    // Left: "forever", and the spool's own record of the last delivery id.
    CHECK(eventually([&] { return raw.number("SELECT COUNT(*) FROM kv") == 2; }));
    CHECK(raw.number("SELECT COUNT(*) FROM queue") == 1);
    CHECK(raw.number("SELECT COUNT(*) FROM dedup WHERE key LIKE 'gate:%'") == 1);
    CHECK(deadLetters(*storage).empty());
    CHECK(getValue(*storage, "forever") == std::optional<std::string>("v"));
    CHECK(accept(*storage, request("fits-again", "", {"a", "b"})).stored);
}

TEST_CASE("delivery ids keep growing across a restart, also once every delivery is gone") {
    TempDir dir;
    std::uint64_t before = 0;
    {
        auto storage = makeSqliteStorage(configAt(dir.path(), 100));
        REQUIRE(accept(*storage, request("first")).stored);
        auto claimed = claim(*storage, "am", 10);
        REQUIRE(claimed.deliveries.size() == 1);
        before = claimed.deliveries[0].id;
        settle(*storage, {{.deliveryId = before, .kind = SettleKind::delivered}});
    }
    auto storage = makeSqliteStorage(configAt(dir.path(), 100));
    REQUIRE(accept(*storage, request("after-restart")).stored);
    auto claimed = claim(*storage, "am", 10);
    REQUIRE(claimed.deliveries.size() == 1);
    CHECK(claimed.deliveries[0].id > before);
}

TEST_CASE("failing objects survive a restart, and expired ones are pruned") {
    TempDir dir;
    const TimePoint start = Clock::now();
    {
        auto storage = makeSqliteStorage(configAt(dir.path(), 100));
        REQUIRE(accept(*storage, healthOf("podinfo", "HealthCheckFailed", start)).stored);
        REQUIRE(accept(*storage, healthOf("brief", "BuildFailed", start, 1ms)).stored);
    }
    auto storage = makeSqliteStorage(configAt(dir.path(), 100), SqliteTuning{.pruneInterval = 20ms});
    CHECK(failingNames(failingObjects(*storage)) == std::vector<std::string>{"podinfo HealthCheckFailed"});
    RawDatabase raw(dir.path() / "fluxrelay.db");
    CHECK(eventually([&] { return raw.number("SELECT COUNT(*) FROM failing_objects") == 1; }));
}

TEST_CASE("expired dedup keys are pruned, a chunk of the key space at a time") {
    TempDir dir;
    auto storage = makeSqliteStorage(configAt(dir.path()), SqliteTuning{.pruneInterval = 20ms});
    // More keys than one prune chunk (2,000), all expiring at once, and one that does not.
    constexpr int kKeys = 4500;
    std::vector<std::future<AcceptResult>> results;
    for (int i = 0; i < kKeys; ++i) {
        auto req = request("e" + std::to_string(i), "errors:k" + std::to_string(i), {});
        req.routes[0].dedup = windowGate("errors:k" + std::to_string(i), 1ms);
        results.push_back(asyncAccept(*storage, std::move(req), boost::asio::use_future));
    }
    for (auto& result : results) {
        REQUIRE(result.get().stored);
    }
    CHECK(accept(*storage, request("kept", "errors:kept", {})).stored);
    RawDatabase raw(dir.path() / "fluxrelay.db");
    CHECK(eventually([&] { return raw.number("SELECT COUNT(*) FROM dedup") == 1; }));
    CHECK(raw.text("SELECT key FROM dedup") == "gate:errors:kept");
    CHECK(accept(*storage, request("e2", "errors:k0")).suppressed.empty());
}

TEST_CASE("a failing disk fails whole writes, turns unhealthy, and recovers by itself") {
    TempDir dir;
    auto storage = makeSqliteStorage(configAt(dir.path()), SqliteTuning{.probeInterval = 20ms});
    CHECK(accept(*storage, request("before")).stored);
    CHECK(storage->healthy());

    // Nothing that writes to a file may run inside the limit, test output included.
    AcceptResult failed;
    bool put = true;
    bool healthyAfterFailure = true;
    bool healthyWhileBroken = true;
    bool limited = false;
    {
        FileSizeLimit limit(0);
        limited = limit.active();
        failed = accept(*storage, request("during", "errors:during", {"am", "github"}));
        healthyAfterFailure = storage->healthy();
        put = putValue(*storage, "k", "v", Duration{0});
        std::this_thread::sleep_for(100ms);  // several probes fail meanwhile
        healthyWhileBroken = storage->healthy();
    }
    REQUIRE(limited);
    CHECK_FALSE(failed.stored);
    CHECK(failed.error.find("storage unavailable") != std::string::npos);
    CHECK_FALSE(healthyAfterFailure);
    CHECK_FALSE(put);
    CHECK_FALSE(healthyWhileBroken);

    // No traffic needed: the probe write notices the disk works again.
    CHECK(eventually([&] { return storage->healthy(); }));
    CHECK(accept(*storage, request("after")).stored);
    // Nothing of the failed accept was kept: no deliveries, and its dedup key is free.
    CHECK(eventIds(claim(*storage, "am", 10)) == std::vector<std::string>{"after", "before"});
    CHECK(claim(*storage, "github", 10).deliveries.empty());
    CHECK(accept(*storage, request("during-again", "errors:during")).suppressed.empty());
}

TEST_CASE("a settlement the disk refused is recorded once the disk works again") {
    TempDir dir;
    auto storage = makeSqliteStorage(configAt(dir.path()), SqliteTuning{.probeInterval = 20ms});
    CHECK(accept(*storage, request("e1")).stored);
    const auto claimed = claim(*storage, "am", 10);
    REQUIRE(claimed.deliveries.size() == 1);
    {
        FileSizeLimit limit(0);
        settle(*storage, {{.deliveryId = claimed.deliveries[0].id, .kind = SettleKind::dead, .error = "HTTP 400"}});
    }
    CHECK(eventually([&] { return storage->healthy(); }));
    const auto letters = deadLetters(*storage);
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].reason == "HTTP 400");
}

TEST_CASE("a deleted database fails the write that notices, then is created afresh") {
    TempDir dir;
    const auto folder = dir.path() / "spool";
    auto storage = makeSqliteStorage(configAt(folder), SqliteTuning{.probeInterval = std::chrono::hours(1)});
    CHECK(accept(*storage, request("e1")).stored);
    fs::remove_all(folder);

    const auto failed = accept(*storage, request("e2"));
    CHECK_FALSE(failed.stored);
    CHECK_FALSE(storage->healthy());

    CHECK(accept(*storage, request("e3")).stored);
    CHECK(storage->healthy());
    CHECK(fs::exists(folder / "fluxrelay.db"));
    CHECK(eventIds(claim(*storage, "am", 10)) == std::vector<std::string>{"e3"});
}

TEST_CASE("an unreadable event record becomes a dead letter instead of blocking its queue") {
    TempDir dir;
    {
        auto storage = makeSqliteStorage(configAt(dir.path()));
        CHECK(accept(*storage, request("bad")).stored);
        CHECK(accept(*storage, request("good")).stored);
    }
    {
        RawDatabase raw(dir.path() / "fluxrelay.db");
        raw.exec("UPDATE queue SET body = 'not json' WHERE body LIKE '%\"id\":\"bad\"%'");
    }
    auto storage = makeSqliteStorage(configAt(dir.path()));
    CHECK(eventIds(claim(*storage, "am", 10)) == std::vector<std::string>{"good"});
    RawDatabase raw(dir.path() / "fluxrelay.db");
    CHECK(raw.text("SELECT reason FROM dead WHERE body = 'not json'") == "unreadable event record");
    CHECK(raw.number("SELECT COUNT(*) FROM queue") == 1);
}

}  // namespace fluxrelay

namespace fluxrelay {
namespace {

// The spool file's bytes, to damage and to compare.
std::string fileBytes(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void writeBytes(const fs::path& file, const std::string& bytes) {
    std::ofstream(file, std::ios::binary | std::ios::trunc)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A spool of 200 queued deliveries, closed, with its log checkpointed into the file.
fs::path filledSpool(const fs::path& folder) {
    {
        auto storage = makeSqliteStorage(configAt(folder));
        for (int i = 0; i < 200; ++i) REQUIRE(accept(*storage, request("e" + std::to_string(i))).stored);
    }
    RawDatabase(folder / "fluxrelay.db").text("PRAGMA wal_checkpoint(TRUNCATE)");
    return folder / "fluxrelay.db";
}

// Starting on `file` fails with a message that names it as damaged; the file is left as it was.
void refusedAtStart(const fs::path& folder, const fs::path& file) {
    const std::string before = fileBytes(file);
    try {
        makeSqliteStorage(configAt(folder));
        FAIL("a damaged spool was opened");
    } catch (const std::exception& error) {
        const std::string message = error.what();
        CAPTURE(message);
        CHECK(message.find("the spool file " + file.string() + " is damaged") != std::string::npos);
        CHECK(message.find("left untouched") != std::string::npos);
    }
    CHECK(fileBytes(file) == before);
}

}  // namespace

TEST_CASE("a spool whose file is damaged is refused at start and never recreated") {
    TempDir dir;
    const fs::path file = filledSpool(dir.path());
    const std::string intact = fileBytes(file);
    const auto pageSize = static_cast<std::size_t>(RawDatabase(file).number("PRAGMA page_size"));
    const auto queueRoot =
        static_cast<std::size_t>(RawDatabase(file).number("SELECT rootpage FROM sqlite_master WHERE name = 'queue'"));
    REQUIRE(intact.size() > queueRoot * pageSize);

    SUBCASE("a scribbled page of the queue") {
        std::string damaged = intact;
        std::fill_n(damaged.begin() + static_cast<std::ptrdiff_t>((queueRoot - 1) * pageSize), pageSize, '\x5a');
        writeBytes(file, damaged);
        refusedAtStart(dir.path(), file);
    }
    SUBCASE("a scribbled header") {
        std::string damaged = intact;
        std::fill_n(damaged.begin(), 100, '\x5a');
        writeBytes(file, damaged);
        refusedAtStart(dir.path(), file);
    }
    SUBCASE("a truncated file") {
        writeBytes(file, intact.substr(0, intact.size() / 2));
        refusedAtStart(dir.path(), file);
    }
}

}  // namespace fluxrelay
