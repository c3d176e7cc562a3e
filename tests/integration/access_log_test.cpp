// Access records and trace context with the real binaries (issue 15, items 1 and 2): JSON records
// with top-level fields at the gateway and the worker, query values kept out of every log, 499
// for a client that hung up, the switch and the probe filter, and traceparent continued or
// started on the way upstream.
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "common/trace_context.hpp"
#include "tests/integration/shared_topology.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr std::string_view kCallerTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr std::string_view kCallerTraceparent =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

// Every line of `log` parsed as JSON; a line that does not parse is a test failure.
std::vector<json> json_lines(const std::string& log) {
  std::vector<json> out;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      ADD_FAILURE() << "not a JSON object: " << line;
      continue;
    }
    out.push_back(std::move(j));
  }
  return out;
}

std::optional<json> access_record(const ChildProcess& p, std::string_view request_id) {
  for (auto& j : json_lines(p.log_text())) {
    if (j.value("event", "") == "access" && j.value("request_id", "") == request_id) return j;
  }
  return std::nullopt;
}

class AccessLogTest : public SharedTopologyTest<AccessLogTest> {
 public:
  static void configure(TopologyOptions& options) {
    options.env = {{"COURIER_LOG_FORMAT", "json"}};
  }

  static std::optional<json> wait_record(const ChildProcess& p, std::string_view request_id) {
    std::optional<json> found;
    wait_until([&] { return (found = access_record(p, request_id)).has_value(); }, 5s, 20ms);
    return found;
  }
  // Workers start in service order: ai-gm-1, then rule-engine-2.
  static ChildProcess& worker() { return *topology_->workers().back(); }
};

TEST_F(AccessLogTest, JsonRecordsCarryTopLevelFieldsAtGatewayAndWorker) {
  const auto r =
      topology_->get("/rule-engine/things", {{"X-Request-ID", "json-fields-1"},
                                             {"traceparent", std::string(kCallerTraceparent)},
                                             {"User-Agent", "access-test/1.0"}});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.status, 200u);
  const auto gw = wait_record(topology_->gateway(), "json-fields-1");
  ASSERT_TRUE(gw) << topology_->gateway().log_text();
  EXPECT_EQ((*gw)["component"], "gateway");
  EXPECT_EQ((*gw)["status"], 200);
  EXPECT_EQ((*gw)["service"], "rule-engine");
  EXPECT_EQ((*gw)["trace_id"], kCallerTrace);
  EXPECT_EQ((*gw)["method"], "GET");
  EXPECT_EQ((*gw)["path"], "/rule-engine/things");
  EXPECT_EQ((*gw)["code"], "");
  EXPECT_EQ((*gw)["attempts"], 1);
  EXPECT_EQ((*gw)["user_agent"], "access-test/1.0");
  EXPECT_EQ((*gw)["worker"], "rule-engine-2");
  EXPECT_TRUE((*gw).contains("upstream_ms")) << gw->dump();
  EXPECT_GT((*gw)["bytes_out"].get<int>(), 0);
  EXPECT_TRUE((*gw)["time"].get<std::string>().ends_with("Z"));

  const auto wk = wait_record(worker(), "json-fields-1");
  ASSERT_TRUE(wk) << worker().log_text();
  EXPECT_EQ((*wk)["component"], "worker");
  EXPECT_EQ((*wk)["status"], 200);
  EXPECT_EQ((*wk)["service"], "rule-engine");
  EXPECT_EQ((*wk)["trace_id"], kCallerTrace) << "the worker reads the traceparent it forwards";
  EXPECT_EQ((*wk)["path"], "/things");
  EXPECT_TRUE((*wk).contains("upstream_ms"));
  // Every line of every process is JSON (the broker's too).
  json_lines(topology_->broker().log_text());
}

TEST_F(AccessLogTest, QueryValuesNeverReachAnyLog) {
  const auto r = topology_->get("/rule-engine/search?token=SECRET123&page=2",
                                {{"X-Request-ID", "secret-query-1"}});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.status, 200u);
  ASSERT_EQ(upstream_->last_request()->target, "/search?token=SECRET123&page=2")
      << "the upstream still gets the query";
  const auto gw = wait_record(topology_->gateway(), "secret-query-1");
  ASSERT_TRUE(gw);
  EXPECT_EQ((*gw)["path"], "/rule-engine/search?token=&page=");
  ASSERT_TRUE(wait_record(worker(), "secret-query-1"));
  EXPECT_EQ(topology_->logs().find("SECRET123"), std::string::npos) << topology_->logs();
}

TEST_F(AccessLogTest, ClientThatHangsUpAt150MsIsLogged499) {
  upstream_->script("/slow", {Step::echo().after(3s)});
  TestHttpConnection client;
  ASSERT_FALSE(client.connect(port()));
  ASSERT_FALSE(client.send("GET", "/rule-engine/slow", {{"X-Request-ID", "hangs-up-1"}}));
  ASSERT_TRUE(upstream_->wait_for_hits("/slow", 1, 5s));
  // The scenario itself, not a wait for readiness: the caller gives up at 150 ms.
  std::this_thread::sleep_for(150ms);
  client.close();
  const auto gw = wait_record(topology_->gateway(), "hangs-up-1");
  ASSERT_TRUE(gw) << topology_->gateway().log_text();
  EXPECT_EQ((*gw)["status"], 499);
  EXPECT_EQ((*gw)["code"], "CLIENT_CLOSED_REQUEST");
  EXPECT_EQ((*gw)["bytes_out"], 0);
  const auto wk = wait_record(worker(), "hangs-up-1");
  ASSERT_TRUE(wk) << worker().log_text();
  EXPECT_EQ((*wk)["status"], 499);
  // ... and the metrics count it the same way.
  const auto metrics = topology_->admin("/metrics").body;
  bool counted = false;
  std::istringstream lines(metrics);
  for (std::string line; std::getline(lines, line);) {
    counted = counted || (line.starts_with("courier_gateway_requests_total{") &&
                          line.find("\"rule-engine\"") != std::string::npos &&
                          line.find("status=\"499\"") != std::string::npos);
  }
  EXPECT_TRUE(counted) << metrics;
}

TEST_F(AccessLogTest, ProbesAndScrapesAreNotLogged) {
  ASSERT_EQ(topology_->get("/healthz").status, 200u);
  ASSERT_EQ(topology_->get("/readyz").status, 200u);
  ASSERT_EQ(topology_->admin("/metrics").status, 200u);
  // Same connection order: a record after them proves theirs would have been written by now.
  ASSERT_EQ(topology_->admin("/services", {{"X-Request-ID", "after-probes"}}).status, 200u);
  ASSERT_EQ(topology_->get("/rule-engine/x", {{"X-Request-ID", "after-probes-2"}}).status, 200u);
  ASSERT_TRUE(wait_record(topology_->gateway(), "after-probes-2"));
  for (const auto& j : json_lines(topology_->gateway().log_text())) {
    if (j.value("event", "") != "access") continue;
    const auto path = j.value("path", "");
    EXPECT_TRUE(path != "/healthz" && path != "/readyz" && path != "/metrics") << j.dump();
  }
  bool services_logged = false;
  for (const auto& j : json_lines(topology_->gateway().log_text())) {
    services_logged = services_logged || j.value("path", "") == "/services";
  }
  EXPECT_TRUE(services_logged) << "other admin endpoints are still logged";
}

TEST_F(AccessLogTest, UpstreamGetsTheCallersTraceUnderANewSpanAndItsTracestate) {
  const auto r = topology_->get("/rule-engine/traced",
                                {{"traceparent", std::string(kCallerTraceparent)},
                                 {"tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"}});
  ASSERT_EQ(r.status, 200u);
  const auto seen = upstream_->last_request();
  ASSERT_TRUE(seen);
  const auto tp = trace::parse_traceparent(seen->header("traceparent").value_or(""));
  ASSERT_TRUE(tp) << seen->header("traceparent").value_or("(none)");
  EXPECT_EQ(tp->trace_id, kCallerTrace);
  EXPECT_NE(tp->parent_id, "00f067aa0ba902b7") << "the gateway's hop has its own span id";
  EXPECT_EQ(tp->flags, 1);
  EXPECT_EQ(seen->header("tracestate").value_or(""), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
}

TEST_F(AccessLogTest, UpstreamGetsAFreshTraceWhenNoneOrAnInvalidOneWasSent) {
  for (const HeaderList& sent :
       {HeaderList{{"X-Request-ID", "fresh-trace-1"}},
        HeaderList{{"X-Request-ID", "fresh-trace-2"},
                   {"traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"},
                   {"tracestate", "rojo=1"}}}) {
    const auto r = topology_->get("/rule-engine/untraced", sent);
    ASSERT_EQ(r.status, 200u);
    const auto seen = upstream_->last_request();
    ASSERT_TRUE(seen);
    const auto tp = trace::parse_traceparent(seen->header("traceparent").value_or(""));
    ASSERT_TRUE(tp) << seen->header("traceparent").value_or("(none)");
    EXPECT_NE(tp->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_FALSE(seen->header("tracestate")) << "an invalid traceparent takes its tracestate";
    const auto id = *find_header(sent, "X-Request-ID");
    const auto gw = wait_record(topology_->gateway(), id);
    ASSERT_TRUE(gw);
    EXPECT_EQ((*gw)["trace_id"], tp->trace_id) << "the logged trace is the one sent on";
  }
}

TEST(AccessLogSwitch, OffWritesNoAccessRecordButOtherLinesStay) {
  TestUpstream upstream;
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  options.env = {{"COURIER_ACCESS_LOG", "false"}};
  Topology topology(options);
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  ASSERT_EQ(topology.get("/rule-engine/a", {{"X-Request-ID", "switch-off-1"}}).status, 200u);
  ASSERT_EQ(topology.get("/nope/a").status, 404u);
  // Stopped, so that everything it would have written is in its log.
  ASSERT_FALSE(topology.gateway().signal(SIGTERM));
  ASSERT_TRUE(topology.gateway().wait_exit(10s));
  const auto log = topology.gateway().log_text();
  EXPECT_EQ(log.find(" access "), std::string::npos) << log;
  EXPECT_NE(log.find("gateway listening"), std::string::npos) << "info lines still come";
  // The worker's per-attempt line stays too; its access record does not.
  const auto worker_log = topology.workers().back()->log_text();
  EXPECT_NE(worker_log.find("upstream request_id=switch-off-1"), std::string::npos) << worker_log;
  EXPECT_EQ(worker_log.find(" access "), std::string::npos) << worker_log;
}

}  // namespace
}  // namespace courier::testing
