// The one Event every source produces and every later stage reads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <variant>

#include "core/time.hpp"

namespace fluxrelay {

// The Kubernetes object a Flux event is about (Flux's involvedObject).
struct ObjectRef {
    std::string kind;
    std::string namespace_;
    std::string name;
    std::string uid;
    std::string apiVersion;
    std::string resourceVersion;
    std::string fieldPath;

    // "kustomize.toolkit.fluxcd.io" for "kustomize.toolkit.fluxcd.io/v1", "" for "v1".
    std::string group() const;
    // "Kind/namespace/name", the order Flux's own log and event messages use.
    std::string path() const { return kind + "/" + namespace_ + "/" + name; }
};

// A Flux notification-controller Event, metadata already normalized (un-prefixed keys).
struct FluxEvent {
    ObjectRef involvedObject;
    std::string severity;   // "trace" | "info" | "error"
    std::string timestamp;  // RFC3339 as received; empty when null or absent
    std::string message;
    std::string reason;
    std::map<std::string, std::string> metadata;
    std::string reportingController;
    std::string reportingInstance;
    // Flux's rate-limit token (`<group>/token`, else `token`), kept for dedup keys although
    // normalization drops it from metadata, as notification-controller's rate limiter does.
    // Empty when the event carried none. Not part of the Flux JSON form.
    std::string dedupToken;
    // Set by routing for an info event that reaches an alertmanager target with `resolve: true`
    // only to end the object's firing alerts (the route takes errors only). Not Flux JSON.
    bool resolveOnly = false;
};

// A GitHub webhook delivery; the raw body is kept byte for byte for forwarding.
struct GitHubEvent {
    std::string event;       // X-GitHub-Event
    std::string deliveryId;  // X-GitHub-Delivery
    std::string ref;         // push: "refs/heads/main"; empty for other events
    bool deleted = false;    // push of a branch deletion
    std::string body;        // raw JSON body
};

// An accepted inbound event, as stored and routed.
struct Event {
    std::string id;      // assigned when accepted
    std::string source;  // name of the source it came in on
    TimePoint receivedAt;
    std::variant<FluxEvent, GitHubEvent> payload;

    const FluxEvent* flux() const { return std::get_if<FluxEvent>(&payload); }
    const GitHubEvent* github() const { return std::get_if<GitHubEvent>(&payload); }
};

using EventPtr = std::shared_ptr<const Event>;

// The Flux Event JSON as Go's encoding/json writes it (field order and names as Flux's).
nlohmann::json toFluxJson(const FluxEvent& event);
// The same event as the exact bytes Go's json.Marshal writes: nlohmann::json sorts object keys,
// this keeps Flux's field order and Go's escaping (<, >, & as \u003c \u003e \u0026). Use it
// where bytes matter: forwarding, signing, comparing with what Flux sends.
std::string toFluxJsonText(const FluxEvent& event);

// Storage record of an Event (all fields, both payload kinds), written as text directly: the
// spool stores it per delivery on every accept. fromStorageText(toStorageText(e)) == e.
// toStorageText throws std::invalid_argument on a Flux string that is not UTF-8.
std::string toStorageText(const Event& event);
// Throws nlohmann::json::exception or std::runtime_error on a record it did not write.
Event fromStorageText(std::string_view text);

// A new event id: 16 bytes in hex, the first 6 the time in milliseconds (big-endian), the rest
// random. Ids made later sort later, so indexing them appends instead of touching a random page
// of the index per event (which doubled what the spool writes).
std::string newEventId();

}  // namespace fluxrelay
