#include "common/cli.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/version.hpp"

namespace courier {
namespace {

std::string write_temp(const std::string& text) {
  static int n = 0;
  const auto path =
      std::filesystem::temp_directory_path() /
      ("courier-cli-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + ".yaml");
  std::ofstream(path) << text;
  return path.string();
}

// One binary's view: the flags it was given, the file, --set and an injected environment.
struct Binary {
  CLI::App app{"test", "courier-test"};
  OptionFlags flags;
  ConfigSources sources;

  Binary(std::vector<std::string> args, std::map<std::string, std::string> env,
         const std::string& file = "", std::vector<std::string> overrides = {}) {
    for (const auto* o : options::kAll) {
      if (!o->flag.empty() && o->key.starts_with("broker.")) flags.add(app, *o);
    }
    args.insert(args.begin(), "courier-test");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    app.parse(static_cast<int>(argv.size()), argv.data());
    sources.env = [env](const std::string& name) -> std::optional<std::string> {
      const auto it = env.find(name);
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    if (!file.empty()) sources.file_path = write_temp(file);
    sources.overrides = std::move(overrides);
  }
  std::string text(const ComponentOption& o) const { return flags.text(o, ConfigFile(sources)); }
};

std::string heartbeat_error(const Binary& b) {
  try {
    read_heartbeat(b.flags, options::broker::kHeartbeat, options::broker::kLiveness,
                   ConfigFile(b.sources));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(OptionFlags, FlagBeatsSetBeatsEnvBeatsFileBeatsDefault) {
  const auto& o = options::broker::kDrainTimeout;
  const std::string file = "broker:\n  drain_timeout: 1\n";
  const std::map<std::string, std::string> env = {{"COURIER_BROKER_DRAIN_TIMEOUT", "2"}};
  const std::vector<std::string> set = {"broker.drain_timeout=3"};
  EXPECT_EQ(Binary({"--drain-timeout", "4"}, env, file, set).text(o), "4");
  EXPECT_EQ(Binary({}, env, file, set).text(o), "3");
  EXPECT_EQ(Binary({}, env, file).text(o), "2");
  EXPECT_EQ(Binary({}, {}, file).text(o), "1");
  EXPECT_EQ(Binary({}, {}).text(o), "5");
  EXPECT_EQ(Binary({}, {}).text(o), o.default_text());
}

TEST(OptionFlags, BadValuesNameTheFlagAndTheKey) {
  Binary b({}, {{"COURIER_NO_WORKER_GRACE", "soon"}});
  try {
    b.flags.seconds(options::broker::kNoWorkerGrace, ConfigFile(b.sources));
    ADD_FAILURE() << "accepted 'soon'";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--no-worker-grace (broker.no_worker_grace)"),
              std::string::npos)
        << e.what();
  }
}

TEST(OptionFlags, OptionsWithoutAFlagAreNamedByKeyAndEnv) {
  EXPECT_EQ(options::gateway::kJwtSecretFile.setting(),
            "gateway.auth.jwt_secret_file (COURIER_AUTH_JWT_SECRET_FILE)");
}

TEST(Heartbeat, OneCheckForEveryBinary) {
  EXPECT_EQ(heartbeat_error(Binary({}, {})), "");
  EXPECT_NE(heartbeat_error(Binary({"--heartbeat", "0.005"}, {})).find("--heartbeat (broker."),
            std::string::npos);
  EXPECT_NE(heartbeat_error(Binary({}, {{"COURIER_HEARTBEAT", "x"}})).find("--heartbeat"),
            std::string::npos);
  EXPECT_NE(heartbeat_error(Binary({"--liveness", "0"}, {})).find("--liveness (broker.liveness)"),
            std::string::npos);
  EXPECT_NE(heartbeat_error(Binary({}, {}, "broker:\n  liveness: 101\n")).find("--liveness"),
            std::string::npos);
  Binary b({}, {{"COURIER_HEARTBEAT", "0.1"}, {"COURIER_LIVENESS", "7"}});
  const auto hb = read_heartbeat(b.flags, options::broker::kHeartbeat, options::broker::kLiveness,
                                 ConfigFile(b.sources));
  EXPECT_EQ(hb.interval, std::chrono::milliseconds(100));
  EXPECT_EQ(hb.liveness, 7);
}

TEST(ComponentOptions, EveryDefaultParsesAsItsStructUsesIt) {
  for (const auto* o : options::kAll) {
    if (o->fallback.empty()) continue;
    if (o->max > 0) {
      EXPECT_NO_THROW(o->default_integer()) << o->key;
    }
  }
  EXPECT_EQ(options::gateway::kHeartbeat.default_seconds(), std::chrono::milliseconds(250));
  EXPECT_EQ(options::worker::kDrainTimeout.default_seconds(), std::chrono::seconds(30));
  EXPECT_EQ(host_of(options::gateway::kListen.fallback), "0.0.0.0");
  EXPECT_EQ(port_of(options::gateway::kListen.fallback), 8080);
  EXPECT_EQ(host_of("[::1]:80"), "::1");
  EXPECT_TRUE(options::gateway::kAuthRequireExp.default_bool());
}

TEST(CommonOptions, TheLoggingSectionIsRead) {
  CLI::App app{"test", "courier-test"};
  CommonOptions common;
  add_common_options(app, common);
  const char* argv[] = {"courier-test", "--log-format", "json"};
  app.parse(3, const_cast<char**>(argv));
  ConfigSources s;
  s.env = [](const std::string&) { return std::nullopt; };
  s.file_path = write_temp("logging:\n  level: debug\n  format: text\n");
  const auto log = common.log(ConfigFile(s));
  EXPECT_EQ(log.level, "debug");
  EXPECT_EQ(log.format, "json");
}

TEST(OptionFlags, SourcedSaysWhereEachValueCameFrom) {
  const auto& o = options::broker::kDrainTimeout;
  const std::string file = "broker:\n  drain_timeout: 1\n";
  const std::map<std::string, std::string> env = {{"COURIER_BROKER_DRAIN_TIMEOUT", "2"}};
  const std::vector<std::string> set = {"broker.drain_timeout=3"};
  const auto sourced = [&](const Binary& b) { return b.flags.sourced(o, ConfigFile(b.sources)); };
  const Binary flag({"--drain-timeout", "4"}, env, file, set);
  EXPECT_EQ(sourced(flag).value, "4");
  EXPECT_EQ(sourced(flag).describe(), "flag --drain-timeout");
  EXPECT_EQ(sourced(Binary({}, env, file, set)).describe(), "--set");
  EXPECT_EQ(sourced(Binary({}, env, file)).describe(), "env COURIER_BROKER_DRAIN_TIMEOUT");
  const Binary in_file({}, {}, file);
  EXPECT_EQ(sourced(in_file).value, "1");
  EXPECT_EQ(sourced(in_file).describe(), "file " + in_file.sources.file_path);
  EXPECT_EQ(sourced(Binary({}, {})).value, "5");
  EXPECT_EQ(sourced(Binary({}, {})).describe(), "default");
}

TEST(OptionFlags, AFlagGivenElsewhereCountsAsAFlag) {
  Binary b({}, {{"COURIER_BROKER_INSECURE", "false"}});
  b.flags.given(options::broker::kInsecure, "true");
  const auto v = b.flags.sourced(options::broker::kInsecure, ConfigFile(b.sources));
  EXPECT_EQ(v.value, "true");
  EXPECT_EQ(v.describe(), "flag --insecure");
}

// The gateway's rows, printed, for a given environment and file.
std::string printed_gateway_config(std::map<std::string, std::string> env,
                                   const std::string& file = "") {
  Binary b({}, std::move(env), file);
  std::ostringstream out;
  print_config(out, option_rows(b.flags, ConfigFile(b.sources), "gateway."));
  return out.str();
}

std::string row_of(const std::string& printed, const std::string& key) {
  std::istringstream in(printed);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + " ", 0) == 0) return line;
  }
  return "";
}

TEST(PrintConfig, SecretsAreRedactedFromEverySource) {
  const std::string secret = "a-jwt-secret-of-at-least-32-bytes-long";
  const auto from_env = printed_gateway_config(
      {{"COURIER_AUTH_JWT_SECRET", secret}, {"COURIER_AUTH_API_KEYS", "ops:" + secret}});
  EXPECT_EQ(from_env.find(secret), std::string::npos) << from_env;
  EXPECT_NE(row_of(from_env, "gateway.auth.jwt_secret").find("<redacted>"), std::string::npos);
  EXPECT_NE(row_of(from_env, "gateway.auth.api_keys").find("<redacted>"), std::string::npos);
  EXPECT_NE(row_of(from_env, "gateway.auth.jwt_secret").find("env COURIER_AUTH_JWT_SECRET"),
            std::string::npos);

  const auto from_file =
      printed_gateway_config({}, "gateway:\n  auth:\n    jwt_secret: " + secret + "\n");
  EXPECT_EQ(from_file.find(secret), std::string::npos) << from_file;
  EXPECT_NE(row_of(from_file, "gateway.auth.jwt_secret").find("<redacted>"), std::string::npos);
}

TEST(PrintConfig, AnUnsetSecretShowsEmptyAndOtherValuesShowAsTheyAre) {
  const auto printed = printed_gateway_config({{"COURIER_GATEWAY_THREADS", "3"}});
  EXPECT_EQ(row_of(printed, "gateway.auth.jwt_secret").find("<redacted>"), std::string::npos);
  EXPECT_NE(row_of(printed, "gateway.auth.jwt_secret").find("\"\""), std::string::npos);
  EXPECT_NE(row_of(printed, "gateway.threads").find(" 3 "), std::string::npos);
  EXPECT_EQ(row_of(printed, "broker.frontend"), "") << "another binary's options";
  EXPECT_NE(row_of(printed, "logging.level"), "");
}

TEST(PrintConfig, ColumnsAreAligned) {
  std::ostringstream out;
  print_config(out, {{"a", "1", "default"}, {"longer.key", "\"quoted value\"", "--set"}});
  EXPECT_EQ(out.str(),
            "KEY         VALUE           SOURCE\n"
            "a           1               default\n"
            "longer.key  \"quoted value\"  --set\n");
}

TEST(ComponentOptions, TypeNamesForHelp) {
  EXPECT_EQ(options::gateway::kThreads.type_name(), "INT in [0, 256]");
  EXPECT_EQ(options::gateway::kIdleTimeout.type_name(), "SECONDS");
  EXPECT_EQ(options::gateway::kListen.type_name(), "HOST:PORT");
  EXPECT_EQ(options::gateway::kAdminListen.type_name(), "HOST:PORT");
  EXPECT_EQ(options::gateway::kBroker.type_name(), "ENDPOINTS");
  EXPECT_EQ(options::gateway::kAuthRequireExp.type_name(), "BOOL");
  EXPECT_EQ(options::gateway::kAuthIssuer.type_name(), "TEXT");
}

// A new option in the table gets the kind its default and range say it has.
TEST(ComponentOptions, EveryKindAgreesWithTheDefaultAndRange) {
  for (const auto* o : options::kAll) {
    const bool ranged = o->min < o->max;
    EXPECT_EQ(ranged, o->kind == ValueKind::kInteger) << o->key << ": a range needs integer()";
    if (o->fallback == "true" || o->fallback == "false") {
      EXPECT_EQ(o->kind, ValueKind::kBoolean) << o->key << ": wrap it in boolean()";
    }
    if (o->fallback.empty()) continue;
    switch (o->kind) {
      case ValueKind::kSeconds:
        EXPECT_NO_THROW(o->default_seconds()) << o->key;
        break;
      case ValueKind::kBoolean:
        EXPECT_NO_THROW(o->default_bool()) << o->key;
        break;
      case ValueKind::kEndpoints:
        EXPECT_NO_THROW(parse_endpoints(o->setting(), o->default_text())) << o->key;
        break;
      case ValueKind::kHostPort:
        EXPECT_NO_THROW(port_of(o->fallback)) << o->key;
        break;
      default:
        break;
    }
  }
  EXPECT_TRUE(options::gateway::kJwtSecret.secret);
  EXPECT_TRUE(options::gateway::kApiKeys.secret);
  EXPECT_FALSE(options::gateway::kJwtSecretFile.secret) << "a path, not a secret";
}

TEST(OptionFlags, HelpShowsTypeDefaultAndEnv) {
  CLI::App app{"test", "courier-test"};
  CommonOptions common;
  add_common_options(app, common);
  common.flags.add(app, options::gateway::kThreads);
  common.flags.add(app, options::gateway::kIdleTimeout);
  const auto help = app.help();
  EXPECT_NE(help.find("INT in [0, 256]"), std::string::npos) << help;
  EXPECT_NE(help.find("SECONDS"), std::string::npos) << help;
  EXPECT_NE(help.find("[60] (env COURIER_IDLE_TIMEOUT)"), std::string::npos) << help;
  EXPECT_NE(help.find("--version"), std::string::npos) << help;
  EXPECT_NE(help.find("--check-config"), std::string::npos) << help;
  EXPECT_NE(help.find("--print-config"), std::string::npos) << help;
}

TEST(CommonOptions, VersionLineNamesTheProgramVersionAndRevision) {
  const auto line = version_line("courier-test");
  EXPECT_EQ(line, "courier-test " + std::string(version()) + " (" + std::string(revision()) + ")");
  EXPECT_FALSE(version().empty());
  EXPECT_FALSE(revision().empty());
}

}  // namespace
}  // namespace courier
