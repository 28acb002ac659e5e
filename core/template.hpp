// Text templates over a Flux event's fields ("{kind}/{name}", "{metadata.team}"): one syntax and one
// renderer for the github target's context and the alertmanager target's labels and annotations.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/event.hpp"

namespace fluxrelay {

// What a placeholder stands for.
enum class TemplateField {
    kind,                 // {kind}: involvedObject.kind
    name,                 // {name}
    namespace_,           // {namespace}
    reason,               // {reason}
    severity,             // {severity}: the event's, as sent (info, error)
    revision,             // {revision}: metadata commit, else originRevision, else revision, as written
    message,              // {message}
    reportingController,  // {reportingController}
    metadata,             // {metadata.KEY}: that metadata value, empty when the event has none
};

// A template parsed once (at load) and rendered per event. A placeholder is '{', a name of
// letters, digits and `_ . - /`, and '}'; any other brace is text as written.
class EventTemplate {
public:
    EventTemplate() = default;

    // Every placeholder must be one of TemplateField's; the error names the first one that is not
    // ("unknown placeholder '{nmae}' (did you mean '{name}'?)").
    static std::variant<EventTemplate, std::string> parse(std::string_view text);
    // The github context's form, older and narrower: only {kind}, {name} and {namespace} are
    // placeholders, anything else in braces stays as written.
    static EventTemplate parseObjectTemplate(std::string_view text);

    // Placeholders replaced by the event's values.
    std::string render(const FluxEvent& event) const;

    const std::string& text() const { return text_; }
    bool operator==(const EventTemplate& other) const { return text_ == other.text_; }

private:
    struct Part {
        std::string text;  // the literal text, or for a metadata placeholder the key
        bool placeholder = false;
        TemplateField field = TemplateField::kind;
    };
    enum class Syntax { full, objectOnly };

    static std::variant<EventTemplate, std::string> parseWith(std::string_view text, Syntax syntax);
    static std::optional<Part> placeholderPart(std::string_view name, Syntax syntax);

    std::string text_;
    std::vector<Part> parts_;
};

// The revision an event is about, as Flux's Event.GetRevision picks it: the first of metadata
// `commit`, `originRevision`, `revision` the event has (even when empty); "" when none.
std::string eventRevision(const FluxEvent& event);

}  // namespace fluxrelay
