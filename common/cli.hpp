// Command-line plumbing shared by every binary: --config, --set, the component options of
// common/options.hpp, and a main() wrapper that turns start-up errors into exit code 2.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/logging.hpp"
#include "common/options.hpp"

namespace courier {

// A binary's component options: its flag, else --set, else its env var, else the config file,
// else the table's default (the same order as for the service settings).
class OptionFlags {
 public:
  // Registers the option's flag (`names` replaces it, e.g. "-s,--service"), with its default and
  // env var in the help. The env var is not given to CLI11: it would then beat --set.
  CLI::Option* add(CLI::App& app, const ComponentOption& option, const std::string& names = "");

  std::string text(const ComponentOption& option, const ConfigFile& file) const;
  std::chrono::milliseconds seconds(const ComponentOption& option, const ConfigFile& file) const;
  long long integer(const ComponentOption& option, const ConfigFile& file) const;
  bool boolean(const ComponentOption& option, const ConfigFile& file) const;
  std::vector<std::string> endpoints(const ComponentOption& option, const ConfigFile& file) const;

 private:
  std::map<std::string, std::string, std::less<>> flags_;  // by key; nodes stay put for CLI11
};

struct Heartbeat {
  std::chrono::milliseconds interval;
  int liveness;
};
// The heartbeat interval and liveness every binary needs, checked alike: an interval below 10 ms
// would flood the peers, and liveness outside [1, 100] is never what was meant.
Heartbeat read_heartbeat(const OptionFlags& flags, const ComponentOption& interval,
                         const ComponentOption& liveness, const ConfigFile& file);

// The default id of a broker or worker; `fallback` when the host name cannot be read.
std::string host_name(const std::string& fallback);

struct CommonOptions {
  std::string config_path;             // --config / COURIER_CONFIG
  std::vector<std::string> overrides;  // --set KEY=VALUE
  OptionFlags flags;  // --log-level, --log-format, --access-log... and the binary's own
  ConfigSources sources() const { return {config_path, overrides, process_env()}; }
  LogOptions log(const ConfigFile& file) const;
};

void add_common_options(CLI::App& app, CommonOptions& options);

// Parses the command line and runs `body`; CLI11 errors, ConfigError and other start-up
// exceptions print "<program>: <message>" and return 2. --help prints usage and returns 0.
int run_main(CLI::App& app, int argc, char** argv, const std::function<int()>& body);

}  // namespace courier
