// The gateway's admin listener, apart from the public port: /metrics, /services and /dashboard
// only there, probes on both; and readiness per service (gateway.required_services).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "tests/integration/shared_topology.hpp"
#include "tests/unit/gateway/prometheus_text.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;

nlohmann::json json_of(const HttpResult& r) {
  return nlohmann::json::parse(r.body, nullptr, false);
}

class AdminListenerTest : public SharedTopologyTest<AdminListenerTest> {
 public:
  static void configure(TopologyOptions&) {}
};

TEST_F(AdminListenerTest, MetricsServicesAndDashboardAreServedOnlyOnTheAdminPort) {
  const auto metrics = topology_->admin("/metrics");
  EXPECT_EQ(metrics.status, 200u);
  EXPECT_NE(metrics.body.find("courier_build_info{component=\"gateway\""), std::string::npos);
  EXPECT_EQ(topology_->admin("/services").status, 200u);
  EXPECT_EQ(topology_->admin("/dashboard").status, 200u);

  // On the public port they are paths like any other: no such service.
  const auto before = upstream_->request_count();
  for (const auto* path : {"/metrics", "/services", "/dashboard"}) {
    const auto r = topology_->get(path);
    EXPECT_EQ(r.status, 404u) << path << ": " << r.body;
    EXPECT_EQ(json_of(r).value("code", ""), "UNKNOWN_SERVICE") << r.body;
  }
  EXPECT_EQ(upstream_->request_count(), before);
}

TEST_F(AdminListenerTest, ProbesAnswerOnBothPorts) {
  for (const auto* path : {"/healthz", "/readyz", "/readyz/rule-engine"}) {
    EXPECT_EQ(topology_->get(path).status, 200u) << path;
    EXPECT_EQ(topology_->admin(path).status, 200u) << path;
  }
}

TEST_F(AdminListenerTest, TheAdminPortForwardsNothing) {
  const auto before = upstream_->request_count();
  const auto r = topology_->admin("/rule-engine/x");
  EXPECT_EQ(r.status, 404u) << r.body;
  EXPECT_EQ(json_of(r).value("code", ""), "NOT_FOUND") << r.body;
  const auto post = http_request(topology_->admin_port(), "POST", "/metrics", {}, "x");
  EXPECT_EQ(post.status, 405u) << post.body;
  EXPECT_EQ(post.header("Allow"), "GET, HEAD");
  EXPECT_EQ(upstream_->request_count(), before);
}

TEST_F(AdminListenerTest, ItsConnectionsAreNotCountedAsClientConnections) {
  // Only the admin connection of this scrape is open: the public gauge stays at 0.
  EXPECT_TRUE(wait_until(
      [&] {
        const auto r = topology_->admin("/metrics");
        return r.ok() && prometheus_text::parse(r.body).value("courier_gateway_connections") == 0.0;
      },
      5s, 20ms))
      << topology_->admin("/metrics").body;
}

TEST(AdminListener, OffServesNoAdminEndpointsAnywhere) {
  ReservedPort port(/*for_server=*/true);
  ChildProcess gateway(COURIER_GATEWAY_BIN,
                       {"--listen", "127.0.0.1:" + std::to_string(port.port()), "--admin-listen",
                        "off", "--broker", "tcp://127.0.0.1:1"});
  ASSERT_TRUE(wait_until(
      [&] { return http_request(port.port(), "GET", "/healthz", {}, {}, 500ms).status == 200; },
      10s, 20ms))
      << gateway.log_text();
  EXPECT_EQ(http_request(port.port(), "GET", "/metrics").status, 404u);
  EXPECT_NE(gateway.log_text().find("admin listener off"), std::string::npos) << gateway.log_text();
}

TEST(AdminListener, ItMustDifferFromThePublicAddress) {
  ChildProcess gateway(COURIER_GATEWAY_BIN,
                       {"--listen", "127.0.0.1:8111", "--admin-listen", "127.0.0.1:8111"});
  const auto status = gateway.wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << describe_wait_status(*status);
  EXPECT_NE(gateway.log_text().find("--admin-listen (gateway.admin_listen)"), std::string::npos)
      << gateway.log_text();
}

// ai-gm is configured (it always is) but has no worker; only rule-engine is required.
TEST(Readiness, AServiceThatIsNotRequiredDoesNotPullTheGatewayOut) {
  TestUpstream upstream;
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}};
  options.gateway_args = {"--required-services", "rule-engine"};
  Topology topology(std::move(options));
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();

  const auto all = topology.get("/readyz");
  EXPECT_EQ(all.status, 200u) << all.body;
  const auto body = json_of(all);
  EXPECT_EQ(body["status"], "ready");
  EXPECT_EQ(body["ready"], nlohmann::json::array({"rule-engine"}));
  EXPECT_EQ(body["missing"], nlohmann::json::array());
  EXPECT_EQ(body["services"]["ai-gm"]["required"], false);
  EXPECT_EQ(body["services"]["ai-gm"]["workers"], 0);

  const auto ai_gm = topology.get("/readyz/ai-gm");
  EXPECT_EQ(ai_gm.status, 503u) << ai_gm.body;
  EXPECT_EQ(json_of(ai_gm)["reason"], "no workers");
  const auto rule_engine = topology.get("/readyz/rule-engine");
  EXPECT_EQ(rule_engine.status, 200u) << rule_engine.body;
  EXPECT_EQ(json_of(rule_engine)["workers"], 1);
  const auto unknown = topology.get("/readyz/nope");
  EXPECT_EQ(unknown.status, 404u) << unknown.body;
  EXPECT_EQ(json_of(unknown).value("code", ""), "UNKNOWN_SERVICE") << unknown.body;
}

TEST(Readiness, ByDefaultEveryConfiguredServiceIsRequired) {
  TestUpstream upstream;
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}};
  Topology topology(std::move(options));
  ASSERT_TRUE(
      wait_until([&] { return topology.get("/readyz/rule-engine").status == 200; }, 15s, 20ms))
      << topology.logs();
  const auto all = topology.get("/readyz");
  EXPECT_EQ(all.status, 503u) << all.body;
  EXPECT_EQ(json_of(all)["missing"], nlohmann::json::array({"ai-gm"})) << all.body;
  EXPECT_EQ(json_of(all)["ready"], nlohmann::json::array({"rule-engine"})) << all.body;

  // A worker for ai-gm makes it ready.
  topology.start_worker("ai-gm");
  EXPECT_TRUE(topology.wait_ready()) << topology.logs();
}

}  // namespace
}  // namespace courier::testing
