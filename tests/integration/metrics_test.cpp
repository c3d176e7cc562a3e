// /metrics of every process after real traffic: the gateway's (its HTTP port), the broker's and a
// worker's (their admin listeners), each valid for `promtool check metrics` and carrying the
// series that process owns, with values the traffic explains.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "tests/integration/topology.hpp"
#include "tests/support/test_upstream.hpp"
#include "tests/unit/gateway/prometheus_text.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;
namespace pt = prometheus_text;

// promtool's verdict on `text` (its output when not clean, "" when clean).
std::string promtool_problems(const std::string& text, const std::string& name) {
  const std::string path = ::testing::TempDir() + "courier_metrics_" + name + ".txt";
  const std::string out = path + ".out";
  std::ofstream(path) << text;
  const int rc =
      std::system(("promtool check metrics < '" + path + "' > '" + out + "' 2>&1").c_str());
  std::ifstream in(out);
  std::string report((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0 && report.empty()) return {};
  return "exit " + std::to_string(rc) + ": " + report;
}

HttpResult scrape(std::uint16_t port, const std::string& target = "/metrics") {
  return http_request(port, "GET", target);
}

TEST(Metrics, EveryProcessServesCleanMetricsForWhatItOwns) {
  TestUpstream upstream;
  // Slower than the service timeout: the worker answers 504 RULE_ENGINE_TIMEOUT.
  upstream.script("/slow", {Step::respond(200, "late").after(3s)});
  const auto broker_admin = free_tcp_port();
  const auto worker_admin = free_tcp_port();
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  options.env = {{"RULE_ENGINE_TIMEOUT", "1"}};
  options.broker_args = {"--admin-listen", "127.0.0.1:" + std::to_string(broker_admin)};
  options.start = false;
  Topology topology(options);
  topology.start_broker();
  topology.start_worker("rule-engine",
                        {"--admin-listen", "127.0.0.1:" + std::to_string(worker_admin)});
  topology.start_worker("ai-gm");
  topology.start_gateway();
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();

  for (int i = 0; i < 3; ++i) ASSERT_EQ(topology.get("/rule-engine/ok").status, 200u);
  const auto slow = topology.get("/rule-engine/slow", {}, 10s);
  ASSERT_EQ(slow.status, 504u) << slow.body;
  EXPECT_NE(slow.body.find("RULE_ENGINE_TIMEOUT"), std::string::npos) << slow.body;

  // The gateway counts a request just after writing it: poll until the 504 shows.
  pt::Parsed gateway;
  std::string gateway_text;
  EXPECT_TRUE(wait_until(
      [&] {
        const auto r = topology.admin("/metrics");
        gateway_text = r.body;
        gateway = pt::parse(r.body);
        return gateway.value("courier_gateway_timeouts_total", {{"service", "rule-engine"}})
                   .value_or(0) >= 1;
      },
      5s, 50ms))
      << gateway_text;
  EXPECT_EQ(promtool_problems(gateway_text, "gateway"), "");
  EXPECT_EQ(gateway.value("courier_build_info", {{"component", "gateway"}}), 1);
  EXPECT_EQ(gateway.value(
                "courier_gateway_requests_total",
                {{"service", "rule-engine"}, {"status", "504"}, {"code", "RULE_ENGINE_TIMEOUT"}}),
            1);
  EXPECT_EQ(gateway_text.find("courier_broker_"), std::string::npos);

  const auto broker = scrape(broker_admin);
  ASSERT_EQ(broker.status, 200u) << topology.logs();
  EXPECT_EQ(broker.header("Content-Type").value_or(""), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(promtool_problems(broker.body, "broker"), "");
  const auto b = pt::parse(broker.body);
  ASSERT_EQ(b.error, "") << broker.body;
  EXPECT_EQ(b.value("courier_build_info", {{"component", "broker"}}), 1);
  EXPECT_EQ(b.value("courier_broker_workers", {{"service", "rule-engine"}}), 1);
  EXPECT_GE(b.value("courier_broker_dispatched_total", {{"service", "rule-engine"}}).value_or(0),
            4);
  EXPECT_EQ(b.value("courier_broker_queue_depth", {{"service", "rule-engine"}}), 0);
  EXPECT_GT(b.value("process_resident_memory_bytes").value_or(0), 0);
  EXPECT_EQ(scrape(broker_admin, "/readyz").status, 200u);
  EXPECT_EQ(scrape(broker_admin, "/healthz").status, 200u);
  EXPECT_EQ(scrape(broker_admin, "/nope").status, 404u);

  const auto worker = scrape(worker_admin);
  ASSERT_EQ(worker.status, 200u) << topology.logs();
  EXPECT_EQ(promtool_problems(worker.body, "worker"), "");
  const auto w = pt::parse(worker.body);
  ASSERT_EQ(w.error, "") << worker.body;
  EXPECT_EQ(w.value("courier_build_info", {{"component", "worker"}}), 1);
  EXPECT_GE(w.value("courier_worker_attempts_total", {{"service", "rule-engine"}}).value_or(0), 4);
  EXPECT_EQ(w.value("courier_worker_upstream_duration_seconds_count",
                    {{"service", "rule-engine"}, {"outcome", "timeout"}}),
            1);
  EXPECT_GE(w.value("courier_worker_upstream_duration_seconds_count",
                    {{"service", "rule-engine"}, {"outcome", "ok"}})
                .value_or(0),
            3);
  EXPECT_EQ(
      w.value("courier_worker_circuit_state", {{"service", "rule-engine"}, {"state", "closed"}}),
      1);
  EXPECT_EQ(w.value("courier_worker_brokers_alive", {{"service", "rule-engine"}}), 1);
  EXPECT_EQ(scrape(worker_admin, "/readyz").status, 200u);
  if (::testing::Test::HasFailure()) std::cerr << topology.logs();
}

TEST(Metrics, AnAdminAddressInUseStopsStartUpNamingTheOption) {
  const TestUpstream taken;  // listening on its port
  TopologyOptions options;
  options.start = false;
  options.broker_args = {"--admin-listen", taken.host_port()};
  Topology topology(options);
  topology.start_broker();
  auto& broker = topology.broker();
  const auto code = broker.wait_exit(10s);
  ASSERT_TRUE(code.has_value()) << topology.logs();
  EXPECT_NE(*code, 0);
  EXPECT_NE(topology.logs().find("broker.admin_listen"), std::string::npos) << topology.logs();
}

}  // namespace
}  // namespace courier::testing
