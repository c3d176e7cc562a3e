// spdlog set-up shared by all binaries: one line per event, as text or as JSON objects.
// JSON lines carry time, level, component and msg; access records (common/access_log) their own
// fields at top level.
#pragma once

#include <string>

#include "common/options.hpp"

namespace courier {

struct LogOptions {
  std::string level = options::kLogLevel.default_text();    // trace, debug, info, ... off
  std::string format = options::kLogFormat.default_text();  // text or json
  bool access_log = options::kAccessLog.default_bool();
  std::string access_log_skip = options::kAccessLogSkip.default_text();  // comma-separated paths
  bool log_query = options::kLogQuery.default_bool();
};

// Throws ConfigError naming the option when a value is not recognised.
void setup_logging(const std::string& component, const LogOptions& options);

}  // namespace courier
