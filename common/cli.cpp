#include "common/cli.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <iostream>

namespace courier {

CLI::Option* OptionFlags::add(CLI::App& app, const ComponentOption& option,
                              const std::string& names) {
  std::string help(option.help);
  if (!option.fallback.empty()) help += " [" + option.default_text() + "]";
  if (!option.env.empty()) help += " (env " + std::string(option.env) + ")";
  return app.add_option(names.empty() ? std::string(option.flag) : names,
                        flags_[std::string(option.key)], help);
}

std::string OptionFlags::text(const ComponentOption& option, const ConfigFile& file) const {
  if (auto it = flags_.find(option.key); it != flags_.end() && !it->second.empty()) {
    return it->second;
  }
  if (auto v = file.get(std::string(option.key), std::string(option.env))) return *v;
  return option.default_text();
}

std::chrono::milliseconds OptionFlags::seconds(const ComponentOption& option,
                                               const ConfigFile& file) const {
  return parse_seconds(option.setting(), text(option, file));
}

long long OptionFlags::integer(const ComponentOption& option, const ConfigFile& file) const {
  return parse_int(option.setting(), text(option, file), option.min, option.max);
}

bool OptionFlags::boolean(const ComponentOption& option, const ConfigFile& file) const {
  return parse_bool(option.setting(), text(option, file));
}

std::vector<std::string> OptionFlags::endpoints(const ComponentOption& option,
                                                const ConfigFile& file) const {
  return parse_endpoints(option.setting(), text(option, file));
}

Heartbeat read_heartbeat(const OptionFlags& flags, const ComponentOption& interval,
                         const ComponentOption& liveness, const ConfigFile& file) {
  Heartbeat out{flags.seconds(interval, file), static_cast<int>(flags.integer(liveness, file))};
  if (out.interval < std::chrono::milliseconds{10}) {
    throw ConfigError(interval.setting() + ": must be at least 0.01 seconds");
  }
  return out;
}

std::string host_name(const std::string& fallback) {
  char host[256] = "";
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return fallback;
  return host;
}

LogOptions CommonOptions::log(const ConfigFile& file) const {
  return {flags.text(options::kLogLevel, file), flags.text(options::kLogFormat, file),
          flags.boolean(options::kAccessLog, file), flags.text(options::kAccessLogSkip, file),
          flags.boolean(options::kLogQuery, file)};
}

void add_common_options(CLI::App& app, CommonOptions& options) {
  app.add_option("-c,--config", options.config_path, "YAML config file (docs/configuration.md)")
      ->envname("COURIER_CONFIG");
  app.add_option("--set", options.overrides,
                 "Override a config key, e.g. --set services.ai-gm.timeout=90 (repeatable)")
      ->type_name("KEY=VALUE");
  options.flags.add(app, options::kLogLevel);
  options.flags.add(app, options::kLogFormat);
  options.flags.add(app, options::kAccessLog);
  options.flags.add(app, options::kAccessLogSkip);
  options.flags.add(app, options::kLogQuery);
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
