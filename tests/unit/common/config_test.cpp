#include "common/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/options.hpp"

namespace courier {
namespace {

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string write_temp(const std::string& text) {
  static int n = 0;
  const auto path =
      std::filesystem::temp_directory_path() /
      ("courier-config-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + ".yaml");
  std::ofstream(path) << text;
  return path.string();
}

Settings load(std::map<std::string, std::string> env, std::string file = "",
              std::vector<std::string> overrides = {}) {
  ConfigSources s;
  s.env = env_of(std::move(env));
  if (!file.empty()) s.file_path = write_temp(file);
  s.overrides = std::move(overrides);
  return load_settings(s);
}

std::string error_of(std::map<std::string, std::string> env, std::string file = "",
                     std::vector<std::string> overrides = {}) {
  try {
    load(std::move(env), std::move(file), std::move(overrides));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DefaultsMatchTheStateManager) {
  const auto s = load({});
  const auto* re = s.find("rule-engine");
  ASSERT_TRUE(re);
  EXPECT_EQ(re->upstream.host, "localhost");
  EXPECT_EQ(re->upstream.port, 8031);
  EXPECT_EQ(re->timeout, std::chrono::seconds(10));
  EXPECT_EQ(re->max_attempts, 3);
  EXPECT_EQ(re->retry_min_wait, std::chrono::seconds(1));
  EXPECT_EQ(re->retry_max_wait, std::chrono::seconds(10));
  EXPECT_EQ(s.find("ai-gm")->upstream.port, 8032);
}

TEST(Config, StateManagerEnvironmentNamesApply) {
  const auto s = load({{"RULE_ENGINE_URL", "http://rules:9000/api/"},
                       {"PROXY_TIMEOUT", "2.5"},
                       {"PROXY_MAX_RETRIES", "5"},
                       {"PROXY_RETRY_MIN_WAIT", "0.1"},
                       {"PROXY_RETRY_MAX_WAIT", "0.2"}});
  const auto* re = s.find("rule-engine");
  EXPECT_EQ(re->upstream.host, "rules");
  EXPECT_EQ(re->upstream.port, 9000);
  EXPECT_EQ(re->upstream.base_path, "/api");
  EXPECT_EQ(re->timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(re->max_attempts, 5);
  EXPECT_EQ(re->retry_min_wait, std::chrono::milliseconds(100));
  EXPECT_EQ(s.find("ai-gm")->timeout, std::chrono::milliseconds(2500));
}

TEST(Config, PerServiceValuesBeatDefaultsAndFlagsBeatEnvBeatFile) {
  const std::string file = R"(
defaults:
  timeout: 7
services:
  ai-gm:
    timeout: 90
  inventory:
    upstream: http://inventory:8000
    max_retries: 2
)";
  auto s = load({{"PROXY_TIMEOUT", "3"}}, file);
  EXPECT_EQ(s.find("ai-gm")->timeout, std::chrono::seconds(90));       // file, per service
  EXPECT_EQ(s.find("rule-engine")->timeout, std::chrono::seconds(3));  // env default over file
  ASSERT_TRUE(s.find("inventory"));
  EXPECT_EQ(s.find("inventory")->max_attempts, 2);
  s = load({{"AI_GM_TIMEOUT", "120"}}, file, {"services.ai-gm.timeout=150"});
  EXPECT_EQ(s.find("ai-gm")->timeout, std::chrono::seconds(150));
  s = load({{"AI_GM_TIMEOUT", "120"}}, file);
  EXPECT_EQ(s.find("ai-gm")->timeout, std::chrono::seconds(120));
}

TEST(Config, BadValuesNameTheSetting) {
  EXPECT_NE(error_of({{"PROXY_TIMEOUT", "ten"}}).find("PROXY_TIMEOUT"), std::string::npos);
  EXPECT_NE(error_of({{"PROXY_TIMEOUT", "0"}}).find("PROXY_TIMEOUT"), std::string::npos);
  EXPECT_NE(error_of({{"PROXY_MAX_RETRIES", "0"}}).find("PROXY_MAX_RETRIES"), std::string::npos);
  EXPECT_NE(error_of({{"PROXY_MAX_RETRIES", "3x"}}).find("PROXY_MAX_RETRIES"), std::string::npos);
  EXPECT_NE(error_of({{"AI_GM_URL", "https://x"}}).find("AI_GM_URL"), std::string::npos);
  EXPECT_NE(error_of({{"AI_GM_URL", "http://x:99999"}}).find("AI_GM_URL"), std::string::npos);
  EXPECT_NE(error_of({{"PROXY_RETRY_MIN_WAIT", "5"}, {"PROXY_RETRY_MAX_WAIT", "1"}})
                .find("retry_max_wait"),
            std::string::npos);
  EXPECT_NE(error_of({}, "services:\n  inventory:\n    timeout: 3\n").find("inventory"),
            std::string::npos);
  EXPECT_NE(error_of({}, "defaults:\n  timout: 3\n").find("defaults.timout"), std::string::npos);
  EXPECT_NE(error_of({}, "services: [1, 2\n").find("config file"), std::string::npos);
  EXPECT_NE(error_of({}, "", {"nonsense"}).find("--set"), std::string::npos);
  EXPECT_NE(error_of({{"COURIER_SERVICES", "Bad_Name"}}).find("Bad_Name"), std::string::npos);
}

TEST(Config, CircuitBreakerDefaultsCountOnlyTransportFailures) {
  const auto settings = load({});
  const auto* re = settings.find("rule-engine");
  ASSERT_TRUE(re);
  EXPECT_EQ(re->circuit_failures, 5);
  EXPECT_EQ(re->circuit_min_requests, 10);
  EXPECT_DOUBLE_EQ(re->circuit_failure_rate, 0.5);
  EXPECT_EQ(re->circuit_window, std::chrono::seconds(10));
  EXPECT_EQ(re->circuit_cooldown, std::chrono::seconds(5));
  EXPECT_EQ(re->circuit_probes, 3);
  EXPECT_TRUE(re->circuit_failure_statuses.empty());
}

TEST(Config, CircuitBreakerSettingsPerServiceAndDefault) {
  const std::string file = R"(
defaults:
  circuit_window: 30
services:
  ai-gm:
    circuit_failure_statuses: [502, 504]
    circuit_probes: 1
)";
  const auto s = load({{"RULE_ENGINE_CIRCUIT_FAILURE_RATE", "0.8"},
                       {"COURIER_CIRCUIT_MIN_REQUESTS", "50"},
                       {"RULE_ENGINE_CIRCUIT_FAILURES", "0"},
                       {"RULE_ENGINE_CIRCUIT_FAILURE_STATUSES", "503,500,503"}},
                      file);
  const auto* re = s.find("rule-engine");
  EXPECT_DOUBLE_EQ(re->circuit_failure_rate, 0.8);
  EXPECT_EQ(re->circuit_min_requests, 50);
  EXPECT_EQ(re->circuit_failures, 0) << "0 turns the breaker off";
  EXPECT_EQ(re->circuit_window, std::chrono::seconds(30));
  EXPECT_EQ(re->circuit_failure_statuses, (std::vector<unsigned>{503, 500}));
  const auto* gm = s.find("ai-gm");
  EXPECT_EQ(gm->circuit_failure_statuses, (std::vector<unsigned>{502, 504}));
  EXPECT_EQ(gm->circuit_probes, 1);
  EXPECT_EQ(gm->circuit_min_requests, 50);
  EXPECT_TRUE(load({}, "defaults:\n  circuit_failure_statuses: none\n")
                  .find("ai-gm")
                  ->circuit_failure_statuses.empty());
}

TEST(Config, BadCircuitBreakerValuesNameTheSetting) {
  for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"COURIER_CIRCUIT_FAILURES", "-1"},
           {"RULE_ENGINE_CIRCUIT_FAILURES", "-3"},
           {"COURIER_CIRCUIT_MIN_REQUESTS", "0"},
           {"COURIER_CIRCUIT_FAILURE_RATE", "0"},
           {"COURIER_CIRCUIT_FAILURE_RATE", "1.5"},
           {"COURIER_CIRCUIT_FAILURE_RATE", "-0.2"},
           {"COURIER_CIRCUIT_WINDOW", "0"},
           {"COURIER_CIRCUIT_COOLDOWN", "-1"},
           {"COURIER_CIRCUIT_PROBES", "0"},
           {"COURIER_CIRCUIT_FAILURE_STATUSES", "404"},
           {"COURIER_CIRCUIT_FAILURE_STATUSES", "5xx"},
           {"COURIER_CIRCUIT_FAILURE_STATUSES", "502,"}}) {
    EXPECT_NE(error_of({{name, value}}).find(name), std::string::npos) << name << "=" << value;
  }
}

TEST(Config, AuthSecretComesFromTheNamedEnvVarAndIsRequired) {
  auto s = load({{"RULE_ENGINE_AUTH_MODE", "bearer"},
                 {"RULE_ENGINE_AUTH_SECRET_ENV", "RE_TOKEN"},
                 {"RE_TOKEN", "s3cret"}});
  EXPECT_EQ(s.find("rule-engine")->auth_mode, AuthMode::kBearer);
  EXPECT_EQ(s.find("rule-engine")->auth_secret, "s3cret");
  const auto err =
      error_of({{"RULE_ENGINE_AUTH_MODE", "bearer"}, {"RULE_ENGINE_AUTH_SECRET_ENV", "MISSING"}});
  EXPECT_NE(err.find("MISSING"), std::string::npos);
  EXPECT_EQ(err.find("s3cret"), std::string::npos);
}

TEST(Config, ComponentKeysLayerFlagsOverEnvOverFile) {
  ConfigSources s;
  s.file_path = write_temp("gateway:\n  listen: 1.2.3.4:1\n");
  s.env = env_of({{"COURIER_GATEWAY_LISTEN", "5.6.7.8:2"}});
  EXPECT_EQ(ConfigFile(s).get("gateway.listen", "COURIER_GATEWAY_LISTEN"), "5.6.7.8:2");
  EXPECT_EQ(ConfigFile(s).get("gateway.listen", ""), "1.2.3.4:1");
  s.overrides = {"gateway.listen=9.9.9.9:3"};
  EXPECT_EQ(ConfigFile(s).get("gateway.listen", "COURIER_GATEWAY_LISTEN"), "9.9.9.9:3");
}

TEST(Config, AYamlListReadsAsCommaSeparatedText) {
  ConfigSources s;
  s.file_path = write_temp("gateway:\n  broker: [tcp://10.0.0.1:5555, tcp://10.0.0.2:5555]\n");
  EXPECT_EQ(ConfigFile(s).get("gateway.broker", ""), "tcp://10.0.0.1:5555,tcp://10.0.0.2:5555");
  s.file_path = write_temp("gateway:\n  broker:\n    - {a: 1}\n");
  EXPECT_THROW(ConfigFile{s}, ConfigError);
}

TEST(Config, EndpointListsAreCheckedAndNameTheSetting) {
  EXPECT_EQ(parse_endpoints("--broker", "tcp://127.0.0.1:5555"),
            std::vector<std::string>{"tcp://127.0.0.1:5555"});
  EXPECT_EQ(parse_endpoints("--broker", " tcp://a:1 , ipc:///run/b "),
            (std::vector<std::string>{"tcp://a:1", "ipc:///run/b"}));
  for (const char* bad : {"", "a:1", "tcp://a:1,", "tcp://", "http://a:1", "tcp://a:1,tcp://a:1",
                          "tcp://host", "tcp://:1", "tcp://a:0", "tcp://a:65536", "tcp://a:x",
                          "ipc://", "tcp://*:5555", "tcp://a:1,tcp://*:2"}) {
    try {
      parse_endpoints("--broker (gateway.broker)", bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("gateway.broker"), std::string::npos) << e.what();
    }
  }
}

TEST(Config, AnIpcPathMustFitASocketAddress) {
  EXPECT_NO_THROW(parse_endpoints("--broker", "ipc:///" + std::string(106, 'p')));
  EXPECT_THROW(parse_endpoints("--broker", "ipc:///" + std::string(107, 'p')), ConfigError);
}

// Two valid values per table field, both unlike its default, for the layer tests below.
const std::map<std::string, std::pair<std::string, std::string>> kSamples = {
    {"upstream", {"http://a:1", "http://b:2"}},
    {"timeout", {"7", "8"}},
    {"max_retries", {"2", "4"}},
    {"retry_min_wait", {"0.5", "0.25"}},
    {"retry_max_wait", {"20", "30"}},
    {"max_queue", {"5", "6"}},
    {"concurrency", {"7", "8"}},
    {"max_connections", {"9", "10"}},
    {"circuit_failures", {"2", "0"}},
    {"circuit_min_requests", {"4", "5"}},
    {"circuit_failure_rate", {"0.25", "0.75"}},
    {"circuit_window", {"2", "3"}},
    {"circuit_cooldown", {"1", "2"}},
    {"circuit_probes", {"2", "4"}},
    {"circuit_failure_statuses", {"502", "503,504"}},
    {"retry_budget_ratio", {"0.5", "0.1"}},
    {"retry_budget_min", {"1", "2"}},
    {"stream_idle_timeout", {"5", "0.5"}},
    {"stream_max_duration", {"30", "3600"}},
    {"sse_keepalive", {"15", "0.5"}},
    {"stream_window", {"65536", "1048576"}},
    {"stream_threshold", {"0", "4096"}},
    {"auth.mode", {"bearer", "api-key"}},
    {"auth.header", {"X-Key", "X-Other"}},
};
// Lets every auth mode start; in forward mode the secret is never read.
const std::map<std::string, std::string> kSecretEnv = {
    {"RULE_ENGINE_AUTH_SECRET_ENV", "TOKEN"}, {"AI_GM_AUTH_SECRET_ENV", "TOKEN"}, {"TOKEN", "t"}};

std::map<std::string, std::string> with_secret(std::map<std::string, std::string> env) {
  env.insert(kSecretEnv.begin(), kSecretEnv.end());
  return env;
}

// What `value` for the table field `key` gives, set as a per-service env var.
ServiceConfig expected(const std::string& key, const std::string& value) {
  const auto env_name = "RULE_ENGINE_" + std::string(find_service_field(key)->env_suffix);
  return *load(with_secret({{env_name, value}})).find("rule-engine");
}

TEST(ServiceTable, EveryServiceStartsFromTheTableDefaults) {
  const auto s = load({});
  for (const auto& [name, svc] : s.services) {
    ServiceConfig built;  // the struct's own initialisers
    built.name = svc.name;
    built.upstream = svc.upstream;
    EXPECT_EQ(svc, built) << name << ": ServiceConfig's initialisers and the table disagree";
  }
}

TEST(ServiceTable, HasSamplesForEveryParsedField) {
  for (const auto& f : service_fields()) {
    if (f.apply) {
      EXPECT_TRUE(kSamples.count(std::string(f.key))) << f.key;
    }
  }
}

TEST(ServiceTable, EveryFieldReadsFromEveryLayer) {
  const auto base = *load(with_secret({})).find("rule-engine");
  for (const auto& f : service_fields()) {
    if (!f.apply) continue;
    const std::string key(f.key);
    const auto& [a, b] = kSamples.at(key);
    const auto want = expected(key, a);
    ASSERT_NE(want, base) << key << "=" << a << " is the default";
    const auto env_name = "RULE_ENGINE_" + std::string(f.env_suffix);
    const auto file = "services:\n  rule-engine:\n    " + key + ": '" + a + "'\n";
    EXPECT_EQ(*load(with_secret({}), file).find("rule-engine"), want) << key << " from the file";
    EXPECT_EQ(
        *load(with_secret({}), "", {"services.rule-engine." + key + "=" + a}).find("rule-engine"),
        want)
        << key << " from --set";
    // Higher layers win: --set over env over file.
    EXPECT_EQ(*load(with_secret({{env_name, a}}),
                    "services:\n  rule-engine:\n    " + key + ": '" + b + "'\n")
                   .find("rule-engine"),
              want)
        << key << ": env over file";
    EXPECT_EQ(*load(with_secret({{env_name, b}}), "", {"services.rule-engine." + key + "=" + a})
                   .find("rule-engine"),
              want)
        << key << ": --set over env";
    if (f.default_env.empty()) continue;
    const std::string default_env(f.default_env);
    EXPECT_EQ(*load(with_secret({{default_env, a}})).find("rule-engine"), want)
        << key << " from " << default_env;
    EXPECT_EQ(*load(with_secret({}), "defaults:\n  " + key + ": '" + a + "'\n").find("rule-engine"),
              want)
        << key << " from defaults. in the file";
    EXPECT_EQ(*load(with_secret({}), "", {"defaults." + key + "=" + a}).find("rule-engine"), want)
        << key << " from --set defaults.";
    // A per-service value in the lowest layer beats a default in the highest.
    const auto s = load(with_secret({{default_env, b}}),
                        "services:\n  rule-engine:\n    " + key + ": '" + a + "'\n",
                        {"defaults." + key + "=" + b});
    EXPECT_EQ(*s.find("rule-engine"), want) << key << ": per-service file over --set default";
    EXPECT_NE(*s.find("ai-gm"), *load(with_secret({})).find("ai-gm"))
        << key << ": the default still reaches the other services";
  }
}

TEST(ServiceTable, EachBadValueNamesItsSetting) {
  const std::map<std::string, std::string> bad = {{"upstream", "ftp://x"},
                                                  {"auth.mode", "basic"},
                                                  {"auth.header", "a b"},
                                                  {"circuit_failure_statuses", "404"}};
  for (const auto& f : service_fields()) {
    if (!f.apply) continue;
    const std::string key(f.key);
    const auto value = bad.count(key) ? bad.at(key) : std::string("x");
    const auto env_name = "AI_GM_" + std::string(f.env_suffix);
    EXPECT_NE(error_of(with_secret({{env_name, value}})).find(env_name), std::string::npos) << key;
    const auto own = "services.ai-gm." + key;
    EXPECT_NE(error_of({}, "services:\n  ai-gm:\n    " + key + ": '" + value + "'\n").find(own),
              std::string::npos)
        << key;
    EXPECT_NE(error_of({}, "", {own + "=" + value}).find("--set " + own), std::string::npos) << key;
    if (f.default_env.empty()) continue;
    const std::string default_env(f.default_env);
    EXPECT_NE(error_of({{default_env, value}}).find(default_env), std::string::npos) << key;
  }
}

TEST(ServiceTable, UnknownServiceFieldsAreRejectedEverywhere) {
  EXPECT_NE(error_of({}, "services:\n  ai-gm:\n    timout: 3\n").find("services.ai-gm.timout"),
            std::string::npos);
  EXPECT_NE(error_of({}, "", {"services.ai-gm.timout=3"}).find("services.ai-gm.timout"),
            std::string::npos);
  // Upstreams and auth are per service only.
  EXPECT_NE(error_of({}, "defaults:\n  upstream: http://x\n").find("defaults.upstream"),
            std::string::npos);
  EXPECT_NE(error_of({}, "", {"defaults.auth.mode=bearer"}).find("defaults.auth.mode"),
            std::string::npos);
}

TEST(ComponentKeys, UnknownKeysInTheFileStopStartUp) {
  for (const char* file : {"gateway:\n  thraeds: 2\n", "gateway:\n  max_bodyy: 10\n",
                           "worker:\n  concurency: 4\n", "broker:\n  frontnd: tcp://*:1\n",
                           "logging:\n  levle: debug\n", "gateway:\n  auth:\n    jwt: x\n"}) {
    const auto err = error_of({}, file);
    EXPECT_NE(err.find("unknown setting"), std::string::npos) << file << " -> " << err;
    ConfigSources s;
    s.file_path = write_temp(file);
    EXPECT_THROW(ConfigFile{s}, ConfigError) << file;
  }
  EXPECT_NE(error_of({}, "gateway:\n  thraeds: 2\n").find("gateway.thraeds"), std::string::npos);
  EXPECT_NE(error_of({}, "worker:\n  concurency: 4\n").find("worker.concurency"),
            std::string::npos);
}

TEST(ComponentKeys, UnknownSetKeysStopStartUp) {
  const auto err = error_of({}, "", {"gateway.thraeds=2"});
  EXPECT_NE(err.find("--set"), std::string::npos) << err;
  EXPECT_NE(err.find("gateway.thraeds"), std::string::npos) << err;
  EXPECT_NE(error_of({}, "", {"worker.concurrency=4"}).find("worker.concurrency"),
            std::string::npos)
      << "the worker's concurrency is services.<name>.concurrency";
}

TEST(ComponentKeys, EveryDocumentedKeyAndABareSectionAreAccepted) {
  std::vector<std::string> all;
  for (const auto* o : options::kAll) all.push_back(std::string(o->key) + "=1");
  EXPECT_EQ(error_of({}, "", all), "");
  EXPECT_EQ(error_of({}, "logging:\ngateway:\n"), "");
  EXPECT_EQ(error_of({}, "logging:\n  level: debug\n  format: json\n"), "");
}

TEST(Secrets, OneTrimmingRuleForFilesAndEnvVars) {
  EXPECT_EQ(read_secret_file("s", write_temp("  tok en \r\n")), "tok en");
  EXPECT_EQ(read_secret_env("s", env_of({{"T", "tok\n"}}), "T"), "tok");
  EXPECT_EQ(secret_value("s", " tok\n"), "tok");
}

TEST(Secrets, EmptyOrMissingSecretsStopStartUpAndNameTheSource) {
  const auto path = write_temp("\n\n");
  try {
    read_secret_file("gateway.auth.jwt_secret_file", path);
    ADD_FAILURE() << "an empty secret file was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("gateway.auth.jwt_secret_file"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
  EXPECT_THROW(read_secret_file("s", "/nonexistent/courier-secret"), ConfigError);
  EXPECT_THROW(read_secret_env("s", env_of({{"T", " "}}), "T"), ConfigError);
  EXPECT_THROW(secret_value("s", "\n"), ConfigError);
  const auto err = error_of({{"AI_GM_AUTH_MODE", "bearer"}, {"AI_GM_AUTH_SECRET_FILE", path}});
  EXPECT_NE(err.find(path), std::string::npos) << err;
}

// docs/configuration.md is the contract: every row the tables describe is there, on one line.
std::vector<std::string> doc_lines() {
  std::ifstream in(std::string(COURIER_SOURCE_DIR) + "/docs/configuration.md");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void expect_documented(const std::vector<std::string>& lines, const std::string& key,
                       const std::vector<std::string>& with) {
  const auto row = std::find_if(lines.begin(), lines.end(), [&](const std::string& l) {
    return l.rfind("| ", 0) == 0 && l.find("| `" + key + "` |") != std::string::npos;
  });
  ASSERT_NE(row, lines.end()) << key << " is not in docs/configuration.md";
  for (const auto& w : with) {
    if (!w.empty()) {
      EXPECT_NE(row->find(w), std::string::npos) << key << ": " << w;
    }
  }
}

// "`text`", or "" for empty text. Appended piece by piece: g++ 12 at -O3 warns (-Wrestrict,
// a false positive) on the chained operator+ this would otherwise be.
std::string code(std::string_view text) {
  std::string out;
  if (text.empty()) return out;
  out.reserve(text.size() + 2);
  out.append(1, '`').append(text).append(1, '`');
  return out;
}

TEST(Docs, TheConfigurationPageListsEveryTableRow) {
  const auto lines = doc_lines();
  ASSERT_FALSE(lines.empty());
  for (const auto* o : options::kAll) {
    expect_documented(lines, std::string(o->key),
                      {code(o->env), std::string(o->fallback), code(o->flag)});
  }
  for (const auto& f : service_fields()) {
    std::string env = "<SVC>_";
    env.append(f.env_suffix);
    expect_documented(lines, std::string(f.key),
                      {code(env), code(f.default_env), std::string(f.fallback)});
  }
}

TEST(LoadSettings, TraceSaysWhereEachServiceSettingCameFrom) {
  ConfigSources s;
  s.env = env_of({{"PROXY_TIMEOUT", "20"},
                  {"AI_GM_AUTH_MODE", "bearer"},
                  {"AI_GM_AUTH_SECRET_ENV", "AI_GM_TOKEN"},
                  {"AI_GM_TOKEN", "tok-secret"}});
  s.file_path = write_temp("services:\n  ai-gm:\n    timeout: 90\n");
  s.overrides = {"services.rule-engine.max_retries=2"};
  std::vector<TracedSetting> trace;
  load_settings(s, &trace);
  std::map<std::string, SourcedValue> by_key;
  for (const auto& t : trace) by_key[t.key] = t.value;
  const auto at = [&](const std::string& key) {
    const auto it = by_key.find(key);
    return it == by_key.end() ? std::string("missing")
                              : it->second.value + " " + it->second.describe();
  };
  EXPECT_EQ(at("services.ai-gm.timeout"), "90 file " + s.file_path) << "per service beats env";
  EXPECT_EQ(at("services.rule-engine.timeout"), "20 env PROXY_TIMEOUT");
  EXPECT_EQ(at("services.rule-engine.max_retries"), "2 --set");
  EXPECT_EQ(at("services.rule-engine.upstream"), "http://localhost:8031 default");
  EXPECT_EQ(at("services.ai-gm.auth.secret_env"), "AI_GM_TOKEN env AI_GM_AUTH_SECRET_ENV");
  EXPECT_EQ(at("services.rule-engine.auth.secret_env"), "missing") << "unset: not a setting";
  for (const auto& t : trace) {
    EXPECT_EQ(t.value.value.find("tok-secret"), std::string::npos) << t.key;
  }
  // One row per setting that has a parser, for every service.
  std::size_t parsed = 0;
  for (const auto& f : service_fields()) parsed += f.apply ? 1 : 0;
  EXPECT_EQ(trace.size(), 2 * parsed + 1);
}

TEST(Config, ServiceEnvPrefix) {
  EXPECT_EQ(service_env_prefix("rule-engine"), "RULE_ENGINE");
  EXPECT_EQ(service_env_prefix("ai-gm"), "AI_GM");
}

}  // namespace
}  // namespace courier
