// JSON-lines formatter for spdlog: one object per line, the message escaped as a JSON string.
#include "core/log.hpp"

#include <chrono>

#include <spdlog/formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <nlohmann/json.hpp>

#include "core/time.hpp"

namespace fluxrelay {
namespace {

class JsonFormatter final : public spdlog::formatter {
public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        nlohmann::ordered_json line;
        line["time"] = formatRfc3339Nano(std::chrono::time_point_cast<Clock::duration>(msg.time));
        line["level"] = std::string(spdlog::level::to_string_view(msg.level).data(),
                                    spdlog::level::to_string_view(msg.level).size());
        line["msg"] = std::string(msg.payload.data(), msg.payload.size());
        // Invalid UTF-8 from a client must not make logging throw.
        const auto text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        dest.append(text.data(), text.data() + text.size());
        dest.push_back('\n');
    }

    std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

}  // namespace

bool setupLogging(std::string_view level) {
    const auto parsed = spdlog::level::from_str(std::string(level));
    if (parsed == spdlog::level::off && level != "off") {
        return false;
    }
    auto logger = std::make_shared<spdlog::logger>("fluxrelay", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_formatter(std::make_unique<JsonFormatter>());
    logger->set_level(parsed);
    logger->flush_on(spdlog::level::trace);
    spdlog::set_default_logger(std::move(logger));
    return true;
}

}  // namespace fluxrelay
