#include "demo/demo_upstream.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/support/net.hpp"

namespace courier::demo {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace ct = courier::testing;

const HandlerContext kContext{7, 0x1234'5678'9abc'def0ULL, std::chrono::system_clock::time_point{}};

json body_of(const Response& response) { return json::parse(response.body); }

TEST(DemoHandle, RuleEngineHealthReportsOk) {
  const auto response = handle(Role::kRuleEngine, {"GET", "/health", ""}, kContext);
  EXPECT_EQ(response.status, 200u);
  EXPECT_EQ(body_of(response)["status"], "ok");
  EXPECT_EQ(body_of(response)["service"], "rule-engine");
}

TEST(DemoHandle, SessionAddEchoesPostedFieldsAndAddsASessionId) {
  const auto response = handle(
      Role::kRuleEngine, {"POST", "/session/add", R"({"player_id":"p1","level":3})"}, kContext);
  ASSERT_EQ(response.status, 200u);
  const auto body = body_of(response);
  EXPECT_EQ(body["status"], "success");
  EXPECT_EQ(body["message"], "Session created");
  EXPECT_EQ(body["data"]["player_id"], "p1");
  EXPECT_EQ(body["data"]["level"], 3);
  EXPECT_EQ(body["data"]["session_id"], "sess-123456789abcdef0");
}

TEST(DemoHandle, SessionAddToleratesABodyThatIsNotJson) {
  const auto response = handle(Role::kRuleEngine, {"POST", "/session/add", "not json"}, kContext);
  EXPECT_EQ(response.status, 200u);
  EXPECT_TRUE(body_of(response)["data"].contains("session_id"));
}

TEST(DemoHandle, PlayScenarioWrapsTheRunInTheSuccessEnvelope) {
  const auto response =
      handle(Role::kRuleEngine,
             {"POST", "/play/scenario?trace=1", R"({"scenario_id":"siege","session_id":"sess-1"})"},
             kContext);
  ASSERT_EQ(response.status, 200u);
  const auto body = body_of(response);
  EXPECT_EQ(body["status"], "success");
  EXPECT_EQ(body["data"]["scenario_id"], "siege");
  EXPECT_EQ(body["data"]["session_id"], "sess-1");
  EXPECT_EQ(body["data"]["state"], "running");
  EXPECT_EQ(body["data"]["triggered_rules"].size(), 2u);
}

TEST(DemoHandle, UnknownPathGets404InTheEnvelope) {
  const auto response = handle(Role::kRuleEngine, {"GET", "/nope", ""}, kContext);
  EXPECT_EQ(response.status, 404u);
  EXPECT_EQ(body_of(response)["status"], "error");
  EXPECT_TRUE(body_of(response)["data"].is_null());
}

TEST(DemoHandle, WrongMethodGets405WithAllow) {
  const auto response = handle(Role::kRuleEngine, {"GET", "/session/add", ""}, kContext);
  EXPECT_EQ(response.status, 405u);
  bool has_allow = false;
  for (const auto& [name, value] : response.headers)
    has_allow |= name == "Allow" && value == "POST";
  EXPECT_TRUE(has_allow);
}

TEST(DemoHandle, HeadIsRoutedLikeGet) {
  EXPECT_EQ(handle(Role::kAiGm, {"HEAD", "/health", ""}, kContext).status, 200u);
}

TEST(DemoHandle, AiGmTurnNarratesAndAdvancesThePostedTurn) {
  const auto response =
      handle(Role::kAiGm, {"POST", "/api/v1/game/turn", R"({"turn":4,"action":"open the door"})"},
             kContext);
  ASSERT_EQ(response.status, 200u);
  const auto body = body_of(response);
  EXPECT_EQ(body["turn"], 5);
  EXPECT_EQ(body["narration"].get<std::string>().rfind("You open the door. ", 0), 0u);
  EXPECT_FALSE(body["actions"].empty());
  EXPECT_EQ(body_of(handle(Role::kAiGm, {"POST", "/api/v1/game/turn", ""}, kContext))["turn"], 7);
}

TEST(DemoHandle, RolesDoNotShareRoutes) {
  EXPECT_EQ(handle(Role::kAiGm, {"POST", "/session/add", "{}"}, kContext).status, 404u);
  EXPECT_EQ(handle(Role::kRuleEngine, {"POST", "/api/v1/game/turn", "{}"}, kContext).status, 404u);
}

TEST(DemoHandle, SameContextGivesTheSameAnswer) {
  const Request request{"POST", "/api/v1/game/turn", "{}"};
  EXPECT_EQ(handle(Role::kAiGm, request, kContext).body,
            handle(Role::kAiGm, request, kContext).body);
}

TEST(DemoHandle, InjectedErrorUsesTheRoleShape) {
  const auto response = injected_error(Role::kRuleEngine, 503);
  EXPECT_EQ(response.status, 503u);
  EXPECT_EQ(body_of(response)["status"], "error");
  EXPECT_TRUE(is_health_check({"GET", "/health?probe=1", ""}));
  EXPECT_FALSE(is_health_check({"POST", "/health", ""}));
}

TEST(DemoOptions, ParsesLatencyDistributions) {
  const auto uniform = parse_latency_distribution("uniform:10:20");
  ASSERT_TRUE(uniform);
  EXPECT_EQ(uniform->kind, LatencyDistribution::Kind::kUniform);
  EXPECT_EQ(uniform->second, 20);
  EXPECT_EQ(parse_latency_distribution("normal:100:15.5")->second, 15.5);
  EXPECT_EQ(parse_latency_distribution("")->kind, LatencyDistribution::Kind::kNone);
  for (const char* bad : {"uniform:20:10", "normal:-1:3", "uniform:1", "poisson:1:2", "uniform:a:2",
                          "uniform:1:2:3"}) {
    EXPECT_FALSE(parse_latency_distribution(bad)) << bad;
  }
}

TEST(DemoOptions, ParsesListenAddresses) {
  const auto v4 = parse_listen("0.0.0.0:8031");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->host, "0.0.0.0");
  EXPECT_EQ(v4->port, 8031);
  EXPECT_EQ(parse_listen("[::1]:0")->host, "::1");
  for (const char* bad : {"8031", ":8031", "localhost:80", "1.2.3.4:70000", "::1:80", "1.2.3.4:"}) {
    EXPECT_FALSE(parse_listen(bad)) << bad;
  }
}

TEST(DemoFaults, RatesOfZeroAndOneAreAbsolute) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(decide_fate({0, 503, 0}, rng), Fate::kRespond);
    EXPECT_EQ(decide_fate({1, 503, 0}, rng), Fate::kError);
    EXPECT_EQ(decide_fate({0, 503, 1}, rng), Fate::kDrop);
  }
}

TEST(DemoFaults, RatesAreHonouredOverManyRequests) {
  std::mt19937_64 rng(42);
  int errors = 0;
  int drops = 0;
  constexpr int kDraws = 20'000;
  for (int i = 0; i < kDraws; ++i) {
    const Fate fate = decide_fate({0.2, 503, 0.1}, rng);
    errors += fate == Fate::kError;
    drops += fate == Fate::kDrop;
  }
  EXPECT_NEAR(errors / double(kDraws), 0.2, 0.02);
  EXPECT_NEAR(drops / double(kDraws), 0.1, 0.02);
}

TEST(DemoLatency, SamplesStayWithinTheirDistribution) {
  std::mt19937_64 rng(3);
  const auto uniform = *parse_latency_distribution("uniform:10:20");
  const auto normal = *parse_latency_distribution("normal:5:50");
  for (int i = 0; i < 1000; ++i) {
    const auto sample = sample_latency(100ms, uniform, rng);
    EXPECT_GE(sample, 110ms);
    EXPECT_LE(sample, 120ms);
    EXPECT_GE(sample_latency(0ms, normal, rng), 0ms);
  }
  EXPECT_EQ(sample_latency(250ms, {}, rng), 250ms);
}

// A DemoServer on 127.0.0.1:0 with its io_context on a thread; stop() drains and joins.
class RunningServer {
 public:
  explicit RunningServer(Config config) : server_(io_, with_port_zero(std::move(config))) {
    server_.start();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~RunningServer() { stop(); }

  void stop() {
    if (!thread_.joinable()) return;
    server_.stop([this] { drained_ = true; });
    thread_.join();  // returns once every connection is gone: the io_context runs out of work
  }

  DemoServer& server() { return server_; }
  std::uint16_t port() { return server_.port(); }
  bool drained() const { return drained_; }

 private:
  static Config with_port_zero(Config config) {
    config.listen = {"127.0.0.1", 0};
    return config;
  }
  asio::io_context io_;
  DemoServer server_;
  std::thread thread_;
  std::atomic<bool> drained_{false};
};

TEST(DemoServer, ServesKeepAliveRequests) {
  RunningServer running(Config{.role = Role::kAiGm});
  ct::TestHttpConnection connection;
  ASSERT_FALSE(connection.connect(running.port()));
  for (int i = 0; i < 3; ++i) {
    const auto result = connection.request("POST", "/api/v1/game/turn", {}, R"({"turn":1})");
    ASSERT_TRUE(result.ok()) << result.error.message();
    EXPECT_EQ(result.status, 200u);
    EXPECT_TRUE(result.keep_alive);
    EXPECT_EQ(json::parse(result.body)["turn"], 2);
  }
  const auto head = connection.request("HEAD", "/health");
  EXPECT_EQ(head.status, 200u);
  EXPECT_TRUE(head.body.empty());
  EXPECT_EQ(connection.request("GET", "/health").status, 200u);
  EXPECT_EQ(running.server().requests_served(), 5u);
}

TEST(DemoServer, DropRateOneClosesWithoutAResponseButHealthStillAnswers) {
  RunningServer running(Config{.faults = {0, 503, 1.0}});
  EXPECT_EQ(ct::http_request(running.port(), "POST", "/session/add", {}, "{}").error,
            ct::ClientError::kClosed);
  EXPECT_EQ(ct::http_request(running.port(), "GET", "/health").status, 200u);
}

TEST(DemoServer, ErrorRateOneAnswersWithTheErrorStatus) {
  RunningServer running(Config{.faults = {1.0, 502, 0}});
  const auto result = ct::http_request(running.port(), "POST", "/play/scenario", {}, "{}");
  EXPECT_EQ(result.status, 502u);
  EXPECT_EQ(json::parse(result.body)["status"], "error");
}

TEST(DemoServer, MalformedRequestGets400AndClose) {
  RunningServer running(Config{});
  const auto raw =
      ct::raw_exchange(running.port(), "POST /session/add HTTP/1.1\r\nContent-Length: x\r\n\r\n");
  EXPECT_TRUE(raw.peer_closed);
  EXPECT_EQ(raw.data.rfind("HTTP/1.1 400", 0), 0u) << raw.data;
}

TEST(DemoServer, StopFinishesInFlightRequestsAndClosesIdleConnections) {
  RunningServer running(Config{.latency = 300ms});
  ct::TestHttpConnection idle;
  ASSERT_FALSE(idle.connect(running.port()));
  ct::TestHttpConnection busy;
  ASSERT_FALSE(busy.connect(running.port()));
  ASSERT_FALSE(busy.send("POST", "/session/add", {}, "{}"));
  ASSERT_TRUE(ct::wait_until([&] { return running.server().requests_in_flight() == 1; }, 5s));
  ASSERT_TRUE(ct::wait_until([&] { return running.server().active_connections() == 2; }, 5s));

  std::thread stopper([&] { running.stop(); });
  const auto result = busy.receive(5s);
  EXPECT_TRUE(result.ok()) << result.error.message();
  EXPECT_EQ(result.status, 200u);
  EXPECT_FALSE(result.keep_alive);  // told not to come back
  EXPECT_TRUE(idle.read_until_close(5s).peer_closed);
  stopper.join();
  EXPECT_TRUE(running.drained());
  EXPECT_EQ(ct::http_request(running.port(), "GET", "/health", {}, {}, 1s).error,
            ct::ClientError::kConnectFailed);
}

}  // namespace
}  // namespace courier::demo
