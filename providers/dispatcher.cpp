// Dispatcher: claim due deliveries, build one request per batch, send, settle the outcome.
#include "providers/dispatcher.hpp"

#include <random>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "providers/http_client.hpp"
#include "providers/provider.hpp"
#include "providers/retry.hpp"

namespace fluxrelay {

namespace asio = boost::asio;

// One target: its provider, its workers, and the wake-up they sleep on when nothing is due.
class Dispatcher::TargetQueue : public std::enable_shared_from_this<TargetQueue> {
public:
    TargetQueue(asio::io_context& io, Storage& storage, const TargetConfig& target)
        : strand_(asio::make_strand(io)),
          storage_(storage),
          target_(target),
          provider_(makeProvider(target)),
          tls_(target.address.tls() ? makeClientTlsContext(target) : nullptr),
          wake_(strand_),
          idle_(strand_),
          rng_(std::random_device{}()) {
        if (!provider_) {
            throw std::runtime_error("target " + target.name + ": type " + std::string(toString(target.type)) +
                                     " is not available in this build");
        }
        if (target.insecureSkipVerify) {
            spdlog::warn("target {}: insecureSkipVerify is set, TLS certificates are not verified", target.name);
        }
    }

    void start() {
        for (int i = 0; i < target_.concurrency; ++i) {
            ++workers_;
            asio::co_spawn(strand_, work(), asio::detached);
        }
    }

    // From any thread: new deliveries may be due.
    void poke() {
        asio::post(strand_, [self = shared_from_this()] {
            ++self->workSeq_;
            self->wake_.cancel();
        });
    }

    asio::awaitable<void> stop() {
        co_await asio::post(strand_, asio::use_awaitable);
        stopping_ = true;
        wake_.cancel();
        while (workers_ > 0) {
            idle_.expires_at(asio::steady_timer::time_point::max());
            co_await idle_.async_wait(asio::as_tuple(asio::use_awaitable));
        }
    }

private:
    asio::awaitable<void> work() {
        HttpConnection connection(strand_, tls_, !target_.insecureSkipVerify);
        while (!stopping_) {
            const auto seenSeq = workSeq_;
            Claim claim = co_await asyncClaim(storage_, target_.name, provider_->maxBatch(), Clock::now(),
                                              asio::use_awaitable);
            if (claim.deliveries.empty()) {
                if (workSeq_ == seenSeq && !stopping_) {
                    co_await sleepUntil(claim.nextDue);
                }
                continue;
            }
            const auto started = Clock::now();
            const Outcome outcome = co_await attempt(connection, claim.deliveries);
            const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
            co_await asyncSettle(storage_, settlements(claim.deliveries, outcome),
                                 asio::use_awaitable);
            log(claim.deliveries, outcome, elapsed);
        }
        if (--workers_ == 0) {
            idle_.cancel();
        }
    }

    asio::awaitable<Outcome> attempt(HttpConnection& connection, const std::vector<Delivery>& batch) {
        BuildResult built = provider_->buildRequest(batch);
        if (auto* outcome = std::get_if<Outcome>(&built)) {
            co_return *outcome;
        }
        const HttpResult result = co_await connection.send(std::get<HttpRequest>(built), target_.timeout);
        if (!result.response) {
            co_return Outcome::retry(result.error);
        }
        co_return provider_->classify(*result.response);
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

    void log(const std::vector<Delivery>& batch, const Outcome& outcome, std::chrono::milliseconds elapsed) {
        switch (outcome.kind) {
            case OutcomeKind::delivered:
                spdlog::debug("target {}: delivered {} in {} ms", target_.name, batch.size(), elapsed.count());
                break;
            case OutcomeKind::retry:
                spdlog::warn("target {}: {} deliveries will be retried: {}", target_.name, batch.size(), outcome.detail);
                break;
            case OutcomeKind::permanent:
                spdlog::error("target {}: {} deliveries failed permanently: {}", target_.name, batch.size(),
                              outcome.detail);
                break;
        }
    }

    asio::awaitable<void> sleepUntil(std::optional<TimePoint> due) {
        // Wall-clock due times map onto the steady timer; a poke cancels the wait early.
        const auto wait = due ? std::chrono::duration_cast<std::chrono::steady_clock::duration>(*due - Clock::now())
                              : std::chrono::steady_clock::duration(std::chrono::hours(1));
        wake_.expires_after(std::max(wait, std::chrono::steady_clock::duration::zero()));
        co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
    }

    asio::strand<asio::io_context::executor_type> strand_;
    Storage& storage_;
    TargetConfig target_;
    std::unique_ptr<Provider> provider_;
    std::shared_ptr<asio::ssl::context> tls_;
    asio::steady_timer wake_;
    asio::steady_timer idle_;
    std::mt19937_64 rng_;
    std::uint64_t workSeq_ = 0;
    int workers_ = 0;
    bool stopping_ = false;
};

Dispatcher::Dispatcher(asio::io_context& io, Storage& storage, const Config& config) : storage_(storage) {
    for (const auto& target : config.targets) {
        queues_.emplace(target.name, std::make_shared<TargetQueue>(io, storage, target));
    }
}

Dispatcher::~Dispatcher() = default;

void Dispatcher::start() {
    storage_.onWork([queues = queues_](const std::string& target) {
        if (auto it = queues.find(target); it != queues.end()) {
            it->second->poke();
        }
    });
    for (auto& [name, queue] : queues_) {
        queue->start();
    }
}

asio::awaitable<void> Dispatcher::stop() {
    storage_.onWork({});
    for (auto& [name, queue] : queues_) {
        co_await queue->stop();
    }
}

}  // namespace fluxrelay
