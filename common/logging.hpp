// spdlog set-up shared by all binaries: one line per event, as text or as JSON objects.
// JSON lines carry ts, level, component and msg, with the message properly escaped.
#pragma once

#include <string>

#include "common/options.hpp"

namespace courier {

struct LogOptions {
  std::string level = options::kLogLevel.default_text();    // trace, debug, info, ... off
  std::string format = options::kLogFormat.default_text();  // text or json
};

// Throws ConfigError naming the option when a value is not recognised.
void setup_logging(const std::string& component, const LogOptions& options);

}  // namespace courier
