// One (event, route, target) unit of work, as the dispatcher takes it from storage.
#pragma once

#include <cstdint>
#include <string>

#include "core/event.hpp"

namespace fluxrelay {

struct Delivery {
    std::uint64_t id = 0;
    std::string route;
    std::string target;
    EventPtr event;  // as the route delivers it (route metadata merged)
    int attempts = 0;
    TimePoint createdAt;
    TimePoint nextAttemptAt;
    std::string lastError;
};

struct DeadLetter {
    Delivery delivery;
    std::string reason;
    TimePoint deadAt;
};

}  // namespace fluxrelay
