// /metrics text: valid exposition format with the gateway's and the broker's series.
#include "gateway/metrics.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "tests/unit/gateway/prometheus_text.hpp"

namespace courier::gateway {
namespace {

using namespace std::chrono_literals;
namespace pt = courier::testing::prometheus_text;

const char* kBrokerStats = R"({
  "broker_id": "b1", "gateways": 2,
  "counters": {"requests": 10, "replies": 9, "expired": 1},
  "services": {
    "rule-engine": {"workers": 2, "capacity": 512, "in_flight": 3, "queue_depth": 4,
                    "max_queue": 1024, "worker_list": [],
                    "counters": {"dispatched": 7, "rejected_overloaded": 1}},
    "ai-gm": {"workers": 0, "capacity": 0, "in_flight": 0, "queue_depth": 0, "max_queue": 8,
              "counters": {}}
  }})";

std::vector<BrokerStatus> one_broker(const char* stats) {
  return {{"tcp://b1:5555", true, 0, parse_stats(stats)}};
}

TEST(PrometheusTextReader, RejectsBrokenText) {
  EXPECT_FALSE(pt::parse("a 1\n").error.size());
  EXPECT_TRUE(pt::parse("a{b=\"1\" 1\n").error.size());
  EXPECT_TRUE(pt::parse("a one\n").error.size());
  EXPECT_TRUE(pt::parse("# TYPE a counter\na -1\n").error.size());
  EXPECT_TRUE(pt::parse("a 1\nb 1\na 2\n").error.size());
  EXPECT_TRUE(pt::parse("a 1").error.size());
}

TEST(GatewayMetrics, RendersValidTextWithRequestsAndLatency) {
  GatewayMetrics m;
  m.observe("rule-engine", 200, 3ms);
  m.observe("rule-engine", 200, 40ms);
  m.observe("rule-engine", 504, 2s);
  m.observe("none", 404, 0ms);
  GatewaySnapshot s;
  s.in_flight = 5;
  s.connections = 7;
  s.broker_connected = true;
  const auto text = m.render(s, {});
  const auto parsed = pt::parse(text);
  ASSERT_EQ(parsed.error, "") << text;
  EXPECT_EQ(parsed.types.at("courier_gateway_requests_total"), "counter");
  EXPECT_EQ(parsed.types.at("courier_gateway_request_duration_seconds"), "histogram");
  EXPECT_EQ(parsed.value("courier_gateway_requests_total",
                         {{"service", "rule-engine"}, {"status", "200"}}),
            2);
  EXPECT_EQ(parsed.value("courier_gateway_requests_total",
                         {{"service", "rule-engine"}, {"status", "504"}}),
            1);
  EXPECT_EQ(
      parsed.value("courier_gateway_request_duration_seconds_count", {{"service", "rule-engine"}}),
      3);
  EXPECT_EQ(parsed.value("courier_gateway_request_duration_seconds_bucket",
                         {{"service", "rule-engine"}, {"le", "0.05"}}),
            2);
  EXPECT_EQ(parsed.value("courier_gateway_in_flight"), 5);
  EXPECT_EQ(parsed.value("courier_gateway_connections"), 7);
  EXPECT_EQ(parsed.value("courier_gateway_broker_connected"), 1);
}

TEST(GatewayMetrics, CountsCancelledRequestsAndStreamsByOutcome) {
  GatewayMetrics m;
  m.cancelled("svc");
  m.stream_finished("svc", "complete");
  m.stream_finished("svc", "complete");
  m.stream_finished("svc", "truncated");
  GatewaySnapshot s;
  s.streams_open = 3;
  const auto text = m.render(s, {});
  const auto parsed = pt::parse(text);
  ASSERT_EQ(parsed.error, "") << text;
  EXPECT_EQ(parsed.value("courier_gateway_cancelled_total", {{"service", "svc"}}), 1);
  EXPECT_EQ(
      parsed.value("courier_gateway_streams_total", {{"service", "svc"}, {"outcome", "complete"}}),
      2);
  EXPECT_EQ(
      parsed.value("courier_gateway_streams_total", {{"service", "svc"}, {"outcome", "truncated"}}),
      1);
  EXPECT_EQ(parsed.value("courier_gateway_streams_open"), 3);
}

TEST(GatewayMetrics, LeavesBrokerAndWorkerSeriesToTheirOwnProcesses) {
  GatewayMetrics m;
  const auto text = m.render({}, one_broker(kBrokerStats));
  const auto parsed = pt::parse(text);
  ASSERT_EQ(parsed.error, "") << text;
  // Summed over gateways these would count each broker once per gateway.
  EXPECT_EQ(text.find("courier_broker_"), std::string::npos) << text;
  EXPECT_EQ(text.find("courier_worker_"), std::string::npos) << text;
  EXPECT_EQ(parsed.value("courier_gateway_broker_up", {{"broker", "tcp://b1:5555"}}), 1);
}

TEST(GatewayMetrics, ShowsBuildInfoAndProcessMetrics) {
  GatewayMetrics m;
  const auto parsed = pt::parse(m.render({}, {}));
  ASSERT_EQ(parsed.error, "");
  EXPECT_EQ(parsed.value("courier_build_info", {{"component", "gateway"}}), 1);
  EXPECT_GT(parsed.value("process_resident_memory_bytes").value_or(0), 0);
  EXPECT_GT(parsed.value("process_open_fds").value_or(0), 0);
  EXPECT_GT(parsed.value("process_start_time_seconds").value_or(0), 1.6e9);
}

TEST(GatewayMetrics, CountsEveryTimeoutCodeAsATimeoutAndKeepsTheCodeLabel) {
  GatewayMetrics m;
  m.observe("ai-gm", 504, "AI_GM_TIMEOUT", 90s);  // the worker's upstream timed out
  m.observe("ai-gm", 504, "AI_GM_TIMEOUT", 1s);   // the gateway's own deadline
  m.observe("ai-gm", 504, "", 1s);                // the upstream's own 504: not Courier's
  m.observe("ai-gm", 503, "AI_GM_UNAVAILABLE", 1ms);
  const auto parsed = pt::parse(m.render({}, {}));
  ASSERT_EQ(parsed.error, "");
  EXPECT_EQ(parsed.value("courier_gateway_timeouts_total", {{"service", "ai-gm"}}), 2);
  EXPECT_EQ(parsed.value("courier_gateway_requests_total",
                         {{"service", "ai-gm"}, {"status", "504"}, {"code", "AI_GM_TIMEOUT"}}),
            2);
  EXPECT_EQ(parsed.value("courier_gateway_requests_total",
                         {{"service", "ai-gm"}, {"status", "503"}, {"code", "AI_GM_UNAVAILABLE"}}),
            1);
}

TEST(GatewayMetrics, LatencyBucketsReachTheLongestConfiguredTimeout) {
  Settings settings;
  ServiceConfig slow;
  slow.name = "ai-gm";
  slow.timeout = 90s;
  settings.services["ai-gm"] = slow;
  const auto buckets = gateway_latency_buckets(settings, 250ms);
  ASSERT_FALSE(buckets.empty());
  EXPECT_GE(buckets.back(), 90.25);
  EXPECT_TRUE(std::is_sorted(buckets.begin(), buckets.end()));
  GatewayMetrics m(buckets);
  m.observe("ai-gm", 504, "AI_GM_TIMEOUT", 90s);
  const auto parsed = pt::parse(m.render({}, {}));
  ASSERT_EQ(parsed.error, "");
  EXPECT_EQ(parsed.value("courier_gateway_request_duration_seconds_bucket",
                         {{"service", "ai-gm"}, {"le", "91"}}),
            1);
  EXPECT_EQ(parsed.value("courier_gateway_request_duration_seconds_bucket",
                         {{"service", "ai-gm"}, {"le", "60"}}),
            0);
}

TEST(CourierErrorCode, ReadsOnlyCataloguedCodesOfCourierErrorBodies) {
  Settings settings;
  ServiceConfig svc;
  svc.name = "ai-gm";
  settings.services["ai-gm"] = svc;
  const auto response = [](unsigned status, std::string body) {
    HttpResponse res{static_cast<http::status>(status), 11};
    res.set(http::field::content_type, "application/json");
    res.body() = std::move(body);
    return res;
  };
  EXPECT_EQ(
      courier_error_code(
          response(504, R"({"status":"error","code":"AI_GM_TIMEOUT","message":"m"})"), settings),
      "AI_GM_TIMEOUT");
  EXPECT_EQ(
      courier_error_code(response(502, R"({"status":"error","code":"WORKER_LOST"})"), settings),
      "WORKER_LOST");
  // An upstream's look-alike with a code of its own adds no label value.
  EXPECT_EQ(courier_error_code(response(500, R"({"status":"error","code":"X123"})"), settings), "");
  EXPECT_EQ(courier_error_code(response(504, "not json"), settings), "");
  EXPECT_EQ(
      courier_error_code(response(200, R"({"status":"error","code":"WORKER_LOST"})"), settings),
      "");
}

}  // namespace
}  // namespace courier::gateway
