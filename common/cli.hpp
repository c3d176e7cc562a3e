// Command-line plumbing shared by every binary: --config, --set, logging flags, and a main()
// wrapper that turns start-up errors into one clear message and exit code 2.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/logging.hpp"

namespace courier {

struct CommonOptions {
  std::string config_path;             // --config / COURIER_CONFIG
  std::vector<std::string> overrides;  // --set KEY=VALUE
  LogOptions log;                      // --log-level / --log-format
  ConfigSources sources() const { return {config_path, overrides, process_env()}; }
};

void add_common_options(CLI::App& app, CommonOptions& options);

// A component option: the flag or its env var when given (CLI11 reads both), else the config
// file's `key`, else `fallback`.
std::string resolve(const std::string& flag_value, const ConfigFile& file, const std::string& key,
                    const std::string& fallback);

// Parses the command line and runs `body`; CLI11 errors, ConfigError and other start-up
// exceptions print "<program>: <message>" and return 2. --help prints usage and returns 0.
int run_main(CLI::App& app, int argc, char** argv, const std::function<int()>& body);

}  // namespace courier
