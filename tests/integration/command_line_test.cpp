// Every binary's command line as an operator uses it: --version, --check-config (good and bad
// configurations, without binding anything) and --print-config (values, sources, secrets hidden).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "tests/support/process.hpp"
#include "tests/support/test_upstream.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;

struct Run {
  int exit_code = -1;  // -1: did not exit by itself in time
  std::string output;  // stdout and stderr
};

Run run(const std::string& bin, const std::vector<std::string>& args, const EnvList& env = {}) {
  ChildProcess p(bin, args, env);
  const auto status = p.wait_exit(10s);
  Run out;
  out.output = p.log_text();
  if (status && WIFEXITED(*status)) out.exit_code = WEXITSTATUS(*status);
  return out;
}

std::string temp_file(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("courier-cli-" + std::to_string(::getpid()) + "-" + name);
  std::ofstream(path) << text;
  return path.string();
}

// --print-config rows by key: {value, source}.
std::map<std::string, std::pair<std::string, std::string>> rows_of(const std::string& output) {
  std::map<std::string, std::pair<std::string, std::string>> rows;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string key, value, source, word;
    if (!(fields >> key >> value)) continue;
    while (fields >> word) source += (source.empty() ? "" : " ") + word;
    rows[key] = {value, source};
  }
  return rows;
}

const EnvList kWorkerEnv = {{"RULE_ENGINE_URL", "http://127.0.0.1:1"}};

TEST(CommandLine, EveryBinaryPrintsItsVersionAndRevision) {
  for (const auto& [bin, name] : {std::pair{COURIER_GATEWAY_BIN, "courier-gateway"},
                                  {COURIER_BROKER_BIN, "courier-broker"},
                                  {COURIER_WORKER_BIN, "courier-worker"},
                                  {COURIER_DEMO_BIN, "courier-demo-upstream"},
                                  {COURIER_KEYS_BIN, "courier-keys"}}) {
    const auto r = run(bin, {"--version"});
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.output;
    const auto first_line = r.output.substr(0, r.output.find('\n'));
    EXPECT_EQ(first_line.rfind(std::string(name) + " 0.", 0), 0u) << first_line;
    EXPECT_NE(first_line.find(" ("), std::string::npos) << first_line;
    EXPECT_EQ(first_line.back(), ')') << first_line;
  }
}

TEST(CommandLine, HelpShowsTypesAndDefaults) {
  const auto r = run(COURIER_GATEWAY_BIN, {"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const auto* text : {"SECONDS", "INT in [0, 256]", "HOST:PORT", "ENDPOINTS", "BOOL",
                           "[127.0.0.1:9901]", "--check-config", "--print-config", "--version"}) {
    EXPECT_NE(r.output.find(text), std::string::npos) << text << "\n" << r.output;
  }
}

TEST(CommandLine, CheckConfigPassesAGoodConfigurationWithoutBindingAnything) {
  // Both addresses are taken by a listening server: a binary that bound them would fail.
  TestUpstream taken;
  TestUpstream taken_too;
  const auto gateway = run(COURIER_GATEWAY_BIN, {"--check-config", "--listen", taken.host_port(),
                                                 "--admin-listen", taken_too.host_port()});
  EXPECT_EQ(gateway.exit_code, 0) << gateway.output;
  EXPECT_NE(gateway.output.find("courier-gateway: configuration ok"), std::string::npos)
      << gateway.output;

  const auto endpoint = "tcp://" + taken.host_port();
  const auto broker =
      run(COURIER_BROKER_BIN, {"--check-config", "--frontend", endpoint, "--backend", endpoint});
  EXPECT_EQ(broker.exit_code, 0) << broker.output;
  EXPECT_NE(broker.output.find("courier-broker: configuration ok"), std::string::npos)
      << broker.output;

  const auto worker =
      run(COURIER_WORKER_BIN, {"--check-config", "--service", "rule-engine"}, kWorkerEnv);
  EXPECT_EQ(worker.exit_code, 0) << worker.output;
  EXPECT_NE(worker.output.find("courier-worker: configuration ok"), std::string::npos)
      << worker.output;
}

TEST(CommandLine, CheckConfigNamesAMisspeltKeyInTheFileOrInSetAndExits2) {
  const auto file = temp_file("typo.yaml", "gateway:\n  thraeds: 2\n");
  for (const std::string bin : {COURIER_GATEWAY_BIN, COURIER_BROKER_BIN, COURIER_WORKER_BIN}) {
    const auto in_file = run(bin, {"--check-config", "--config", file}, kWorkerEnv);
    EXPECT_EQ(in_file.exit_code, 2) << bin << ": " << in_file.output;
    EXPECT_NE(in_file.output.find("unknown setting gateway.thraeds"), std::string::npos)
        << in_file.output;
    EXPECT_EQ(in_file.output.find("configuration ok"), std::string::npos) << in_file.output;

    const auto in_set = run(bin, {"--check-config", "--set", "gateway.thraeds=2"}, kWorkerEnv);
    EXPECT_EQ(in_set.exit_code, 2) << bin << ": " << in_set.output;
    EXPECT_NE(in_set.output.find("gateway.thraeds"), std::string::npos) << in_set.output;
  }
  std::filesystem::remove(file);
}

TEST(CommandLine, CheckConfigChecksWhatStartUpWould) {
  // Key files are read.
  const auto curve =
      run(COURIER_GATEWAY_BIN, {"--check-config", "--curve-secret-key-file", "/nonexistent/gw.key",
                                "--curve-broker-key-file", "/nonexistent/broker.pub"});
  EXPECT_EQ(curve.exit_code, 2) << curve.output;
  EXPECT_NE(curve.output.find("/nonexistent/gw.key"), std::string::npos) << curve.output;
  // The service table, and what depends on it.
  const auto required = run(COURIER_GATEWAY_BIN, {"--check-config", "--required-services", "nope"});
  EXPECT_EQ(required.exit_code, 2) << required.output;
  EXPECT_NE(required.output.find("unknown service 'nope'"), std::string::npos) << required.output;
  const auto timeout = run(COURIER_WORKER_BIN, {"--check-config", "--service", "rule-engine"},
                           {{"RULE_ENGINE_URL", "http://127.0.0.1:1"}, {"PROXY_TIMEOUT", "ten"}});
  EXPECT_EQ(timeout.exit_code, 2) << timeout.output;
  EXPECT_NE(timeout.output.find("PROXY_TIMEOUT"), std::string::npos) << timeout.output;
  // A broker on a public address without CURVE or --insecure.
  const auto open = run(COURIER_BROKER_BIN, {"--check-config", "--frontend", "tcp://0.0.0.0:5555"});
  EXPECT_EQ(open.exit_code, 2) << open.output;
  EXPECT_NE(open.output.find("without CURVE"), std::string::npos) << open.output;
}

TEST(CommandLine, PrintConfigShowsEachValueWithItsSourceAndNeverASecret) {
  const std::string secret = "s3cret-value-that-must-never-be-printed-0123456789";
  const auto file = temp_file("print.yaml", "gateway:\n  idle_timeout: 7\n");
  const auto r = run(COURIER_GATEWAY_BIN,
                     {"--print-config", "--config", file, "--listen", "127.0.0.1:8099", "--set",
                      "gateway.max_body=1000"},
                     {{"COURIER_AUTH_JWT_SECRET", secret},
                      {"COURIER_AUTH_API_KEYS", "ops:" + secret},
                      {"COURIER_GATEWAY_THREADS", "3"},
                      {"AI_GM_TIMEOUT", "90"}});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find(secret), std::string::npos) << "a secret was printed:\n" << r.output;
  const auto rows = rows_of(r.output);
  using Row = std::pair<std::string, std::string>;
  EXPECT_EQ(rows.at("gateway.listen"), Row("127.0.0.1:8099", "flag --listen"));
  EXPECT_EQ(rows.at("gateway.max_body"), Row("1000", "--set"));
  EXPECT_EQ(rows.at("gateway.threads"), Row("3", "env COURIER_GATEWAY_THREADS"));
  EXPECT_EQ(rows.at("gateway.idle_timeout"), Row("7", "file " + file));
  EXPECT_EQ(rows.at("gateway.header_timeout"), Row("10", "default"));
  EXPECT_EQ(rows.at("gateway.admin_listen"), Row("127.0.0.1:9901", "default"));
  EXPECT_EQ(rows.at("gateway.auth.jwt_secret"), Row("<redacted>", "env COURIER_AUTH_JWT_SECRET"));
  EXPECT_EQ(rows.at("gateway.auth.api_keys"), Row("<redacted>", "env COURIER_AUTH_API_KEYS"));
  EXPECT_EQ(rows.at("logging.level"), Row("info", "default"));
  EXPECT_EQ(rows.at("services.ai-gm.timeout"), Row("90", "env AI_GM_TIMEOUT"));
  EXPECT_EQ(rows.at("services.rule-engine.timeout"), Row("10", "default"));
  EXPECT_EQ(rows.at("services.rule-engine.upstream"), Row("http://localhost:8031", "default"));
  EXPECT_EQ(rows.count("broker.frontend"), 0u) << "only the gateway's own options";
  std::filesystem::remove(file);
}

TEST(CommandLine, PrintConfigOfAWorkerShowsItsServiceAndItsFlags) {
  const auto worker =
      run(COURIER_WORKER_BIN, {"--print-config", "--service", "rule-engine", "--concurrency", "9"},
          {{"RULE_ENGINE_URL", "http://127.0.0.1:1"}});
  EXPECT_EQ(worker.exit_code, 0) << worker.output;
  const auto rows = rows_of(worker.output);
  using Row = std::pair<std::string, std::string>;
  EXPECT_EQ(rows.at("worker.service"), Row("rule-engine", "flag --service"));
  EXPECT_EQ(rows.at("services.rule-engine.concurrency"), Row("9", "flag --concurrency"));
  EXPECT_EQ(rows.at("services.rule-engine.upstream"),
            Row("http://127.0.0.1:1", "env RULE_ENGINE_URL"));
  EXPECT_EQ(rows.count("services.ai-gm.timeout"), 0u) << "another service's settings";

  const auto broker = run(COURIER_BROKER_BIN, {"--print-config", "--insecure"});
  EXPECT_EQ(broker.exit_code, 0) << broker.output;
  EXPECT_EQ(rows_of(broker.output).at("broker.insecure"), Row("true", "flag --insecure"));
}

}  // namespace
}  // namespace courier::testing
