// Alertmanager target: Flux's alert shape, so existing routes and silences keep matching.
#include "providers/alertmanager.hpp"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <map>
#include <string>
#include <utility>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

namespace fluxrelay {

namespace {

// Word-break classes of Go's cases package, which approximates Unicode word breaking (UAX #29)
// with three groups: letters never break, one "mid" rune between letters does not break but two in
// a row do, and everything else breaks.
enum class TitleClass {
    upper,       // A-Z: cased
    lower,       // a-z: cased
    otherCased,  // any non-ASCII byte, see below
    mid,         // MidLetter, MidNumLet, Single_Quote: ':' '.' '\''
    letter,      // Numeric, ExtendNumLet: digits and '_' (uncased, but inside a word)
    breaks,      // the rest of ASCII: spaces, '-', '/', ',', '"', ...
};

TitleClass titleClass(char c) {
    if (c >= 'A' && c <= 'Z') return TitleClass::upper;
    if (c >= 'a' && c <= 'z') return TitleClass::lower;
    // Reasons are Kubernetes reasons (CamelCase ASCII); a non-ASCII letter is kept as written
    // but still counts as the word's first letter, so the ASCII after it is lower-cased as Go would.
    if (static_cast<unsigned char>(c) >= 0x80) return TitleClass::otherCased;
    if (c == ':' || c == '.' || c == '\'') return TitleClass::mid;
    if ((c >= '0' && c <= '9') || c == '_') return TitleClass::letter;
    return TitleClass::breaks;
}

class AlertmanagerProvider final : public Provider {
public:
    explicit AlertmanagerProvider(const TargetConfig& target) : Provider(target, traits(target)) {}

    // With `resolve: true` the target remembers, per object, the alerts it fired (one key per
    // target, so the periodic re-send reads one value); an info event of that object re-sends them
    // with endsAt = now, so Alertmanager resolves them.
    std::vector<std::string> stateKeys(std::span<const Delivery> /*batch*/) const override {
        if (!target_.resolve) return {};
        return {firingKey(target_)};
    }

    AttemptPlan plan(std::span<const Delivery> batch, const ProviderState& state, TimePoint now) const override {
        assert(!batch.empty());
        for (const Delivery& delivery : batch) {
            if (!delivery.event || delivery.event->flux() == nullptr) {
                return AttemptPlan::decide(Outcome::permanent("alertmanager targets take only Flux events"));
            }
        }
        if (!target_.resolve) {
            nlohmann::json alerts = nlohmann::json::array();
            for (const Delivery& delivery : batch) alerts.push_back(alertFor(*delivery.event, now));
            return {.requests = {post(alerts)}, .decided = {}, .writes = {}};
        }
        Replay replay = replayBatch(batch, state, now);
        if (replay.alerts.empty()) {
            AttemptPlan plan = AttemptPlan::decide(Outcome::delivered(
                replay.superseded ? "superseded: a later event of the same object was delivered first"
                                  : "nothing firing to resolve"));
            if (replay.changed) plan.writes = stored(replay.objects);
            return plan;
        }
        return {.requests = {post(replay.alerts)}, .decided = {}, .writes = stored(replay.objects)};
    }

    // Every alert still firing, valid for another three intervals: Alertmanager keeps it active
    // as long as the relay keeps re-sending it, and ends it by itself if the relay is gone.
    std::vector<HttpRequest> refreshRequests(const ProviderState& state, TimePoint now) const override {
        nlohmann::json alerts = nlohmann::json::array();
        const nlohmann::json objects = objectStates(state, now);
        for (const auto& entry : objects) {
            for (nlohmann::json alert : entry["alerts"]) {
                startNoLaterThan(alert, now);
                alert["endsAt"] = formatRfc3339Nano(now + firingValidity());
                alerts.push_back(std::move(alert));
            }
        }
        std::vector<HttpRequest> requests;
        for (std::size_t first = 0; first < alerts.size(); first += maxBatch()) {
            const std::size_t last = std::min(alerts.size(), first + maxBatch());
            requests.push_back(post(nlohmann::json(alerts.begin() + static_cast<std::ptrdiff_t>(first),
                                                   alerts.begin() + static_cast<std::ptrdiff_t>(last))));
        }
        return requests;
    }

private:
    struct Replay {
        nlohmann::json alerts = nlohmann::json::array();  // what to post, in order
        // Per object: {seenAt, applied, alerts}: the alerts still firing (none once it recovered)
        // and the delivery id of the last event of the object that was applied.
        nlohmann::json objects = nlohmann::json::object();
        bool changed = false;     // objects differs from the state read
        bool superseded = false;  // some delivery was older than what its object had applied
    };

    // An object is remembered this long after its last event reached the target: long enough for
    // any retry of an older event to find it superseded, and a deleted object, which sends no
    // recovery, has its alerts end some day.
    static constexpr Duration kObjectMemory = std::chrono::hours(24);

    static std::string firingKey(const TargetConfig& target) { return "alertmanager-firing:" + target.name; }

    static Traits traits(const TargetConfig& target) {
        Traits traits{.maxBatch = target.maxBatch > 0 ? static_cast<std::size_t>(target.maxBatch) : 1,
                      .refresh = {},
                      .ownHeaders = {"Content-Type"}};
        if (target.resolve)
            traits.refresh = Refresh{.interval = target.refireInterval, .stateKeys = {firingKey(target)}};
        if (hasAuthorization(target)) traits.ownHeaders.emplace_back("Authorization");
        return traits;
    }

    Duration firingValidity() const { return 3 * target_.refireInterval; }

    // Flux's alert, with the target's severity mapping, labels and annotations applied, starting no
    // later than `now`. What it returns is also what the firing set stores, so a resolution carries
    // exactly the labels the alert fired with.
    nlohmann::json alertFor(const Event& event, TimePoint now) const {
        const FluxEvent& flux = *event.flux();
        nlohmann::json alert = fluxAlert(event);
        if (const auto it = target_.severityMap.find(flux.severity); it != target_.severityMap.end()) {
            alert["labels"]["severity"] = it->second;
        }
        applyTemplates(alert["labels"], target_.labels, flux);
        applyTemplates(alert["annotations"], target_.annotations, flux);
        startNoLaterThan(alert, now);
        return alert;
    }

    // Configured names win over metadata of the same name; the loader keeps Flux's own out of
    // reach. A value that renders empty leaves its name out (Alertmanager reads an empty label as
    // no label), so `revision: ""` drops a metadata label too.
    static void applyTemplates(nlohmann::json& into,
                               const std::vector<std::pair<std::string, EventTemplate>>& templates,
                               const FluxEvent& flux) {
        for (const auto& [name, text] : templates) {
            std::string value = text.render(flux);
            if (value.empty()) {
                into.erase(name);
            } else {
                into[name] = std::move(value);
            }
        }
    }

    // A controller whose clock runs ahead stamps its events in the future, and Alertmanager refuses
    // an alert that starts after it ends (its own resolve timeout, or ours): no alert the relay
    // sends starts later than the moment it is sent. Stored alerts fired before this rule existed
    // pass through it again on their way out.
    static void startNoLaterThan(nlohmann::json& alert, TimePoint now) {
        TimePoint startsAt;
        if (!alert["startsAt"].is_string() ||
            !parseRfc3339(alert["startsAt"].get_ref<const std::string&>(), startsAt) || startsAt <= now) {
            return;
        }
        spdlog::debug("alert {} of {}/{} starts at {}, after now (the sender's clock runs ahead): sent as starting now",
                      alert["labels"].value("alertname", ""), alert["labels"].value("namespace", ""),
                      alert["labels"].value("name", ""), alert["startsAt"].get<std::string>());
        alert["startsAt"] = formatRfc3339(now);
    }

    // The stored objects, minus those whose last event is older than kObjectMemory.
    nlohmann::json objectStates(const ProviderState& state, TimePoint now) const {
        nlohmann::json objects = nlohmann::json::object();
        if (const auto it = state.find(firingKey(target_)); it != state.end() && it->second) {
            objects = nlohmann::json::parse(*it->second, nullptr, false);
            if (!objects.is_object()) objects = nlohmann::json::object();
        }
        const auto cutoff =
            std::chrono::duration_cast<std::chrono::milliseconds>((now - kObjectMemory).time_since_epoch()).count();
        for (auto it = objects.begin(); it != objects.end();) {
            const auto& seenAt = (*it)["seenAt"];
            const bool fresh =
                seenAt.is_number_integer() && seenAt.get<std::int64_t>() >= cutoff && (*it)["alerts"].is_array();
            it = fresh ? std::next(it) : objects.erase(it);
        }
        return objects;
    }

    ProviderState stored(const nlohmann::json& objects) const {
        return {{firingKey(target_), objects.empty() ? std::nullopt : std::optional(objects.dump())}};
    }

    // Plays the batch over the stored objects: errors fire (and are remembered, one per label set),
    // other events end everything their object has firing. Deliveries are applied in the order they
    // were accepted, whichever worker or replica sends them: one older than the last applied event
    // of its object is skipped, so a retried failure never re-fires an object that recovered since.
    // Pure, so the request and the state written after it always agree.
    Replay replayBatch(std::span<const Delivery> batch, const ProviderState& state, TimePoint now) const {
        Replay replay{.alerts = nlohmann::json::array(), .objects = objectStates(state, now)};
        const auto nowMillis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
        for (const Delivery& delivery : batch) {
            const FluxEvent& flux = *delivery.event->flux();
            const std::string object = flux.involvedObject.path();
            nlohmann::json known = replay.objects.contains(object)
                                       ? std::move(replay.objects[object])
                                       : nlohmann::json{{"alerts", nlohmann::json::array()}};
            if (const auto& applied = known["applied"];
                applied.is_number_unsigned() && applied.get<std::uint64_t>() >= delivery.id) {
                replay.objects[object] = std::move(known);
                replay.superseded = true;
                continue;
            }
            nlohmann::json firing = nlohmann::json::array();
            if (flux.severity == "error") {
                nlohmann::json alert = alertFor(*delivery.event, now);
                for (auto& alertFiring : known["alerts"]) {
                    if (alertFiring["labels"] != alert["labels"]) firing.push_back(std::move(alertFiring));
                }
                firing.push_back(alert);
                alert["endsAt"] = formatRfc3339Nano(now + firingValidity());
                replay.alerts.push_back(std::move(alert));
            } else {
                for (nlohmann::json alert : known["alerts"]) {
                    startNoLaterThan(alert, now);
                    alert["status"] = "resolved";
                    alert["endsAt"] = formatRfc3339Nano(now);
                    replay.alerts.push_back(std::move(alert));
                }
                if (!flux.resolveOnly) replay.alerts.push_back(alertFor(*delivery.event, now));
            }
            replay.objects[object] = {{"seenAt", nowMillis}, {"applied", delivery.id}, {"alerts", std::move(firing)}};
            replay.changed = true;
        }
        return replay;
    }

    HttpRequest post(const nlohmann::json& alerts) const {
        HttpRequest request;
        request.method = "POST";
        // As given: the address names the API endpoint (usually /api/v2/alerts), as in Flux.
        request.url = target_.address;
        request.headers.emplace_back("Content-Type", "application/json");
        addAuthorization(request);
        addConfiguredHeaders(request);
        // Inbound JSON was validated as UTF-8, but a replacement character is better than a throw.
        request.body = alerts.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        return request;
    }

    // Alertmanager answers 200 with an empty body, 400 when an alert fails validation (bad label
    // name, no labels): the shared classification already says exactly that.
};

}  // namespace

std::unique_ptr<Provider> makeAlertmanagerProvider(const TargetConfig& target) {
    return std::make_unique<AlertmanagerProvider>(target);
}

std::string goTitle(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    bool midWord = false;  // false: the next cased letter starts a word and is upper-cased
    bool previousMid = false;
    for (const char c : text) {
        const TitleClass cls = titleClass(c);
        if (previousMid && cls == TitleClass::mid) midWord = false;
        switch (cls) {
            case TitleClass::upper:
                out += midWord ? static_cast<char>(c - 'A' + 'a') : c;
                midWord = true;
                break;
            case TitleClass::lower:
                out += midWord ? c : static_cast<char>(c - 'a' + 'A');
                midWord = true;
                break;
            case TitleClass::otherCased:
                out += c;
                midWord = true;
                break;
            case TitleClass::mid:
            case TitleClass::letter:
                out += c;
                break;
            case TitleClass::breaks:
                out += c;
                midWord = false;
                break;
        }
        previousMid = cls == TitleClass::mid;
    }
    return out;
}

nlohmann::json fluxAlert(const Event& event) {
    const FluxEvent* flux = event.flux();
    assert(flux != nullptr && "the provider checks the payload kind first");
    if (flux == nullptr) return nlohmann::json::object();

    nlohmann::json labels = nlohmann::json::object();
    nlohmann::json annotations = nlohmann::json::object();
    annotations["message"] = flux->message;
    for (const auto& [key, value] : flux->metadata) {
        // summary is free text meant for people, so it is an annotation; everything else is a label
        // routes and silences can match on.
        if (key == "summary") {
            annotations["summary"] = value;
        } else {
            labels[key] = value;
        }
    }
    // Set after the metadata, so these win over metadata keys of the same name, as in Flux.
    labels["alertname"] = "Flux" + flux->involvedObject.kind + goTitle(flux->reason);
    labels["severity"] = flux->severity;
    labels["reason"] = flux->reason;
    labels["kind"] = flux->involvedObject.kind;
    labels["name"] = flux->involvedObject.name;
    labels["namespace"] = flux->involvedObject.namespace_;
    labels["reportingcontroller"] = flux->reportingController;

    // Flux formats the event time with RFC3339 in the controller's zone (UTC in its image), dropping
    // fractions; so does formatRfc3339. An event without a timestamp would make Flux send year 1,
    // which Alertmanager replaces with its own "now": the time we received it is that, only earlier.
    TimePoint startsAt = event.receivedAt;
    if (TimePoint parsed; !flux->timestamp.empty() && parseRfc3339(flux->timestamp, parsed)) startsAt = parsed;

    nlohmann::json alert = nlohmann::json::object();
    alert["status"] = "firing";
    alert["labels"] = std::move(labels);
    alert["annotations"] = std::move(annotations);
    alert["startsAt"] = formatRfc3339(startsAt);
    // Flux also sends "endsAt": "0001-01-01T00:00:00Z", which Alertmanager reads as unset, exactly
    // as it reads an absent endsAt; leaving it out keeps the payload honest.
    return alert;
}

}  // namespace fluxrelay
