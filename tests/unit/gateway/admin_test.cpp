// The gateway's own endpoints as pure functions of their snapshots: which paths are admin, what
// /healthz, /readyz, /readyz/<service>, /services, /metrics and /dashboard answer for a given
// broker view and counts, and what the admin listener answers for anything else.
#include "gateway/admin.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace courier::gateway {
namespace {

using namespace std::chrono_literals;

const char* kServesSvc =
    R"({"broker_id":"b1","gateways":1,"counters":{"requests":7},
        "services":{"svc":{"workers":2,"capacity":8,"in_flight":1,"queue_depth":0,
          "worker_list":[{"id":"w1","capacity":4,"draining":false},
                         {"id":"w2","capacity":4,"draining":false}]}}})";

Settings two_services() {
  Settings s;
  for (const auto* name : {"svc", "other"}) {
    ServiceConfig c;
    c.name = name;
    c.upstream.text = std::string("http://") + name + ":80";
    c.timeout = 2500ms;
    c.max_attempts = 2;
    s.services[name] = c;
  }
  return s;
}

HttpRequest get(std::string_view target, http::verb method = http::verb::get) {
  HttpRequest req{method, target, 11};
  req.keep_alive(true);
  return req;
}

class AdminTest : public ::testing::Test {
 protected:
  Settings settings_ = two_services();
  GatewayMetrics metrics_;
  ServiceStats service_stats_{{"svc", "other"}};

  AdminState state(bool connected, std::vector<BrokerStatus> brokers) {
    AdminState s{settings_, metrics_, service_stats_, {}, 0, {}};
    s.gateway.broker_connected = connected;
    s.brokers = std::move(brokers);
    return s;
  }
};

TEST(IsProbeEndpoint, OnlyGetOrHeadOfHealthzAndReadyz) {
  for (const auto* path : {"/healthz", "/readyz", "/readyz/svc", "/readyz/"}) {
    EXPECT_TRUE(is_probe_endpoint(http::verb::get, path)) << path;
    EXPECT_TRUE(is_probe_endpoint(http::verb::head, path)) << path;
    EXPECT_FALSE(is_probe_endpoint(http::verb::post, path)) << path;
  }
  for (const auto* path : {"/services", "/metrics", "/dashboard", "/readyzx", "/svc/readyz"}) {
    EXPECT_FALSE(is_probe_endpoint(http::verb::get, path)) << path;
  }
}

TEST(IsAdminEndpoint, OnlyGetOrHeadOfTheGatewaysOwnPaths) {
  for (const auto* path : {"/healthz", "/readyz", "/readyz/svc", "/services", "/services/history",
                           "/metrics", "/dashboard"}) {
    EXPECT_TRUE(is_admin_endpoint(http::verb::get, path)) << path;
    EXPECT_TRUE(is_admin_endpoint(http::verb::head, path)) << path;
    EXPECT_FALSE(is_admin_endpoint(http::verb::post, path)) << path;
  }
  for (const auto* path : {"/healthz/", "/healthz?x=1", "/svc/healthz", "/", "/metricsx"}) {
    EXPECT_FALSE(is_admin_endpoint(http::verb::get, path)) << path;
  }
}

TEST_F(AdminTest, HealthzIsOkWhateverTheBrokers) {
  const auto res = admin_response(get("/healthz"), state(false, {}));
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res.body(), R"({"status":"ok"})");
  EXPECT_TRUE(res.keep_alive());
}

TEST_F(AdminTest, ResponsesFollowTheRequestsVersionAndKeepAlive) {
  auto req = get("/healthz");
  req.version(10);
  req.keep_alive(false);
  const auto res = admin_response(req, state(false, {}));
  EXPECT_EQ(res.version(), 10);
  EXPECT_FALSE(res.keep_alive());
}

TEST_F(AdminTest, ReadyzIsNotReadyWithoutABroker) {
  const auto res = admin_response(get("/readyz"), state(false, {}));
  EXPECT_EQ(res.result_int(), 503);
  const auto body = nlohmann::json::parse(res.body());
  EXPECT_EQ(body["status"], "not ready");
  EXPECT_EQ(body["reason"], "broker not connected");
  EXPECT_EQ(body["ready"], nlohmann::json::array());
  EXPECT_EQ(body["missing"], nlohmann::json::array({"other", "svc"}));
}

TEST_F(AdminTest, ReadyzNamesTheServicesWithoutWorkers) {
  const auto res = admin_response(get("/readyz"),
                                  state(true, {{"tcp://b:1", true, 0, parse_stats(kServesSvc)}}));
  EXPECT_EQ(res.result_int(), 503);
  const auto body = nlohmann::json::parse(res.body());
  EXPECT_EQ(body["reason"], "no workers");
  EXPECT_EQ(body["ready"], nlohmann::json::array({"svc"}));
  EXPECT_EQ(body["missing"], nlohmann::json::array({"other"}));
  EXPECT_EQ(body["services"]["svc"], nlohmann::json::parse(R"({"workers":2,"required":true})"));
  EXPECT_EQ(body["services"]["other"], nlohmann::json::parse(R"({"workers":0,"required":true})"));
}

TEST_F(AdminTest, ReadyzIgnoresServicesThatAreNotRequired) {
  const std::vector<std::string> required = {"svc"};
  auto s = state(true, {{"tcp://b:1", true, 0, parse_stats(kServesSvc)}});
  s.required = required;
  const auto res = admin_response(get("/readyz"), s);
  EXPECT_EQ(res.result_int(), 200) << res.body();
  const auto body = nlohmann::json::parse(res.body());
  EXPECT_EQ(body["status"], "ready");
  EXPECT_EQ(body["missing"], nlohmann::json::array());
  EXPECT_EQ(body["services"]["other"]["required"], false);

  const std::vector<std::string> other = {"other"};
  s.required = other;
  EXPECT_EQ(admin_response(get("/readyz"), s).result_int(), 503);
}

TEST_F(AdminTest, ReadyzOfOneServiceAnswersForItAlone) {
  const auto s = state(true, {{"tcp://b:1", true, 0, parse_stats(kServesSvc)}});
  const auto ready = admin_response(get("/readyz/svc"), s);
  EXPECT_EQ(ready.result_int(), 200);
  EXPECT_EQ(nlohmann::json::parse(ready.body()),
            nlohmann::json::parse(R"({"service":"svc","status":"ready","workers":2})"));
  const auto missing = admin_response(get("/readyz/other"), s);
  EXPECT_EQ(missing.result_int(), 503);
  EXPECT_EQ(nlohmann::json::parse(missing.body())["reason"], "no workers");
  EXPECT_EQ(admin_response(get("/readyz/svc"), state(false, {})).result_int(), 503);
  for (const auto* unknown : {"/readyz/nope", "/readyz/", "/readyz/svc/x", "/readyz/\xff"}) {
    const auto res = admin_response(get(unknown), s);
    EXPECT_EQ(res.result_int(), 404) << unknown;
    const auto body = nlohmann::json::parse(res.body());
    EXPECT_EQ(body["code"], "UNKNOWN_SERVICE") << unknown;
  }
}

TEST_F(AdminTest, TheAdminListenerRefusesOtherPathsAndMethods) {
  const auto s = state(true, {});
  const auto other = admin_response(get("/rule-engine/x"), s);
  EXPECT_EQ(other.result_int(), 404);
  EXPECT_EQ(nlohmann::json::parse(other.body())["code"], "NOT_FOUND");
  const auto post = admin_response(get("/metrics", http::verb::post), s);
  EXPECT_EQ(post.result_int(), 405);
  EXPECT_EQ(post[http::field::allow], "GET, HEAD");
  EXPECT_EQ(nlohmann::json::parse(post.body())["code"], "METHOD_NOT_ALLOWED");
}

TEST_F(AdminTest, ReadyzIsReadyWhenEveryServiceHasAWorker) {
  settings_.services.erase("other");
  const auto res = admin_response(get("/readyz"),
                                  state(true, {{"tcp://b:1", true, 0, parse_stats(kServesSvc)}}));
  EXPECT_EQ(res.result_int(), 200);
  const auto body = nlohmann::json::parse(res.body());
  EXPECT_EQ(body["status"], "ready");
  EXPECT_EQ(body["ready"], nlohmann::json::array({"svc"}));
  EXPECT_EQ(body["missing"], nlohmann::json::array());
}

TEST_F(AdminTest, ServicesJoinsConfigBrokerViewAndGatewayCounts) {
  service_stats_.record("svc", 200, 3.0);
  auto s = state(true, {{"tcp://b:1", true, 0, parse_stats(kServesSvc)}});
  s.requests = 12;
  s.gateway.in_flight = 2;
  s.gateway.connections = 3;
  s.gateway.bad_requests = 4;
  s.gateway.timeouts = 5;
  s.gateway.late_replies = 6;
  s.gateway.failovers = 7;
  const auto res = admin_response(get("/services"), s);
  EXPECT_EQ(res.result_int(), 200);
  const auto body = nlohmann::json::parse(res.body());
  EXPECT_EQ(body["broker_connected"], true);
  EXPECT_EQ(body["broker"]["id"], "b1");
  EXPECT_EQ(body["broker"]["counters"]["requests"], 7);
  EXPECT_EQ(body["brokers"].size(), 1u);
  const auto& svc = body["services"]["svc"];
  EXPECT_EQ(svc["upstream"], "http://svc:80");
  EXPECT_EQ(svc["timeout_s"], 2.5);
  EXPECT_EQ(svc["max_attempts"], 2);
  EXPECT_EQ(svc["workers"], 2);
  EXPECT_EQ(svc["capacity"], 8);
  EXPECT_EQ(svc["gateway"]["requests"], 1);
  const auto& other = body["services"]["other"];
  EXPECT_EQ(other["workers"], 0) << "a service no broker knows shows zeros";
  EXPECT_EQ(other["queue_depth"], 0);
  EXPECT_EQ(body["gateway"], nlohmann::json::parse(R"({"requests":12,"in_flight":2,
      "connections":3,"bad_requests":4,"timeouts":5,"late_replies":6,"failovers":7})"));
}

TEST_F(AdminTest, MetricsRendersTheSnapshotAsPrometheusText) {
  auto s = state(true, {});
  s.gateway.timeouts = 9;
  const auto res = admin_response(get("/metrics"), s);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res[http::field::content_type], kMetricsContentType);
  // The process_* samples (RSS, CPU time) are read at each render, so they may differ between the
  // two renders; every other line is the snapshot's and must match exactly.
  const auto without_process_samples = [](const std::string& text) {
    std::string kept;
    std::size_t at = 0;
    while (at < text.size()) {
      const auto end = text.find('\n', at);
      const auto line = text.substr(at, end == std::string::npos ? std::string::npos : end - at + 1);
      if (!line.starts_with("process_")) kept += line;
      at = end == std::string::npos ? text.size() : end + 1;
    }
    return kept;
  };
  const std::string body = res.body();
  EXPECT_NE(body.find("\nprocess_resident_memory_bytes "), std::string::npos);
  EXPECT_EQ(without_process_samples(body),
            without_process_samples(metrics_.render(s.gateway, s.brokers)));
}

TEST_F(AdminTest, ServiceHistoryIsThisGatewaysWindowPerService) {
  auto s = state(true, {});
  s.now = std::chrono::system_clock::time_point(std::chrono::seconds(1796083200));
  service_stats_.record("svc", 503, 12, s.now);
  const auto res = admin_response(get("/services/history"), s);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res[http::field::cache_control], "no-store");
  const auto body = nlohmann::json::parse(res.body());
  EXPECT_EQ(body["scope"], "gateway");
  EXPECT_EQ(body["services"]["svc"]["requests"].back(), 1);
  EXPECT_EQ(body["services"]["svc"]["errors"].back(), 1);
  EXPECT_EQ(body["services"]["other"]["requests"].back(), 0);
}

TEST_F(AdminTest, DashboardIsUncachedHtml) {
  const auto res = admin_response(get("/dashboard"), state(false, {}));
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res[http::field::content_type], "text/html; charset=utf-8");
  EXPECT_EQ(res[http::field::cache_control], "no-cache");
  EXPECT_NE(res.body().find("<html"), std::string::npos);
  EXPECT_EQ(res[http::field::content_length], std::to_string(res.body().size()));
}

}  // namespace
}  // namespace courier::gateway
