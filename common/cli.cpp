#include "common/cli.hpp"

#include <spdlog/spdlog.h>

#include <iostream>

namespace courier {

void add_common_options(CLI::App& app, CommonOptions& options) {
  app.add_option("-c,--config", options.config_path, "YAML config file (docs/configuration.md)")
      ->envname("COURIER_CONFIG");
  app.add_option("--set", options.overrides,
                 "Override a config key, e.g. --set services.ai-gm.timeout=90 (repeatable)")
      ->type_name("KEY=VALUE");
  app.add_option("--log-level", options.log.level,
                 "trace, debug, info, warn, error, critical or off")
      ->envname("COURIER_LOG_LEVEL")
      ->capture_default_str();
  app.add_option("--log-format", options.log.format, "text or json")
      ->envname("COURIER_LOG_FORMAT")
      ->capture_default_str();
}

std::string resolve(const std::string& flag_value, const ConfigFile& file, const std::string& key,
                    const std::string& fallback) {
  if (!flag_value.empty()) return flag_value;
  if (auto v = file.get(key, "")) return *v;
  return fallback;
}

int run_main(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << app.get_name() << ": " << e.what() << "\n(run with --help for usage)\n";
    return 2;
  }
  try {
    return body();
  } catch (const ConfigError& e) {
    std::cerr << app.get_name() << ": configuration error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << app.get_name() << ": fatal: " << e.what() << "\n";
    spdlog::critical("fatal: {}", e.what());
    return 1;
  }
}

}  // namespace courier
