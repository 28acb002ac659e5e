// Dispatcher: claim due deliveries, build one request per batch, send, settle the outcome.
#include "providers/dispatcher.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/duration.hpp"
#include "core/file.hpp"
#include "providers/breaker.hpp"
#include "providers/http_client.hpp"
#include "providers/provider.hpp"
#include "providers/retry.hpp"

namespace fluxrelay {

namespace asio = boost::asio;

// One target: its provider, its workers, and the wake-up they sleep on when nothing is due.
class Dispatcher::TargetQueue : public std::enable_shared_from_this<TargetQueue> {
public:
    TargetQueue(asio::io_context& io, asio::thread_pool::executor_type files, Storage& storage,
                const TargetConfig& target, RelayObserver& observer)
        : strand_(asio::make_strand(io)),
          files_(std::move(files)),
          storage_(storage),
          observer_(observer),
          target_(target),
          provider_(makeProvider(target)),
          // Always: a provider may reach another origin over https than its address names.
          tls_(makeClientTlsContext(target)),
          idle_(strand_),
          rng_(std::random_device{}()) {
        health_.target = target.name;
        health_.type = std::string(toString(target.type));
        health_.breaker = "closed";
        if (!provider_) {
            throw std::runtime_error("target " + target.name + ": type " + std::string(toString(target.type)) +
                                     " is not available in this build");
        }
    }

    void start() {
        spdlog::info("target {}: {} workers, batches of up to {}", target_.name, target_.concurrency,
                     provider_->maxBatch());
        if (provider_->refresh()) nextRefresh_ = Clock::now();  // alerts may have lapsed while down
        for (int i = 0; i < target_.concurrency; ++i) {
            ++workers_;
            // The first worker also runs the provider's refreshes, so they never overlap a delivery
            // on targets that keep state (those run one worker).
            asio::co_spawn(strand_, work(i == 0), asio::detached);
        }
    }

    // From any thread: new deliveries may be due. One sleeping worker is enough to take them;
    // it wakes the next should there be more than one batch (work()), so under load the others
    // keep sending and claim what gathered meanwhile: fuller batches, fewer empty claims.
    void poke() {
        asio::post(strand_, [self = shared_from_this()] {
            ++self->workSeq_;
            self->wakeOne();
        });
    }

    asio::awaitable<void> stop() {
        co_await asio::post(strand_, asio::use_awaitable);
        stopping_ = true;
        wakeAll();
        while (workers_ > 0) {
            idle_.expires_at(asio::steady_timer::time_point::max());
            co_await idle_.async_wait(asio::as_tuple(asio::use_awaitable));
        }
    }

private:
    asio::awaitable<void> work(bool refreshes) {
        HttpConnection connection(strand_, tls_, !target_.insecureSkipVerify, targetProxy(target_));
        while (!stopping_) {
            if (const auto blocked = blockedUntil(Clock::now())) {
                co_await sleepUntil(*blocked);
                continue;
            }
            if (refreshes && nextRefresh_ && *nextRefresh_ <= Clock::now()) {
                co_await refresh(connection);
                continue;
            }
            const auto seenSeq = workSeq_;
            Claim claim =
                co_await asyncClaim(storage_, target_.name, provider_->maxBatch(), Clock::now(), asio::use_awaitable);
            if (claim.deliveries.empty()) {
                if (workSeq_ == seenSeq && !stopping_) {
                    co_await sleepUntil(refreshes ? earliest(claim.nextDue, nextRefresh_) : claim.nextDue);
                }
                continue;
            }
            if (claim.nextDue && *claim.nextDue <= Clock::now()) {
                wakeOne();  // more is due than one batch: another worker takes it meanwhile
            }
            const auto started = Clock::now();
            if (!breaker_.allow(started)) {
                // Another worker's probe is out: put the batch back untouched and wait.
                co_await asyncSettle(storage_, untouched(claim.deliveries), asio::use_awaitable);
                co_await sleepUntil(breaker_.openUntil());
                continue;
            }
            std::optional<HeldLeases> leases = co_await leaseState(provider_->stateKeys(claim.deliveries));
            if (!leases) {
                co_await asyncSettle(storage_, untouched(claim.deliveries), asio::use_awaitable);
                co_await pause(kLeaseUnavailablePause);
                continue;
            }
            ++inFlight_;
            const Outcome outcome = co_await attempt(connection, claim.deliveries);
            --inFlight_;
            co_await releaseState(std::move(*leases));
            const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
            record(outcome);
            auto settled = settlements(claim.deliveries, outcome);
            co_await asyncSettle(storage_, settled, asio::use_awaitable);
            report(claim.deliveries, settled, elapsed);
            log(claim.deliveries, outcome, elapsed);
        }
        if (--workers_ == 0) {
            idle_.cancel();
        }
    }

    // One attempt, in the order Provider describes: credentials, the state the plan reads, the
    // plan, its requests, and the state it writes once they are delivered.
    asio::awaitable<Outcome> attempt(HttpConnection& connection, const std::vector<Delivery>& batch) {
        Credentials* credentials = provider_->credentials();
        if (std::optional<CredentialsFetch> fetch = credentials ? credentials->fetch(Clock::now()) : std::nullopt) {
            CredentialsAnswer answer;
            if (fetch->exchange) {
                HttpResult result = co_await connection.send(*fetch->exchange, target_.timeout);
                if (!result.response) co_return Outcome::retry("credentials: " + result.error);
                answer.response = std::move(result.response);
            } else {
                FileContent file = co_await asio::co_spawn(files_, readFile(fetch->file), asio::use_awaitable);
                answer.content = std::move(file.bytes);
                answer.error = std::move(file.error);
            }
            if (Outcome outcome = credentials->accept(answer, Clock::now()); outcome.kind != OutcomeKind::delivered) {
                co_return outcome;
            }
        }
        ProviderState state;
        for (auto& key : provider_->stateKeys(batch)) {
            state[key] = co_await asyncGetValue(storage_, key, asio::use_awaitable);
        }
        for (int step = 1;; ++step) {
            const AttemptPlan plan = provider_->plan(batch, state, Clock::now());
            Outcome outcome = plan.decided.value_or(Outcome::delivered());
            if (outcome.kind != OutcomeKind::delivered) co_return outcome;
            std::string lastBody;
            for (const HttpRequest& request : plan.requests) {
                HttpResult result = co_await connection.send(request, target_.timeout);
                if (!result.response) co_return Outcome::retry(result.error);
                outcome = provider_->classify(*result.response);
                if (outcome.kind != OutcomeKind::delivered) co_return outcome;
                lastBody = std::move(result.response->body);
            }
            // Stored before the next step is sent: what a step created is known to a retry even
            // when a later step fails.
            for (const auto& [key, value] : plan.writes) {
                if (value) {
                    co_await asyncPutValue(storage_, key, *value, kProviderStateTtl, asio::use_awaitable);
                } else {
                    co_await asyncEraseValue(storage_, key, asio::use_awaitable);
                }
            }
            if (!advanceAttempt(plan, std::move(lastBody), state)) co_return outcome;
            if (step == kMaxAttemptSteps) {
                co_return Outcome::permanent("the attempt did not settle within " + std::to_string(kMaxAttemptSteps) +
                                             " steps");
            }
        }
    }

    // A provider's state is read, planned on, sent and written as one step across every worker and
    // replica: each of its keys' leases is held for the whole attempt. Taken in key order, so two
    // attempts never wait on each other; nullopt when the spool cannot lease now, or another holder
    // kept a key past the time its own attempt may take.
    using HeldLeases = std::vector<std::pair<std::string, std::string>>;  // key, token

    asio::awaitable<std::optional<HeldLeases>> leaseState(std::vector<std::string> keys) {
        std::sort(keys.begin(), keys.end());
        keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
        HeldLeases held;
        const TimePoint giveUpAt = Clock::now() + leaseTtl();
        for (std::string& key : keys) {
            Duration wait = std::chrono::milliseconds(10);
            for (;;) {
                std::optional<std::string> token =
                    co_await asyncTryLease(storage_, key, leaseTtl(), asio::use_awaitable);
                if (token) {
                    held.emplace_back(std::move(key), std::move(*token));
                    break;
                }
                if (stopping_ || !storage_.healthy() || Clock::now() >= giveUpAt) {
                    co_await releaseState(std::move(held));
                    co_return std::nullopt;
                }
                co_await pause(wait);
                wait = std::min<Duration>(2 * wait, std::chrono::milliseconds(200));
            }
        }
        co_return held;
    }

    asio::awaitable<void> releaseState(HeldLeases held) {
        for (auto& [key, token] : held) {
            co_await asyncReleaseLease(storage_, std::move(key), std::move(token), asio::use_awaitable);
        }
    }

    // Longer than an attempt can take (a credentials exchange and a request per step, each within
    // the target's timeout): a replica that dies holding a lease blocks the others no longer than this.
    Duration leaseTtl() const { return (kMaxAttemptSteps + 2) * target_.timeout + std::chrono::seconds(5); }

    // A wait no poke cuts short: pokes are for workers looking for work.
    asio::awaitable<void> pause(Duration duration) {
        asio::steady_timer timer(strand_, duration);
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }

    // Runs on files_, so the read blocks no io thread.
    static asio::awaitable<FileContent> readFile(std::string path) { co_return readWholeFile(path); }

    // One round of the provider's periodic re-sends. A failed round is logged and waits for the
    // next: what it re-sends stays valid for longer than one interval.
    asio::awaitable<void> refresh(HttpConnection& connection) {
        const Refresh& refresh = *provider_->refresh();
        nextRefresh_ = Clock::now() + refresh.interval;
        // Leased like an attempt: a re-send read before another replica's resolution and sent
        // after it would fire the resolved alert again.
        std::optional<HeldLeases> leases = co_await leaseState(refresh.stateKeys);
        if (!leases) {
            spdlog::warn("target {}: firing alerts not re-sent: their state cannot be leased now; next round in {}",
                         target_.name, formatDuration(refresh.interval));
            co_return;
        }
        ProviderState state;
        for (const auto& key : refresh.stateKeys) {
            state[key] = co_await asyncGetValue(storage_, key, asio::use_awaitable);
        }
        co_await sendRefresh(connection, refresh, state);
        co_await releaseState(std::move(*leases));
    }

    asio::awaitable<void> sendRefresh(HttpConnection& connection, const Refresh& refresh, const ProviderState& state) {
        for (const HttpRequest& request : provider_->refreshRequests(state, Clock::now())) {
            const HttpResult result = co_await connection.send(request, target_.timeout);
            const Outcome outcome =
                result.response ? provider_->classify(*result.response) : Outcome::retry(result.error);
            if (outcome.kind != OutcomeKind::delivered) {
                spdlog::warn("target {}: re-sending firing alerts failed: {}; next round in {}", target_.name,
                             outcome.detail, formatDuration(refresh.interval));
                co_return;
            }
            spdlog::debug("target {}: firing alerts re-sent", target_.name);
        }
    }

    static std::optional<TimePoint> earliest(std::optional<TimePoint> a, std::optional<TimePoint> b) {
        if (!a || !b) return a ? a : b;
        return std::min(*a, *b);
    }

    // Breaker and rate-limit bookkeeping. A permanent failure is the request's fault, not the
    // target's, so it neither opens nor closes the breaker.
    void record(const Outcome& outcome) {
        const auto now = Clock::now();
        if (outcome.kind == OutcomeKind::delivered) {
            breaker_.onSuccess();
        } else if (outcome.kind == OutcomeKind::retry && !outcome.pauseTarget) {
            // A rate limit is the target answering as designed, not failing: the pause covers it.
            breaker_.onFailure(now);
        }
        if (outcome.pauseTarget && outcome.retryAfter) {
            pausedUntil_ = std::max(pausedUntil_, now + *outcome.retryAfter);
            spdlog::warn("target {}: rate limited, pausing for {}", target_.name, formatDuration(*outcome.retryAfter));
        }
        std::lock_guard lock(healthMutex_);
        health_.breaker = std::string(toString(breaker_.state()));
        health_.paused = pausedUntil_ > now;
        if (outcome.kind == OutcomeKind::delivered) {
            health_.lastSuccessAt = now;
        } else {
            health_.lastError = outcome.detail;
            health_.lastErrorAt = now;
        }
    }

    // When the target may next be tried, if not now: rate-limit pause or open breaker.
    std::optional<TimePoint> blockedUntil(TimePoint now) const {
        TimePoint until = pausedUntil_;
        if (breaker_.state() == CircuitBreaker::State::open) {
            until = std::max(until, breaker_.openUntil());
        }
        return until > now ? std::optional(until) : std::nullopt;
    }

    // Settlements that hand claimed deliveries back unchanged (no attempt was made).
    static std::vector<Settlement> untouched(const std::vector<Delivery>& batch) {
        std::vector<Settlement> out;
        for (const auto& delivery : batch) {
            out.push_back({.deliveryId = delivery.id,
                           .kind = SettleKind::release,
                           .nextAttemptAt = delivery.nextAttemptAt,
                           .error = delivery.lastError});
        }
        return out;
    }

    std::vector<Settlement> settlements(const std::vector<Delivery>& batch, const Outcome& outcome) {
        std::vector<Settlement> out;
        const auto now = Clock::now();
        for (const auto& delivery : batch) {
            Settlement settlement{.deliveryId = delivery.id, .error = outcome.detail};
            const int attempts = delivery.attempts + 1;
            if (outcome.kind == OutcomeKind::delivered) {
                settlement.kind = SettleKind::delivered;
            } else if (outcome.kind == OutcomeKind::permanent) {
                settlement.kind = SettleKind::dead;
            } else {
                const auto delay = nextRetryDelay(target_.retry, attempts, outcome.retryAfter, rng_);
                settlement.nextAttemptAt = now + delay;
                if (mayRetry(target_.retry, attempts, delivery.createdAt, settlement.nextAttemptAt)) {
                    settlement.kind = SettleKind::retry;
                } else {
                    settlement.kind = SettleKind::dead;
                    settlement.error = "gave up after " + std::to_string(attempts) + " attempts: " + outcome.detail;
                }
            }
            out.push_back(std::move(settlement));
        }
        return out;
    }

    static AttemptOutcome attemptOutcome(SettleKind kind) {
        switch (kind) {
            case SettleKind::delivered:
                return AttemptOutcome::delivered;
            case SettleKind::retry:
                return AttemptOutcome::retry;
            case SettleKind::dead:
                return AttemptOutcome::dead;
            case SettleKind::release:
                break;
        }
        return AttemptOutcome::released;
    }

    void report(const std::vector<Delivery>& batch, const std::vector<Settlement>& settled,
                std::chrono::milliseconds elapsed) {
        observer_.onBatch(target_.name, batch.size());
        for (std::size_t i = 0; i < batch.size(); ++i) {
            observer_.onAttempt({.eventId = batch[i].event->id,
                                 .route = batch[i].route,
                                 .target = target_.name,
                                 .outcome = attemptOutcome(settled[i].kind),
                                 .detail = settled[i].error,
                                 .latency = elapsed,
                                 .attempt = batch[i].attempts + 1});
        }
    }

public:
    const TargetConfig& config() const { return target_; }

    TargetHealth health() const {
        std::lock_guard lock(healthMutex_);
        TargetHealth health = health_;
        health.inFlight = inFlight_;
        return health;
    }

private:
    void log(const std::vector<Delivery>& batch, const Outcome& outcome, std::chrono::milliseconds elapsed) {
        switch (outcome.kind) {
            case OutcomeKind::delivered:
                spdlog::debug("target {}: delivered {} in {} ms", target_.name, batch.size(), elapsed.count());
                break;
            case OutcomeKind::retry:
                spdlog::warn("target {}: {} deliveries will be retried: {}", target_.name, batch.size(),
                             outcome.detail);
                break;
            case OutcomeKind::permanent:
                spdlog::error("target {}: {} deliveries failed permanently: {}", target_.name, batch.size(),
                              outcome.detail);
                break;
        }
    }

    // Each sleeping worker waits on a timer of its own: with one shared timer, each worker's
    // expires_after() cancelled the others' waits, and idle workers woke each other forever.
    asio::awaitable<void> sleepUntil(std::optional<TimePoint> due) {
        // Wall-clock due times map onto the steady timer; a poke cancels the wait early.
        const auto wait = due ? std::chrono::duration_cast<std::chrono::steady_clock::duration>(*due - Clock::now())
                              : std::chrono::steady_clock::duration(std::chrono::hours(1));
        asio::steady_timer timer(strand_, std::max(wait, std::chrono::steady_clock::duration::zero()));
        sleepers_.insert(&timer);
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        sleepers_.erase(&timer);
    }

    // A cancelled wait may resume its worker inline, which then leaves sleepers_ (or ends and frees
    // its timer): the set is changed before any timer is cancelled, never while iterating it.
    void wakeAll() {
        for (asio::steady_timer* timer : std::exchange(sleepers_, {})) timer->cancel();
    }

    void wakeOne() {
        if (sleepers_.empty()) return;
        asio::steady_timer* timer = *sleepers_.begin();
        sleepers_.erase(sleepers_.begin());
        timer->cancel();
    }

    static constexpr Duration kLeaseUnavailablePause = std::chrono::seconds(1);
    // Remembered states outlive any retry schedule but not forever.
    static constexpr Duration kProviderStateTtl = std::chrono::hours(24 * 30);

    asio::strand<asio::io_context::executor_type> strand_;
    asio::thread_pool::executor_type files_;  // blocking file reads
    Storage& storage_;
    RelayObserver& observer_;
    TargetConfig target_;
    std::unique_ptr<Provider> provider_;
    std::shared_ptr<asio::ssl::context> tls_;
    std::set<asio::steady_timer*> sleepers_;  // the waits of sleeping workers; strand only
    asio::steady_timer idle_;
    std::mt19937_64 rng_;
    CircuitBreaker breaker_{5, std::chrono::seconds(1), std::chrono::minutes(1)};
    TimePoint pausedUntil_{};
    std::optional<TimePoint> nextRefresh_;  // set for providers with periodic re-sends
    std::atomic<std::uint64_t> inFlight_{0};
    mutable std::mutex healthMutex_;  // health_ is read by the admin listener's threads
    TargetHealth health_;
    std::uint64_t workSeq_ = 0;
    int workers_ = 0;
    bool stopping_ = false;
};

// Every undelivered delivery of a target becomes a dead letter: nothing is lost silently, and a
// replay after the target is back in the config delivers it.
static asio::awaitable<std::size_t> abandon(Storage& storage, std::string target, std::string reason) {
    // Far enough ahead that every queued delivery counts as due.
    const auto everything = Clock::now() + std::chrono::hours(24 * 365 * 100);
    std::size_t moved = 0;
    for (;;) {
        Claim claim = co_await asyncClaim(storage, target, 1000, everything, asio::use_awaitable);
        if (claim.deliveries.empty()) {
            co_return moved;
        }
        std::vector<Settlement> dead;
        for (const auto& delivery : claim.deliveries) {
            dead.push_back({.deliveryId = delivery.id, .kind = SettleKind::dead, .error = reason});
        }
        moved += dead.size();
        co_await asyncSettle(storage, std::move(dead), asio::use_awaitable);
    }
}

Dispatcher::Dispatcher(asio::io_context& io, Storage& storage, const Config& config, RelayObserver& observer)
    : io_(io), storage_(storage), observer_(observer) {
    for (const auto& target : config.targets) {
        queues_.emplace(target.name,
                        std::make_shared<TargetQueue>(io, files_.get_executor(), storage, target, observer));
    }
}

Dispatcher::~Dispatcher() = default;

void Dispatcher::listen(const Queues& queues) {
    storage_.onWork([queues](const std::string& target) {
        if (auto it = queues.find(target); it != queues.end()) {
            it->second->poke();
        }
    });
}

void Dispatcher::start() {
    std::lock_guard lock(mutex_);
    listen(queues_);
    for (auto& [name, queue] : queues_) {
        queue->start();
    }
}

asio::awaitable<std::string> Dispatcher::reconfigure(const Config& config) {
    Queues next;
    std::vector<std::shared_ptr<TargetQueue>> started;
    std::vector<std::shared_ptr<TargetQueue>> retired;
    {
        std::lock_guard lock(mutex_);
        try {
            for (const auto& target : config.targets) {
                auto it = queues_.find(target.name);
                if (it != queues_.end() && it->second->config() == target) {
                    next.emplace(target.name, it->second);
                } else {
                    auto queue = std::make_shared<TargetQueue>(io_, files_.get_executor(), storage_, target, observer_);
                    started.push_back(queue);
                    next.emplace(target.name, std::move(queue));
                }
            }
        } catch (const std::exception& error) {
            co_return error.what();
        }
        for (const auto& [name, queue] : queues_) {
            auto it = next.find(name);
            if (it == next.end() || it->second != queue) {
                retired.push_back(queue);
            }
        }
        queues_ = next;
        listen(queues_);
    }
    // The old queue of a changed target finishes its attempts in flight before the new one starts,
    // so no delivery is sent by both.
    for (const auto& queue : retired) {
        co_await queue->stop();
    }
    for (const auto& queue : started) {
        queue->start();
    }
    for (const auto& queue : retired) {
        if (!next.contains(queue->config().name)) {
            const auto moved = co_await abandon(storage_, queue->config().name, "target removed");
            spdlog::info("target {} removed: {} undelivered deliveries became dead letters", queue->config().name,
                         moved);
        }
    }
    co_return std::string{};
}

std::vector<TargetHealth> Dispatcher::health() const {
    std::lock_guard lock(mutex_);
    std::vector<TargetHealth> out;
    for (const auto& [name, queue] : queues_) {
        out.push_back(queue->health());
    }
    return out;
}

asio::awaitable<void> Dispatcher::stop() {
    Queues queues;
    {
        std::lock_guard lock(mutex_);
        storage_.onWork({});
        queues = queues_;
    }
    for (auto& [name, queue] : queues) {
        co_await queue->stop();
    }
}

}  // namespace fluxrelay
