// Command-line plumbing shared by every binary: --config, --set, the component options of
// common/options.hpp, and a main() wrapper that turns start-up errors into exit code 2.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.hpp"
#include "common/logging.hpp"
#include "common/options.hpp"

namespace courier {

// A binary's component options: its flag, else --set, else its env var, else the config file,
// else the table's default (the same order as for the service settings).
class OptionFlags {
 public:
  // Registers the option's flag (`names` replaces it, e.g. "-s,--service"), with its type, default
  // and env var in the help. The env var is not given to CLI11: it would then beat --set.
  CLI::Option* add(CLI::App& app, const ComponentOption& option, const std::string& names = "");
  // The option was given by a flag registered elsewhere (a plain on/off flag such as --insecure).
  void given(const ComponentOption& option, std::string value);

  // The value and where it came from: flag, --set, env, file or default.
  SourcedValue sourced(const ComponentOption& option, const ConfigFile& file) const;

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
  OptionFlags flags;          // --log-level, --log-format, --access-log... and the binary's own
  bool check_config = false;  // --check-config: validate everything, start nothing
  bool print_config = false;  // --print-config: the effective values and their sources
  ConfigSources sources() const { return {config_path, overrides, process_env()}; }
  LogOptions log(const ConfigFile& file) const;
};

// --config, --set, --log-level, --log-format, --version, --check-config and --print-config.
void add_common_options(CLI::App& app, CommonOptions& options);

// "courier-gateway 0.1.0 (v0.1.0-12-gabcdef)": what --version prints.
std::string version_line(std::string_view program);

// One line of --print-config.
struct ConfigRow {
  std::string key;
  std::string value;  // "<redacted>" for a secret that is set
  std::string source;
};
// The logging.* options and those under `section` ("gateway."), in the table's order. A secret's
// value is never copied: it shows as "<redacted>" when set.
std::vector<ConfigRow> option_rows(const OptionFlags& flags, const ConfigFile& file,
                                   std::string_view section);
std::vector<ConfigRow> service_rows(const std::vector<TracedSetting>& trace);
// An aligned table, a header line then one row per setting: KEY VALUE SOURCE ("" for empty).
void print_config(std::ostream& out, const std::vector<ConfigRow>& rows);
// What a main does once its configuration is loaded and checked, before it binds or connects
// anything: with --print-config, print `rows()`; with --check-config, print "<program>:
// configuration ok". Returns true when either was asked for (the main then exits 0).
bool config_only(const CLI::App& app, const CommonOptions& options,
                 const std::function<std::vector<ConfigRow>()>& rows);

// Parses the command line and runs `body`; CLI11 errors, ConfigError and other start-up
// exceptions print "<program>: <message>" and return 2. --help prints usage and returns 0.
int run_main(CLI::App& app, int argc, char** argv, const std::function<int()>& body);

}  // namespace courier
