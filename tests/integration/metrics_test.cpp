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
#include <map>
#include <string>
#include <vector>

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

// The hops a request's round trip is made of, as the gateway exports them from the STAMPS its
// replies carry (gateway/hops.hpp).
const std::vector<std::string> kHopNames = {"gateway",
                                            "gateway_to_broker",
                                            "broker",
                                            "broker_to_worker",
                                            "worker_before_upstream",
                                            "upstream",
                                            "worker_after_upstream",
                                            "worker_to_broker",
                                            "broker_reply",
                                            "broker_to_gateway",
                                            "gateway_reply"};

TEST(Metrics, EveryHopOfEveryReplyIsObservedAndTheHopsAddUpToTheRoundTrip) {
  TestUpstream upstream;
  upstream.script("/think", {Step::respond(200, "thought").after(40ms)});
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  Topology topology(options);
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();

  constexpr int kRequests = 5;
  for (int i = 0; i < kRequests; ++i) ASSERT_EQ(topology.get("/rule-engine/think").status, 200u);

  pt::Parsed m;
  std::string text;
  const std::map<std::string, std::string> total = {{"service", "rule-engine"}, {"hop", "total"}};
  EXPECT_TRUE(wait_until(
      [&] {
        text = topology.admin("/metrics").body;
        m = pt::parse(text);
        return m.value("courier_gateway_hop_seconds_count", total).value_or(0) >= kRequests;
      },
      5s, 50ms))
      << text;
  ASSERT_EQ(m.error, "") << text;
  EXPECT_EQ(promtool_problems(text, "hops"), "");
  EXPECT_EQ(m.value("courier_gateway_hop_seconds_count", total), kRequests);
  double sum = 0;
  for (const auto& hop : kHopNames) {
    const std::map<std::string, std::string> labels = {{"service", "rule-engine"}, {"hop", hop}};
    EXPECT_EQ(m.value("courier_gateway_hop_seconds_count", labels), kRequests) << hop;
    sum += m.value("courier_gateway_hop_seconds_sum", labels).value_or(-1);
  }
  const double round_trips = m.value("courier_gateway_hop_seconds_sum", total).value_or(0);
  EXPECT_NEAR(sum, round_trips, 1e-4);
  // The upstream's 40 ms are in the upstream hop, not in Courier's.
  const double up =
      m.value("courier_gateway_hop_seconds_sum", {{"service", "rule-engine"}, {"hop", "upstream"}})
          .value_or(0);
  EXPECT_GE(up, kRequests * 0.040);
  EXPECT_LT(round_trips - up, kRequests * 0.030);
  EXPECT_EQ(m.value("courier_gateway_hop_stamps_unusable_total", {{"service", "rule-engine"}}), 0);
  if (::testing::Test::HasFailure()) std::cerr << topology.logs();
}

TEST(Metrics, WithHopStampsOffNoHopIsExported) {
  TestUpstream upstream;
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  options.gateway_args = {"--hop-stamps", "false"};
  Topology topology(options);
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  for (int i = 0; i < 3; ++i) ASSERT_EQ(topology.get("/rule-engine/ok").status, 200u);
  std::string text;
  EXPECT_TRUE(wait_until(
      [&] {
        text = topology.admin("/metrics").body;
        return pt::parse(text)
                   .value("courier_gateway_requests_total",
                          {{"service", "rule-engine"}, {"status", "200"}})
                   .value_or(0) >= 3;
      },
      5s, 50ms))
      << text;
  EXPECT_EQ(text.find("courier_gateway_hop_seconds_count{"), std::string::npos) << text;
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
