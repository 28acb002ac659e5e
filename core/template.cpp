// Event templates: parsed once, rendered per event.
#include "core/template.hpp"

#include <array>
#include <utility>

#include "core/text.hpp"

namespace fluxrelay {

namespace {

struct Placeholder {
    std::string_view name;
    TemplateField field;
};

// The object's three first: they are all the github context's older form knows.
constexpr std::array kPlaceholders{
    Placeholder{"kind", TemplateField::kind},
    Placeholder{"name", TemplateField::name},
    Placeholder{"namespace", TemplateField::namespace_},
    Placeholder{"reason", TemplateField::reason},
    Placeholder{"severity", TemplateField::severity},
    Placeholder{"revision", TemplateField::revision},
    Placeholder{"message", TemplateField::message},
    Placeholder{"reportingController", TemplateField::reportingController},
};
constexpr std::size_t kObjectPlaceholders = 3;
constexpr std::string_view kMetadataPrefix = "metadata.";

bool isNameChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-' || c == '/';
}

// The name inside the placeholder that starts at text[pos] ('{'), or nullopt when that brace
// starts none (no name, or no '}' right after it).
std::optional<std::string_view> placeholderNameAt(std::string_view text, std::size_t pos) {
    std::size_t end = pos + 1;
    while (end < text.size() && isNameChar(text[end])) ++end;
    if (end == pos + 1 || end == text.size() || text[end] != '}') return std::nullopt;
    return text.substr(pos + 1, end - pos - 1);
}

std::string unknownPlaceholder(std::string_view name) {
    std::vector<std::string_view> known;
    std::string list;
    for (const Placeholder& placeholder : kPlaceholders) {
        known.push_back(placeholder.name);
        list += "{" + std::string(placeholder.name) + "} ";
    }
    std::string message = "unknown placeholder '{" + std::string(name) + "}'";
    if (const auto match = closestMatch(name, known))
        return message + " (did you mean '{" + std::string(*match) + "}'?)";
    return message + " (known: " + list + "{metadata.KEY})";
}

}  // namespace

std::optional<EventTemplate::Part> EventTemplate::placeholderPart(std::string_view name, Syntax syntax) {
    const std::size_t known = syntax == Syntax::full ? kPlaceholders.size() : kObjectPlaceholders;
    for (std::size_t i = 0; i < known; ++i) {
        if (kPlaceholders[i].name == name)
            return Part{.text = {}, .placeholder = true, .field = kPlaceholders[i].field};
    }
    if (syntax == Syntax::full && name.starts_with(kMetadataPrefix) && name.size() > kMetadataPrefix.size()) {
        return Part{.text = std::string(name.substr(kMetadataPrefix.size())),
                    .placeholder = true,
                    .field = TemplateField::metadata};
    }
    return std::nullopt;
}

std::variant<EventTemplate, std::string> EventTemplate::parseWith(std::string_view text, Syntax syntax) {
    EventTemplate out;
    out.text_ = std::string(text);
    std::string literal;
    for (std::size_t pos = 0; pos < text.size();) {
        const std::optional<std::string_view> name =
            text[pos] == '{' ? placeholderNameAt(text, pos) : std::optional<std::string_view>();
        std::optional<Part> part = name ? placeholderPart(*name, syntax) : std::nullopt;
        if (!part) {
            if (name && syntax == Syntax::full) return unknownPlaceholder(*name);
            literal += text[pos++];
            continue;
        }
        if (!literal.empty()) out.parts_.push_back(Part{.text = std::exchange(literal, {})});
        out.parts_.push_back(std::move(*part));
        pos += name->size() + 2;
    }
    if (!literal.empty()) out.parts_.push_back(Part{.text = std::move(literal)});
    return out;
}

std::variant<EventTemplate, std::string> EventTemplate::parse(std::string_view text) {
    return parseWith(text, Syntax::full);
}

EventTemplate EventTemplate::parseObjectTemplate(std::string_view text) {
    // This form keeps what it does not know as text, so it never fails.
    return std::get<EventTemplate>(parseWith(text, Syntax::objectOnly));
}

std::string EventTemplate::render(const FluxEvent& event) const {
    std::string out;
    for (const Part& part : parts_) {
        if (!part.placeholder) {
            out += part.text;
            continue;
        }
        switch (part.field) {
            case TemplateField::kind:
                out += event.involvedObject.kind;
                break;
            case TemplateField::name:
                out += event.involvedObject.name;
                break;
            case TemplateField::namespace_:
                out += event.involvedObject.namespace_;
                break;
            case TemplateField::reason:
                out += event.reason;
                break;
            case TemplateField::severity:
                out += event.severity;
                break;
            case TemplateField::revision:
                out += eventRevision(event);
                break;
            case TemplateField::message:
                out += event.message;
                break;
            case TemplateField::reportingController:
                out += event.reportingController;
                break;
            case TemplateField::metadata:
                if (const auto it = event.metadata.find(part.text); it != event.metadata.end()) out += it->second;
                break;
        }
    }
    return out;
}

std::string eventRevision(const FluxEvent& event) {
    for (const char* key : {"commit", "originRevision", "revision"}) {
        if (const auto it = event.metadata.find(key); it != event.metadata.end()) return it->second;
    }
    return {};
}

}  // namespace fluxrelay
