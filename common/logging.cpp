#include "common/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>

#include "common/access_log.hpp"
#include "common/config.hpp"

namespace courier {
namespace {

// Formats each record as one JSON object per line.
class JsonFormatter final : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string component) : component_(std::move(component)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::ordered_json j;
    j["time"] = access::iso8601(msg.time);
    const auto level = spdlog::level::to_string_view(msg.level);
    j["level"] = std::string_view(level.data(), level.size());
    j["component"] = component_;
    j["msg"] = std::string_view(msg.payload.data(), msg.payload.size());
    // A message may quote bytes from the network: invalid UTF-8 becomes U+FFFD, so the line
    // stays valid JSON whatever it holds.
    const auto line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(line.data(), line.data() + line.size());
    dest.push_back('\n');
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>(component_);
  }

 private:
  std::string component_;
};

}  // namespace

void setup_logging(const std::string& component, const LogOptions& options) {
  const auto level = spdlog::level::from_str(options.level);
  if (level == spdlog::level::off && options.level != "off") {
    throw ConfigError("--log-level: '" + options.level +
                      "' must be trace, debug, info, warn, error, critical or off");
  }
  // Logs go to stderr so stdout stays free for tools; the sink is thread-safe.
  auto logger = std::make_shared<spdlog::logger>(component,
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (options.format == "json") {
    logger->set_formatter(std::make_unique<JsonFormatter>(component));
  } else if (options.format == "text") {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ [%n] %v", spdlog::pattern_time_type::utc);
  } else {
    throw ConfigError("--log-format: '" + options.format + "' must be text or json");
  }
  access::configure(
      {.enabled = options.access_log,
       .skip = access::parse_skip_list(options::kAccessLogSkip.setting(), options.access_log_skip),
       .log_query = options.log_query,
       .json = options.format == "json"},
      component);
  logger->set_level(level);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  spdlog::flush_every(std::chrono::seconds(1));
}

}  // namespace courier
