// /metrics text: valid exposition format with the gateway's and the broker's series.
#include "gateway/metrics.hpp"

#include <gtest/gtest.h>

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

TEST(GatewayMetrics, TurnsBrokerStatsIntoPerServiceSeries) {
  GatewayMetrics m;
  const auto text = m.render({}, one_broker(kBrokerStats));
  const auto parsed = pt::parse(text);
  ASSERT_EQ(parsed.error, "") << text;
  EXPECT_EQ(parsed.value("courier_broker_workers", {{"service", "rule-engine"}}), 2);
  EXPECT_EQ(parsed.value("courier_broker_capacity", {{"service", "rule-engine"}}), 512);
  EXPECT_EQ(parsed.value("courier_broker_in_flight", {{"service", "rule-engine"}}), 3);
  EXPECT_EQ(parsed.value("courier_broker_queue_depth", {{"service", "rule-engine"}}), 4);
  EXPECT_EQ(parsed.value("courier_broker_workers", {{"service", "ai-gm"}}), 0);
  EXPECT_EQ(parsed.value("courier_broker_service_events_total",
                         {{"service", "rule-engine"}, {"event", "dispatched"}}),
            7);
  EXPECT_EQ(parsed.value("courier_broker_events_total", {{"event", "expired"}}), 1);
  EXPECT_EQ(parsed.value("courier_broker_gateways"), 2);
  EXPECT_EQ(parsed.value("courier_gateway_broker_connected"), 0);
  EXPECT_EQ(parsed.value("courier_broker_workers", {{"broker", "tcp://b1:5555"}}), 2);
  EXPECT_EQ(parsed.value("courier_gateway_broker_up", {{"broker", "tcp://b1:5555"}}), 1);
}

TEST(GatewayMetrics, EachBrokerHasItsOwnSeriesAndALostOneOnlyItsUpGauge) {
  GatewayMetrics m;
  const std::vector<BrokerStatus> brokers = {{"tcp://b1:5555", true, 0, parse_stats(kBrokerStats)},
                                             {"tcp://b2:5555", true, 0, parse_stats(kBrokerStats)},
                                             {"tcp://b3:5555", false, 0, nullptr}};
  const auto text = m.render({}, brokers);
  const auto parsed = pt::parse(text);
  ASSERT_EQ(parsed.error, "") << text;
  for (const char* b : {"tcp://b1:5555", "tcp://b2:5555"}) {
    EXPECT_EQ(parsed.value("courier_broker_events_total", {{"broker", b}, {"event", "requests"}}),
              10);
    EXPECT_EQ(parsed.value("courier_gateway_broker_up", {{"broker", b}}), 1);
  }
  EXPECT_EQ(parsed.value("courier_gateway_broker_up", {{"broker", "tcp://b3:5555"}}), 0);
  EXPECT_FALSE(parsed.value("courier_broker_workers", {{"broker", "tcp://b3:5555"}}));
}

TEST(GatewayMetrics, ExportsEachWorkersCircuitOnceAcrossBrokers) {
  const char* stats = R"({"broker_id": "b", "services": {"rule-engine": {"worker_list": [
    {"id": "w1", "status": {"circuit": "open", "circuit_failure_rate": 0.75,
                            "circuit_window_attempts": 12, "circuit_opened": 2,
                            "circuit_rejections": 40, "circuit_failures": 30}},
    {"id": "w2", "status": {"circuit": "closed", "circuit_failure_rate": 0.0}},
    {"id": "w3", "status": {"circuit": 5}},
    {"id": "w4", "status": "open"}]}}})";
  GatewayMetrics m;
  const std::vector<BrokerStatus> brokers = {{"tcp://b1:5555", true, 0, parse_stats(stats)},
                                             {"tcp://b2:5555", true, 0, parse_stats(stats)}};
  const auto text = m.render({}, brokers);
  const auto parsed = pt::parse(text);  // also rejects a series written twice
  ASSERT_EQ(parsed.error, "") << text;
  const std::map<std::string, std::string> w1 = {{"service", "rule-engine"}, {"worker", "w1"}};
  auto w1_state = [&](const char* state) {
    auto labels = w1;
    labels["state"] = state;
    return parsed.value("courier_worker_circuit_state", labels);
  };
  EXPECT_EQ(w1_state("open"), 1);
  EXPECT_EQ(w1_state("closed"), 0);
  EXPECT_EQ(w1_state("half-open"), 0);
  EXPECT_EQ(parsed.value("courier_worker_circuit_failure_rate", w1), 0.75);
  EXPECT_EQ(parsed.value("courier_worker_circuit_window_attempts", w1), 12);
  EXPECT_EQ(parsed.value("courier_worker_circuit_opened_total", w1), 2);
  EXPECT_EQ(parsed.value("courier_worker_circuit_rejections_total", w1), 40);
  EXPECT_EQ(parsed.value("courier_worker_circuit_failures_total", w1), 30);
  EXPECT_EQ(parsed.value("courier_worker_circuit_state", {{"worker", "w2"}, {"state", "closed"}}),
            1);
  EXPECT_FALSE(parsed.value("courier_worker_circuit_state", {{"worker", "w3"}}))
      << "a status of the wrong type adds nothing";
  EXPECT_FALSE(parsed.value("courier_worker_circuit_state", {{"worker", "w4"}}));
}

TEST(GatewayMetrics, MalformedOrMissingBrokerStatsAddNothing) {
  GatewayMetrics m;
  for (const char* text : {"", "not json", "[]", R"({"services": 3})"}) {
    const auto parsed = pt::parse(m.render({}, one_broker(text)));
    EXPECT_EQ(parsed.error, "") << text;
    EXPECT_FALSE(parsed.value("courier_broker_workers")) << text;
  }
}

TEST(GatewayMetrics, RenderingTwiceDoesNotDoubleBrokerCounters) {
  GatewayMetrics m;
  m.render({}, one_broker(kBrokerStats));
  const auto parsed = pt::parse(m.render({}, one_broker(kBrokerStats)));
  EXPECT_EQ(parsed.value("courier_broker_events_total", {{"event", "requests"}}), 10);
}

}  // namespace
}  // namespace courier::gateway
