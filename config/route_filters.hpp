// A Flux route's filters: eventSeverity, eventSources, inclusionList and exclusionList, match,
// eventMetadata (and Flux's summary), dedup.
#pragma once

#include "config/config.hpp"
#include "config/yaml_reader.hpp"

namespace fluxrelay::config_reading {

// Every pattern is compiled now, so that a bad one is an error at its line instead of a route
// that never matches.
void readFluxRouteFilters(Reader& reader, const Fields& fields, RouteConfig& route);

}  // namespace fluxrelay::config_reading
