// In-memory spool: the Storage contract without durability, bounded so it cannot eat the host.
// Used where nothing must survive a restart (tests, `explain`), and as the reference behaviour.
#include <algorithm>
#include <map>
#include <mutex>
#include <unordered_map>

#include "storage/accept.hpp"
#include "storage/completion.hpp"
#include "storage/storage.hpp"

namespace fluxrelay {
namespace {

class MemoryStorage final : public Storage {
public:
    explicit MemoryStorage(std::size_t maxQueued) : maxQueued_(maxQueued) {}

    void accept(AcceptRequest request, boost::asio::any_completion_handler<void(AcceptResult)> handler) override {
        AcceptResult result;
        std::vector<std::string> woken;
        {
            std::lock_guard lock(mutex_);
            const auto now = Clock::now();
            Steps steps{*this, woken};
            result = runAccept(request, steps, maxQueued_, now);
            pruneDedup(now);
        }
        notify(woken);
        complete(std::move(handler), std::move(result));
    }

    void failingObjects(TimePoint now,
                        boost::asio::any_completion_handler<void(std::vector<ObjectHealth>)> handler) override {
        FailingObjects sorted;
        {
            std::lock_guard lock(mutex_);
            sorted = keepFailingObjects(now);
        }
        complete(std::move(handler), std::move(sorted.kept));
    }

    void claim(std::string target, std::size_t max, TimePoint now,
               boost::asio::any_completion_handler<void(Claim)> handler) override {
        Claim claim;
        {
            std::lock_guard lock(mutex_);
            auto& queue = queues_[target];
            while (!queue.empty() && claim.deliveries.size() < max && queue.begin()->first <= now) {
                const Delivery& delivery = deliveries_.at(queue.begin()->second);
                std::erase_if(coalescing_, [&](const auto& entry) { return entry.second == delivery.id; });
                claim.deliveries.push_back(delivery);
                queue.erase(queue.begin());
            }
            if (!queue.empty()) {
                claim.nextDue = queue.begin()->first;
            }
        }
        complete(std::move(handler), std::move(claim));
    }

    void settle(std::vector<Settlement> settlements, boost::asio::any_completion_handler<void()> handler) override {
        {
            std::lock_guard lock(mutex_);
            for (const auto& settlement : settlements) {
                auto it = deliveries_.find(settlement.deliveryId);
                if (it == deliveries_.end()) {
                    continue;
                }
                Delivery& delivery = it->second;
                if (settlement.kind == SettleKind::release) {
                    queues_[delivery.target].emplace(delivery.nextAttemptAt, delivery.id);
                    continue;
                }
                ++delivery.attempts;
                delivery.lastError = settlement.error;
                switch (settlement.kind) {
                    case SettleKind::delivered:
                        deliveries_.erase(it);
                        --queued_;
                        break;
                    case SettleKind::retry:
                        delivery.nextAttemptAt = settlement.nextAttemptAt;
                        queues_[delivery.target].emplace(delivery.nextAttemptAt, delivery.id);
                        break;
                    case SettleKind::release:
                        break;
                    case SettleKind::dead:
                        // Dead letters stay counted against the bound: they are held until replayed.
                        dead_.push_back({delivery, settlement.error, Clock::now()});
                        deliveries_.erase(it);
                        break;
                }
            }
        }
        complete(std::move(handler));
    }

    void deadLetters(std::size_t limit,
                     boost::asio::any_completion_handler<void(std::vector<DeadLetter>)> handler) override {
        std::vector<DeadLetter> letters;
        {
            std::lock_guard lock(mutex_);
            const auto count = std::min(limit, dead_.size());
            letters.assign(dead_.end() - static_cast<std::ptrdiff_t>(count), dead_.end());
        }
        complete(std::move(handler), std::move(letters));
    }

    void replay(std::uint64_t deliveryId, boost::asio::any_completion_handler<void(bool)> handler) override {
        std::string target;
        {
            std::lock_guard lock(mutex_);
            auto it = std::find_if(dead_.begin(), dead_.end(),
                                   [deliveryId](const DeadLetter& letter) { return letter.delivery.id == deliveryId; });
            if (it != dead_.end()) {
                Delivery delivery = it->delivery;
                dead_.erase(it);
                delivery.nextAttemptAt = Clock::now();
                delivery.createdAt = delivery.nextAttemptAt;  // a replay gets a fresh maxAge
                delivery.attempts = 0;
                target = delivery.target;
                queues_[target].emplace(delivery.nextAttemptAt, delivery.id);
                deliveries_.emplace(delivery.id, std::move(delivery));
            }
        }
        if (!target.empty()) {
            notify({target});
        }
        complete(std::move(handler), !target.empty());
    }

    void getValue(std::string key,
                  boost::asio::any_completion_handler<void(std::optional<std::string>)> handler) override {
        std::optional<std::string> value;
        {
            std::lock_guard lock(mutex_);
            if (auto it = values_.find(key); it != values_.end() && !expired(it->second.expiry, Clock::now())) {
                value = it->second.value;
            }
        }
        complete(std::move(handler), std::move(value));
    }

    void putValue(std::string key, std::string value, Duration ttl,
                  boost::asio::any_completion_handler<void(bool)> handler) override {
        {
            std::lock_guard lock(mutex_);
            const auto expiry = ttl.count() > 0 ? Clock::now() + ttl : TimePoint::max();
            values_[std::move(key)] = {std::move(value), expiry};
        }
        complete(std::move(handler), true);
    }

    void eraseValue(std::string key, boost::asio::any_completion_handler<void()> handler) override {
        {
            std::lock_guard lock(mutex_);
            values_.erase(key);
        }
        complete(std::move(handler));
    }

    void counts(boost::asio::any_completion_handler<void(std::vector<TargetCounts>)> handler) override {
        std::map<std::string, TargetCounts> byTarget;
        {
            std::lock_guard lock(mutex_);
            for (const auto& [id, delivery] : deliveries_) {
                ++byTarget[delivery.target].waiting;
            }
            for (const auto& letter : dead_) {
                ++byTarget[letter.delivery.target].dead;
            }
        }
        std::vector<TargetCounts> out;
        for (auto& [target, count] : byTarget) {
            count.target = target;
            out.push_back(count);
        }
        complete(std::move(handler), std::move(out));
    }

    void onWork(std::function<void(const std::string&)> listener) override {
        std::lock_guard lock(mutex_);
        listener_ = std::move(listener);
    }

    bool healthy() const override { return true; }

private:
    struct Value {
        std::string value;
        TimePoint expiry;
    };

    static bool expired(TimePoint expiry, TimePoint now) { return expiry <= now; }

    // A queued, unclaimed delivery with the route's coalesce key takes the newer event instead.
    bool coalesce(const AcceptRequest::Route& route, const std::string& target) {
        if (route.coalesceKey.empty()) {
            return false;
        }
        auto it = coalescing_.find({route.coalesceKey, target});
        if (it == coalescing_.end()) {
            return false;
        }
        deliveries_.at(it->second).event = route.event;
        return true;
    }

    // The accept sequence's steps over the maps; gate state is held apart from idempotency keys
    // so the two never collide.
    struct Steps final : AcceptSteps {
        Steps(MemoryStorage& spool, std::vector<std::string>& woken) : spool(spool), woken(woken) {}
        std::optional<std::string> read(const std::string& key, TimePoint now) override {
            const auto it = spool.gates_.find(key);
            if (it == spool.gates_.end() || expired(it->second.expiry, now)) return std::nullopt;
            return it->second.value;
        }
        void put(const std::string& key, const std::string& value, TimePoint expiry) override {
            spool.gates_[key] = {value, expiry};
        }
        void erase(const std::string& key) override { spool.gates_.erase(key); }
        bool idempotencyKeyHeld(const std::string& key, TimePoint now) override {
            const auto it = spool.dedup_.find(key);
            return it != spool.dedup_.end() && !expired(it->second, now);
        }
        void holdIdempotencyKey(const std::string& key, TimePoint expiry) override { spool.dedup_[key] = expiry; }
        std::size_t deliveriesHeld() override { return spool.queued_; }
        void enqueue(std::size_t, const AcceptRequest::Route& route, const std::string& target,
                     TimePoint now) override {
            if (spool.coalesce(route, target)) return;
            Delivery delivery{.id = ++spool.lastId_,
                              .route = route.name,
                              .target = target,
                              .event = route.event,
                              .createdAt = now,
                              .nextAttemptAt = now + route.delay,
                              .lastError = {}};
            spool.queues_[target].emplace(delivery.nextAttemptAt, delivery.id);
            if (!route.coalesceKey.empty()) spool.coalescing_[{route.coalesceKey, target}] = delivery.id;
            spool.deliveries_.emplace(delivery.id, std::move(delivery));
            ++spool.queued_;
            woken.push_back(target);
        }
        void recordObjectHealth(const ObjectHealth& health) override {
            if (health.failing) {
                spool.failing_.insert_or_assign(health.object(), health);
                // Amortised, as between reads the objects would pile up.
                if (spool.failing_.size() > 2 * kFailingObjectsHeld) spool.keepFailingObjects(health.at);
            } else {
                spool.failing_.erase(health.object());
            }
        }
        MemoryStorage& spool;
        std::vector<std::string>& woken;
    };

    FailingObjects keepFailingObjects(TimePoint now) {
        std::vector<ObjectHealth> held;
        for (const auto& [object, health] : failing_) held.push_back(health);
        FailingObjects sorted = sortFailingObjects(std::move(held), now);
        for (const auto& health : sorted.forgotten) failing_.erase(health.object());
        return sorted;
    }

    void pruneDedup(TimePoint now) {
        // Amortised: sweep only when the map has doubled since the last sweep.
        if (dedup_.size() + gates_.size() < 2 * dedupSizeAfterPrune_ + 1024) {
            return;
        }
        std::erase_if(dedup_, [now](const auto& entry) { return expired(entry.second, now); });
        std::erase_if(gates_, [now](const auto& entry) { return expired(entry.second.expiry, now); });
        dedupSizeAfterPrune_ = dedup_.size() + gates_.size();
    }

    void notify(std::vector<std::string> targets) {
        std::function<void(const std::string&)> listener;
        {
            std::lock_guard lock(mutex_);
            listener = listener_;
        }
        if (!listener) {
            return;
        }
        std::sort(targets.begin(), targets.end());
        targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
        for (const auto& target : targets) {
            listener(target);
        }
    }

    const std::size_t maxQueued_;
    std::mutex mutex_;
    std::uint64_t lastId_ = 0;
    std::size_t queued_ = 0;  // deliveries held: queued, in flight or dead
    std::unordered_map<std::uint64_t, Delivery> deliveries_;
    std::map<std::string, std::multimap<TimePoint, std::uint64_t>> queues_;  // target → due time → id
    std::unordered_map<std::string, TimePoint> dedup_;                       // idempotency key → expiry
    std::unordered_map<std::string, Value> gates_;                           // dedup gate key → state
    std::size_t dedupSizeAfterPrune_ = 0;
    std::unordered_map<std::string, Value> values_;
    std::map<std::pair<std::string, std::string>, std::uint64_t> coalescing_;  // (coalesce key, target) → queued id
    std::vector<DeadLetter> dead_;
    std::unordered_map<std::string, ObjectHealth> failing_;  // object → its latest error; pruned when read
    std::function<void(const std::string&)> listener_;
};

}  // namespace

std::unique_ptr<Storage> makeMemoryStorage(std::size_t maxQueuedDeliveries) {
    return std::make_unique<MemoryStorage>(maxQueuedDeliveries);
}

}  // namespace fluxrelay
