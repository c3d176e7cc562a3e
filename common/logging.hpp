// spdlog set-up shared by all binaries: one line per event, as text or as JSON objects.
// JSON lines carry ts, level, component and msg, with the message properly escaped.
#pragma once

#include <string>

namespace courier {

struct LogOptions {
  std::string level = "info";   // trace, debug, info, warn, error, critical, off
  std::string format = "text";  // text or json
};

// Throws ConfigError naming the option when a value is not recognised.
void setup_logging(const std::string& component, const LogOptions& options);

}  // namespace courier
