#include "common/cli.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

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

}  // namespace
}  // namespace courier
