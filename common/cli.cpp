#include "common/cli.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>

#include "common/version.hpp"

namespace courier {

CLI::Option* OptionFlags::add(CLI::App& app, const ComponentOption& option,
                              const std::string& names) {
  std::string help(option.help);
  if (!option.fallback.empty()) help += " [" + option.default_text() + "]";
  if (!option.env.empty()) help += " (env " + std::string(option.env) + ")";
  return app
      .add_option(names.empty() ? std::string(option.flag) : names, flags_[std::string(option.key)],
                  help)
      ->type_name(option.type_name());
}

void OptionFlags::given(const ComponentOption& option, std::string value) {
  flags_[std::string(option.key)] = std::move(value);
}

SourcedValue OptionFlags::sourced(const ComponentOption& option, const ConfigFile& file) const {
  if (auto it = flags_.find(option.key); it != flags_.end() && !it->second.empty()) {
    return {it->second, ConfigSource::kFlag, std::string(option.flag)};
  }
  if (auto v = file.lookup(std::string(option.key), std::string(option.env))) return *v;
  return {option.default_text(), ConfigSource::kDefault, ""};
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
  app.set_version_flag("--version", version_line(app.get_name()),
                       "Print the version and source revision, and exit");
  app.add_flag("--check-config", options.check_config,
               "Load and check the whole configuration (file, env, --set, services, key files), "
               "print '<program>: configuration ok' and exit 0, or the error and exit 2; binds "
               "nothing");
  app.add_flag("--print-config", options.print_config,
               "Print every effective setting with its source (default, file, env, --set, flag), "
               "secrets redacted, and exit");
}

std::string version_line(std::string_view program) {
  std::string out(program);
  out.append(" ").append(version()).append(" (").append(revision()).append(")");
  return out;
}

std::vector<ConfigRow> option_rows(const OptionFlags& flags, const ConfigFile& file,
                                   std::string_view section) {
  std::vector<ConfigRow> rows;
  for (const auto* o : options::kAll) {
    if (!o->key.starts_with("logging.") && !o->key.starts_with(section)) continue;
    auto v = flags.sourced(*o, file);
    if (o->secret && !v.value.empty()) v.value = "<redacted>";
    rows.push_back({std::string(o->key), std::move(v.value), v.describe()});
  }
  return rows;
}

std::vector<ConfigRow> service_rows(const std::vector<TracedSetting>& trace) {
  std::vector<ConfigRow> rows;
  for (const auto& t : trace) rows.push_back({t.key, t.value.value, t.value.describe()});
  return rows;
}

void print_config(std::ostream& out, const std::vector<ConfigRow>& rows) {
  const auto shown = [](const std::string& v) { return v.empty() ? std::string("\"\"") : v; };
  std::size_t key_width = 3, value_width = 5;
  for (const auto& r : rows) {
    key_width = std::max(key_width, r.key.size());
    value_width = std::max(value_width, shown(r.value).size());
  }
  const auto line = [&](const std::string& key, const std::string& value,
                        const std::string& source) {
    out << key << std::string(key_width - key.size() + 2, ' ') << value
        << std::string(value_width - value.size() + 2, ' ') << source << "\n";
  };
  line("KEY", "VALUE", "SOURCE");
  for (const auto& r : rows) line(r.key, shown(r.value), r.source);
}

bool config_only(const CLI::App& app, const CommonOptions& options,
                 const std::function<std::vector<ConfigRow>()>& rows) {
  if (options.print_config) print_config(std::cout, rows());
  if (options.check_config) std::cout << app.get_name() << ": configuration ok\n";
  return options.print_config || options.check_config;
}

int run_main(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    std::cout << e.what() << "\n";
    return 0;
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
