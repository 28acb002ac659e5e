// A Flux route's filters as the configuration writes them, compiled for routing.
#include "config/route_filters.hpp"

#include <algorithm>
#include <cassert>
#include <iterator>
#include <limits>

#include "config/schema.hpp"

namespace fluxrelay::config_reading {

namespace {

void parseEventSources(Reader& reader, const Entry& entry, RouteConfig& route) {
    std::optional<std::vector<YAML::Node>> items = reader.sequence(entry);
    if (!items) return;
    for (const YAML::Node& item : *items) {
        std::optional<Fields> fields =
            reader.mapping(item, item.Mark(), "eventSources entry", config_schema::keysOf(config_schema::kEventSource));
        if (!fields) continue;
        EventSourceSelector selector;
        set(selector.kind, reader.required(*fields, "kind", "eventSources entry"));
        set(selector.name, reader.nonEmpty(*fields, "name"));
        set(selector.namespace_, reader.nonEmpty(*fields, "namespace"));
        route.eventSources.push_back(std::move(selector));
    }
}

std::optional<std::vector<Pattern>> patterns(Reader& reader, const Fields& fields, std::string_view key) {
    std::optional<std::vector<Item>> items = reader.stringList(fields, key);
    if (!items) return std::nullopt;
    std::vector<Pattern> out;
    for (Item& item : *items) {
        if (auto regex = reader.regex(item.text, item.mark)) out.push_back({std::move(item.text), regex});
    }
    return out;
}

void parseMetadataMatch(Reader& reader, const Fields& fields, RouteConfig& route) {
    std::optional<std::vector<MapItem>> metadata = reader.stringMapItems(fields, "metadata");
    if (!metadata) return;
    for (MapItem& item : *metadata) {
        if (auto regex = reader.regex(item.value, item.mark)) {
            route.match.push_back({MatchField::metadata, std::move(item.name), std::move(item.value), regex});
        }
    }
}

void parseMatch(Reader& reader, const Entry& entry, RouteConfig& route) {
    static constexpr std::pair<std::string_view, MatchField> kFields[] = {
        {"reason", MatchField::reason},
        {"kind", MatchField::kind},
        {"name", MatchField::name},
        {"namespace", MatchField::namespace_},
        {"reportingController", MatchField::reportingController},
    };
    std::optional<Fields> fields = reader.mapping(entry, "match", config_schema::keysOf(config_schema::kMatch));
    if (!fields) return;
    // In the file's order, so that explain reports matchers as the user wrote them.
    for (const Entry& field : fields->entries) {
        if (field.name == "metadata") {
            parseMetadataMatch(reader, *fields, route);
            continue;
        }
        const auto* known =
            std::find_if(std::begin(kFields), std::end(kFields), [&](const auto& f) { return f.first == field.name; });
        assert(known != std::end(kFields));  // mapping() let only these keys through
        std::optional<std::string> pattern = reader.string(*fields, field.name);
        if (!pattern) continue;
        if (auto regex = reader.regex(*pattern, valueMark(field))) {
            route.match.push_back({known->second, "", *pattern, regex});
        }
    }
}

void parseDedup(Reader& reader, const Entry& entry, DedupConfig& dedup) {
    std::optional<Fields> fields = reader.mapping(entry, "dedup", config_schema::keysOf(config_schema::kDedup));
    if (!fields) return;
    set(dedup.mode, reader.choice<DedupMode>(*fields, "mode",
                                             {{"flux", DedupMode::flux},
                                              {"normalized", DedupMode::normalized},
                                              {"transitions", DedupMode::transitions},
                                              {"none", DedupMode::none}}));
    set(dedup.window, reader.duration(*fields, "window", false));
    set(dedup.renotify, reader.duration(*fields, "renotify", true));
    setNumber(dedup.threshold, reader.integer(*fields, "threshold", 0, std::numeric_limits<int>::max()));
    if (const Entry* renotify = fields->find("renotify"); renotify != nullptr && dedup.mode != DedupMode::transitions) {
        reader.error(renotify->key.Mark(), "'renotify' applies only to dedup mode 'transitions'");
    }
    // Transitions compare with the object's last state however old it is, and mode none keeps
    // nothing: only the window modes and a threshold count within a window.
    const bool windowRead = dedup.mode == DedupMode::flux || dedup.mode == DedupMode::normalized || dedup.threshold > 0;
    if (const Entry* window = fields->find("window"); window != nullptr && !windowRead) {
        reader.error(window->key.Mark(),
                     "'window' applies only to dedup modes 'flux' and 'normalized', or with a 'threshold'");
    }
}

}  // namespace

void readFluxRouteFilters(Reader& reader, const Fields& fields, RouteConfig& route) {
    set(route.eventSeverity,
        reader.choice<Severity>(fields, "eventSeverity", {{"info", Severity::info}, {"error", Severity::error}}));
    if (const Entry* sources = fields.find("eventSources")) parseEventSources(reader, *sources, route);
    set(route.inclusionList, patterns(reader, fields, "inclusionList"));
    set(route.exclusionList, patterns(reader, fields, "exclusionList"));
    if (const Entry* match = fields.find("match")) parseMatch(reader, *match, route);
    if (auto metadata = reader.stringMap(fields, "eventMetadata")) {
        route.eventMetadata.insert(metadata->begin(), metadata->end());
    }
    // Flux Alert's deprecated spec.summary, kept for imported Alerts; eventMetadata wins.
    if (std::optional<std::string> summary = reader.string(fields, "summary")) {
        route.eventMetadata.emplace("summary", *summary);
    }
    if (const Entry* dedup = fields.find("dedup")) parseDedup(reader, *dedup, route.dedup);
}

}  // namespace fluxrelay::config_reading
