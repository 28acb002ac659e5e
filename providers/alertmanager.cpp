// Alertmanager target (SPEC §5.1): Flux's alert shape, so existing routes and silences keep matching.
#include "providers/alertmanager.hpp"

#include <algorithm>
#include <cassert>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

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
    explicit AlertmanagerProvider(TargetConfig target) : target_(std::move(target)) {}

    std::size_t maxBatch() const override {
        return target_.maxBatch > 0 ? static_cast<std::size_t>(target_.maxBatch) : 1;
    }

    BuildResult buildRequest(std::span<const Delivery> batch) const override {
        assert(!batch.empty());
        nlohmann::json alerts = nlohmann::json::array();
        for (const Delivery& delivery : batch) {
            if (!delivery.event || delivery.event->flux() == nullptr) {
                return Outcome::permanent("alertmanager targets take only Flux events");
            }
            alerts.push_back(fluxAlert(*delivery.event));
        }
        return post(alerts);
    }

    // With `resolve: true` the target remembers, per object, the alerts it fired; an info event
    // of that object re-sends them with endsAt = now, so Alertmanager resolves them.
    std::vector<std::string> stateKeys(std::span<const Delivery> batch) const override {
        std::vector<std::string> keys;
        if (!target_.resolve) return keys;
        for (const Delivery& delivery : batch) {
            if (delivery.event && delivery.event->flux()) keys.push_back(firingKey(*delivery.event->flux()));
        }
        std::sort(keys.begin(), keys.end());
        keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
        return keys;
    }

    std::vector<BuildResult> buildRequests(std::span<const Delivery> batch, const State& state,
                                           TimePoint now) const override {
        if (!target_.resolve) return {buildRequest(batch)};
        for (const Delivery& delivery : batch) {
            if (!delivery.event || delivery.event->flux() == nullptr) {
                return {Outcome::permanent("alertmanager targets take only Flux events")};
            }
        }
        const Replay replay = replayBatch(batch, state, now);
        if (replay.alerts.empty()) return {Outcome::delivered("nothing firing to resolve")};
        return {post(replay.alerts)};
    }

    State stateAfterDelivery(std::span<const Delivery> batch, const State& state) const override {
        if (!target_.resolve) return {};
        State out;
        for (auto& [key, firing] : replayBatch(batch, state, Clock::now()).firing) {
            out[key] = firing.empty() ? std::nullopt : std::optional(firing.dump());
        }
        return out;
    }

private:
    struct Replay {
        nlohmann::json alerts = nlohmann::json::array();  // what to post, in order
        std::map<std::string, nlohmann::json> firing;     // per object key: the alerts left firing
    };

    std::string firingKey(const FluxEvent& event) const {
        return "alertmanager-firing:" + target_.name + ":" + event.involvedObject.kind + "/" +
               event.involvedObject.namespace_ + "/" + event.involvedObject.name;
    }

    // Plays the batch over the stored firing sets: errors fire (and are remembered, one per label
    // set), other events end everything their object has firing. Pure, so the request and the
    // state written after it always agree.
    Replay replayBatch(std::span<const Delivery> batch, const State& state, TimePoint now) const {
        Replay replay;
        for (const auto& [key, value] : state) {
            auto parsed = value ? nlohmann::json::parse(*value, nullptr, false) : nlohmann::json::array();
            replay.firing[key] = parsed.is_array() ? parsed : nlohmann::json::array();
        }
        for (const Delivery& delivery : batch) {
            const FluxEvent& flux = *delivery.event->flux();
            nlohmann::json& firing = replay.firing[firingKey(flux)];
            if (flux.severity == "error") {
                nlohmann::json alert = fluxAlert(*delivery.event);
                nlohmann::json kept = nlohmann::json::array();
                for (auto& known : firing) {
                    if (known["labels"] != alert["labels"]) kept.push_back(std::move(known));
                }
                kept.push_back(alert);
                firing = std::move(kept);
                replay.alerts.push_back(std::move(alert));
                continue;
            }
            for (nlohmann::json alert : firing) {
                alert["status"] = "resolved";
                alert["endsAt"] = formatRfc3339Nano(now);
                replay.alerts.push_back(std::move(alert));
            }
            firing = nlohmann::json::array();
            if (!flux.resolveOnly) replay.alerts.push_back(fluxAlert(*delivery.event));
        }
        return replay;
    }

    HttpRequest post(const nlohmann::json& alerts) const {
        HttpRequest request;
        request.method = "POST";
        // As given: the address names the API endpoint (usually /api/v2/alerts), as in Flux.
        request.url = target_.address;
        request.headers.emplace_back("Content-Type", "application/json");
        addTargetHeaders(target_, request);
        // Inbound JSON was validated as UTF-8, but a replacement character is better than a throw.
        request.body = alerts.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        return request;
    }

public:
    // Alertmanager answers 200 with an empty body, 400 when an alert fails validation (bad label
    // name, no labels): the shared classification already says exactly that.

private:
    TargetConfig target_;
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
