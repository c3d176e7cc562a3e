// A gateway that runs the broker itself (gateway.embedded_broker): its links reach that broker
// over inproc://, workers connect to the broker's backend in the gateway's process, and with
// broker.frontend set other gateways may use it too. The proxy, stream and cancel suites also
// run in this mode (tests/integration/CMakeLists.txt); these tests cover what is its own.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/integration/topology.hpp"
#include "tests/support/test_upstream.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr std::string_view kLocalEndpoint = "inproc://courier-embedded-broker";

TopologyOptions embedded(const TestUpstream& upstream) {
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  options.embedded_broker = true;
  options.gateway_threads = 1;  // the links on the HTTP thread, as by default
  return options;
}

json services(const Topology& topology) {
  const auto r = topology.admin("/services");
  return r.ok() && r.status == 200 ? json::parse(r.body, nullptr, false) : json();
}

// The count of courier_gateway_hop_seconds observations for `hop` in the gateway's /metrics.
double hop_count(const Topology& topology, std::string_view hop) {
  const auto r = topology.admin("/metrics");
  if (!r.ok()) return -1;
  const std::string needle = "hop=\"" + std::string(hop) + "\"";
  double total = 0;
  std::size_t start = 0;
  while (start < r.body.size()) {
    const auto end = r.body.find('\n', start);
    const std::string_view line(r.body.data() + start,
                                (end == std::string::npos ? r.body.size() : end) - start);
    start = end == std::string::npos ? r.body.size() : end + 1;
    if (line.starts_with("courier_gateway_hop_seconds_count{") &&
        line.find(needle) != std::string_view::npos) {
      total += std::stod(std::string(line.substr(line.rfind(' ') + 1)));
    }
  }
  return total;
}

TEST(EmbeddedBroker, RequestsCrossTheBrokerInTheGatewayWithNoBrokerProcess) {
  TestUpstream upstream;
  Topology topology(embedded(upstream));
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();

  for (int i = 0; i < 10; ++i) {
    const auto r = http_request(topology.gateway_port(), "POST",
                                "/rule-engine/session/add?n=" + std::to_string(i),
                                {{"Content-Type", "application/json"}}, R"({"n":1})");
    ASSERT_EQ(r.status, 200u) << r.body << topology.logs();
  }
  EXPECT_EQ(upstream.request_count(), 10u);

  const auto s = services(topology);
  ASSERT_TRUE(s.is_object()) << topology.logs();
  ASSERT_EQ(s["brokers"].size(), 1u) << s.dump(2);
  EXPECT_EQ(s["brokers"][0]["endpoint"], kLocalEndpoint);
  EXPECT_EQ(s["brokers"][0]["id"], "test-broker-embedded");
  EXPECT_EQ(s["services"]["rule-engine"]["workers"], 1);
  // The broker's stamps come back: its hops are measured as in the separate topology.
  EXPECT_GE(hop_count(topology, "broker_to_worker"), 10);
  EXPECT_GE(hop_count(topology, "broker_to_gateway"), 10);
}

TEST(EmbeddedBroker, ServesOtherGatewaysOnItsFrontendWhenOneIsSet) {
  TestUpstream upstream;
  Topology topology(embedded(upstream));  // the topology sets broker.frontend
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();

  ReservedPort port(/*for_server=*/true), admin(/*for_server=*/true);
  const auto p = port.port();
  const auto a = admin.port();
  ChildProcess other(COURIER_GATEWAY_BIN,
                     {"--listen", "127.0.0.1:" + std::to_string(p), "--admin-listen",
                      "127.0.0.1:" + std::to_string(a), "--broker", topology.frontends()},
                     {{"RULE_ENGINE_URL", upstream.url()},
                      {"AI_GM_URL", upstream.url()},
                      {"COURIER_HEARTBEAT", "0.1"}});
  ASSERT_TRUE(wait_until(
      [&] {
        const auto r = http_request(p, "GET", "/readyz", {}, {}, 500ms);
        return r.ok() && r.status == 200;
      },
      15s, 20ms))
      << other.log_text();
  const auto r = http_request(p, "GET", "/rule-engine/session/list?page=1");
  EXPECT_EQ(r.status, 200u) << r.body << other.log_text();
  EXPECT_EQ(upstream.request_count(), 1u);
}

TEST(EmbeddedBroker, WithoutAFrontendSettingItListensForNoOtherGateway) {
  TestUpstream upstream;
  ReservedPort http_port(true), admin_port(true), backend_port(true);
  const auto hp = http_port.port(), ap = admin_port.port(), bp = backend_port.port();
  const std::string backend = "tcp://127.0.0.1:" + std::to_string(bp);
  ChildProcess gateway(COURIER_GATEWAY_BIN,
                       {"--listen", "127.0.0.1:" + std::to_string(hp), "--admin-listen",
                        "127.0.0.1:" + std::to_string(ap), "--embedded-broker", "true"},
                       {{"RULE_ENGINE_URL", upstream.url()},
                        {"AI_GM_URL", upstream.url()},
                        {"COURIER_BROKER_BACKEND", backend},
                        {"COURIER_HEARTBEAT", "0.1"}});
  ChildProcess worker(COURIER_WORKER_BIN, {"--service", "rule-engine", "--broker", backend},
                      {{"RULE_ENGINE_URL", upstream.url()}, {"COURIER_HEARTBEAT", "0.1"}});
  ASSERT_TRUE(wait_until(
      [&] {
        const auto r = http_request(hp, "GET", "/readyz/rule-engine", {}, {}, 500ms);
        return r.ok() && r.status == 200;
      },
      15s, 20ms))
      << gateway.log_text() << worker.log_text();
  EXPECT_EQ(http_request(hp, "GET", "/rule-engine/x").status, 200u) << gateway.log_text();
  // The broker names the last endpoint its frontend bound: the in-process one alone. Its link
  // has no network to cross, so there is no warning about CURVE being off.
  const auto log = gateway.log_text();
  EXPECT_EQ(log.find("CURVE off"), std::string::npos) << log;
  EXPECT_NE(log.find("ready: frontend " + std::string(kLocalEndpoint) + " backend " + backend),
            std::string::npos)
      << log;
}

TEST(EmbeddedBroker, SigtermAnswersWhatIsInFlightThenStopsTheBrokerAndExitsCleanly) {
  TestUpstream upstream;
  upstream.script("/slow", {Step::respond(200, "late but whole").after(800ms)});
  Topology topology(embedded(upstream));
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();

  auto slow = std::async(std::launch::async, [&] {
    return http_request(topology.gateway_port(), "GET", "/rule-engine/slow", {}, {}, 10s);
  });
  ASSERT_TRUE(wait_until([&] { return upstream.request_count() >= 1; }, 5s, 5ms));
  ASSERT_FALSE(topology.gateway().signal(SIGTERM));
  const auto r = slow.get();
  EXPECT_EQ(r.status, 200u) << topology.logs();
  EXPECT_EQ(r.body, "late but whole");
  const auto status = topology.gateway().wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << "still running 10 s after SIGTERM\n" << topology.logs();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << describe_wait_status(*status) << "\n"
      << topology.logs();
  EXPECT_NE(topology.gateway().log_text().find("broker stopped"), std::string::npos)
      << topology.logs();
}

TEST(EmbeddedBroker, ItsAdminListenerServesTheBrokersMetrics) {
  TestUpstream upstream;
  ReservedPort broker_admin(true);
  const auto port = broker_admin.port();
  auto options = embedded(upstream);
  options.env = {{"COURIER_BROKER_ADMIN_LISTEN", "127.0.0.1:" + std::to_string(port)}};
  Topology topology(options);
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  ASSERT_EQ(topology.get("/ai-gm/api/v1/game/turn").status, 200u) << topology.logs();

  const auto ready = http_request(port, "GET", "/readyz");
  EXPECT_EQ(ready.status, 200u) << ready.body;
  const auto metrics = http_request(port, "GET", "/metrics");
  ASSERT_EQ(metrics.status, 200u) << topology.logs();
  EXPECT_NE(metrics.body.find("courier_broker_dispatched_total"), std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("courier_broker_workers{service=\"ai-gm\"} 1"), std::string::npos)
      << metrics.body;

  // On the gateway's HTTP thread the loop waits in the gateway's event loop: idle, it wakes for
  // its ticks (25 ms at the tests' 0.1 s heartbeat) and the heartbeats, about 75 times a second
  // here, and never spins (a spinning loop wakes tens of thousands of times).
  const auto wakeups = [&] {
    const auto body = http_request(port, "GET", "/metrics").body;
    const std::string key = "courier_broker_events_total{event=\"loop_wakeups\"} ";
    const auto at = body.find(key);
    return at == std::string::npos ? -1.0 : std::stod(body.substr(at + key.size()));
  };
  const auto before = wakeups();
  std::this_thread::sleep_for(1s);  // the interval measured, not a wait for readiness
  const auto after = wakeups();
  ASSERT_GE(before, 0) << metrics.body;
  EXPECT_GT(after - before, 20);
  EXPECT_LT(after - before, 400);
}

TEST(EmbeddedBroker, CheckConfigRefusesAPlainBackendOffLoopbackAndListsTheBrokerSettings) {
  const auto run = [](EnvList env, std::vector<std::string> extra) {
    std::vector<std::string> args = {"--embedded-broker", "true"};
    args.insert(args.end(), extra.begin(), extra.end());
    ChildProcess p(COURIER_GATEWAY_BIN, args, env);
    const auto status = p.wait_exit(10s);
    return std::pair{status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1, p.log_text()};
  };
  const auto [refused, why] =
      run({{"COURIER_BROKER_BACKEND", "tcp://0.0.0.0:5556"}}, {"--check-config"});
  EXPECT_EQ(refused, 2) << why;
  EXPECT_NE(why.find("refusing to listen on tcp://0.0.0.0:5556 without CURVE"), std::string::npos)
      << why;

  const auto [ok, listing] =
      run({{"COURIER_BROKER_BACKEND", "tcp://127.0.0.1:6556"}}, {"--print-config"});
  EXPECT_EQ(ok, 0) << listing;
  EXPECT_NE(listing.find("gateway.embedded_broker"), std::string::npos) << listing;
  EXPECT_NE(listing.find("broker.backend"), std::string::npos) << listing;
  EXPECT_NE(listing.find("tcp://127.0.0.1:6556"), std::string::npos) << listing;
}

}  // namespace
}  // namespace courier::testing
