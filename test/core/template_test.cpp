// Event templates: the placeholders, what is text, what is refused, and Flux's revision.
#include "core/template.hpp"

#include <doctest/doctest.h>

#include <string>
#include <variant>

namespace fluxrelay {
namespace {

FluxEvent helmFailure() {
    FluxEvent flux;
    flux.involvedObject.kind = "HelmRelease";
    flux.involvedObject.namespace_ = "media";
    flux.involvedObject.name = "plex";
    flux.severity = "error";
    flux.message = "install retries exhausted";
    flux.reason = "InstallFailed";
    flux.reportingController = "helm-controller";
    flux.metadata = {{"revision", "1.2.3"}, {"team", "media"}, {"app.kubernetes.io/part-of", "home"}};
    return flux;
}

EventTemplate parsed(std::string_view text) {
    auto result = EventTemplate::parse(text);
    REQUIRE_MESSAGE(std::holds_alternative<EventTemplate>(result), std::get<std::string>(result));
    return std::get<EventTemplate>(std::move(result));
}

std::string refusal(std::string_view text) {
    auto result = EventTemplate::parse(text);
    REQUIRE(std::holds_alternative<std::string>(result));
    return std::get<std::string>(result);
}

}  // namespace

TEST_CASE("templates fill every placeholder from the event") {
    const FluxEvent flux = helmFailure();
    CHECK(parsed("{kind}/{namespace}/{name}").render(flux) == "HelmRelease/media/plex");
    CHECK(parsed("{reason} ({severity}) by {reportingController}").render(flux) ==
          "InstallFailed (error) by helm-controller");
    CHECK(parsed("{message}").render(flux) == "install retries exhausted");
    CHECK(parsed("{revision}").render(flux) == "1.2.3");
    CHECK(parsed("team-{metadata.team}, {metadata.app.kubernetes.io/part-of}").render(flux) == "team-media, home");
    // Case is kept: lower-casing is the github context's own business.
    CHECK(parsed("Flux {kind}").render(flux) == "Flux HelmRelease");
}

TEST_CASE("templates: a metadata key the event lacks renders empty, text alone renders as written") {
    const FluxEvent flux = helmFailure();
    CHECK(parsed("{metadata.owner}").render(flux).empty());
    CHECK(parsed("").render(flux).empty());
    CHECK(parsed("home").render(flux) == "home");
    CHECK(parsed("https://runbooks/{kind}#{reason}").render(flux) == "https://runbooks/HelmRelease#InstallFailed");
}

TEST_CASE("templates: braces that hold no placeholder name are text") {
    const FluxEvent flux = helmFailure();
    CHECK(parsed(R"({"app": 1} {} { name } {{name}} {name)").render(flux) == R"({"app": 1} {} { name } {plex} {name)");
}

TEST_CASE("templates refuse an unknown placeholder, naming it") {
    CHECK(refusal("{kind}/{nmae}") == "unknown placeholder '{nmae}' (did you mean '{name}'?)");
    CHECK(refusal("{Kind}") == "unknown placeholder '{Kind}' (did you mean '{kind}'?)");
    CHECK(refusal("{cluster}") ==
          "unknown placeholder '{cluster}' (known: {kind} {name} {namespace} {reason} {severity} {revision} {message} "
          "{reportingController} {metadata.KEY})");
    CHECK(refusal("{metadata.}").starts_with("unknown placeholder '{metadata.}'"));
    CHECK(refusal("{involvedObject.name}").starts_with("unknown placeholder '{involvedObject.name}'"));
}

TEST_CASE("the object template (the github context) knows kind, name and namespace and keeps the rest as written") {
    FluxEvent flux = helmFailure();
    CHECK(EventTemplate::parseObjectTemplate("{kind}/{namespace}/{name}").render(flux) == "HelmRelease/media/plex");
    CHECK(EventTemplate::parseObjectTemplate("{kind}-{reason}-{metadata.team}{").render(flux) ==
          "HelmRelease-{reason}-{metadata.team}{");
    CHECK(EventTemplate::parseObjectTemplate("{{name}}").render(flux) == "{plex}");
}

TEST_CASE("templates compare by their text") {
    CHECK(parsed("{kind}") == parsed("{kind}"));
    CHECK_FALSE(parsed("{kind}") == parsed("{name}"));
    CHECK(parsed("{kind}/x").text() == "{kind}/x");
}

TEST_CASE("eventRevision picks metadata commit, else originRevision, else revision, as Flux's GetRevision") {
    FluxEvent flux;
    CHECK(eventRevision(flux).empty());
    flux.metadata["revision"] = "sha256:abc";
    CHECK(eventRevision(flux) == "sha256:abc");
    flux.metadata["originRevision"] = "main@sha1:0123";
    CHECK(eventRevision(flux) == "main@sha1:0123");
    flux.metadata["commit"] = "4567";
    CHECK(eventRevision(flux) == "4567");
    // Present counts, as Go's map lookup: an empty commit is the revision.
    flux.metadata["commit"] = "";
    CHECK(eventRevision(flux).empty());
}

}  // namespace fluxrelay
