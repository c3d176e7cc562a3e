#include "demo/demo_upstream.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>

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

// The complete response a route answered with (fails the test on a stream).
Response respond(Role role, const Request& request, const HandlerContext& context = kContext) {
  Answer answer = handle(role, request, context);
  EXPECT_TRUE(std::holds_alternative<Response>(answer)) << request.target;
  if (auto* response = std::get_if<Response>(&answer)) return std::move(*response);
  return {};
}

StreamPlan plan_of(Role role, const Request& request, const HandlerContext& context = kContext) {
  Answer answer = handle(role, request, context);
  EXPECT_TRUE(std::holds_alternative<StreamPlan>(answer)) << request.target;
  if (auto* plan = std::get_if<StreamPlan>(&answer)) return std::move(*plan);
  return {};
}

std::vector<std::string> pieces_of(const StreamPlan& plan) {
  std::vector<std::string> pieces;
  std::string piece;
  for (std::uint64_t i = 0; i < plan.pieces(); ++i) {
    plan.piece(i, piece);
    pieces.push_back(piece);
  }
  return pieces;
}

TEST(DemoHandle, RuleEngineHealthReportsOk) {
  const auto response = respond(Role::kRuleEngine, {"GET", "/health", ""}, kContext);
  EXPECT_EQ(response.status, 200u);
  EXPECT_EQ(body_of(response)["status"], "ok");
  EXPECT_EQ(body_of(response)["service"], "rule-engine");
}

TEST(DemoHandle, SessionAddEchoesPostedFieldsAndAddsASessionId) {
  const auto response = respond(
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
  const auto response = respond(Role::kRuleEngine, {"POST", "/session/add", "not json"}, kContext);
  EXPECT_EQ(response.status, 200u);
  EXPECT_TRUE(body_of(response)["data"].contains("session_id"));
}

TEST(DemoHandle, PlayScenarioWrapsTheRunInTheSuccessEnvelope) {
  const auto response = respond(
      Role::kRuleEngine,
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

TEST(DemoHandle, SessionListPagesTheSameSessionsOfAUserEveryTime) {
  const Request first_page{"GET", "/session/list?user_id=4&skip=0&limit=3&is_deleted=false", ""};
  const auto response = respond(Role::kRuleEngine, first_page);
  ASSERT_EQ(response.status, 200u);
  const auto body = body_of(response);
  EXPECT_EQ(body["status"], "success");
  EXPECT_EQ(body["data"]["total"], 3 + 4 % 7);
  ASSERT_EQ(body["data"]["sessions"].size(), 3u);
  EXPECT_EQ(body["data"]["sessions"][0]["user_id"], 4);
  EXPECT_EQ(body["data"]["sessions"][0]["is_deleted"], false);
  const auto rest =
      body_of(respond(Role::kRuleEngine, {"GET", "/session/list?user_id=4&skip=3&limit=10", ""}));
  ASSERT_EQ(rest["data"]["sessions"].size(), 4u);  // 7 in all
  EXPECT_NE(rest["data"]["sessions"][0]["session_id"], body["data"]["sessions"][0]["session_id"]);
  // Another context (time, entropy) lists the same sessions.
  const HandlerContext later{99, 42, std::chrono::system_clock::now()};
  EXPECT_EQ(
      body_of(respond(Role::kRuleEngine, first_page, later))["data"]["sessions"][2]["session_id"],
      body["data"]["sessions"][2]["session_id"]);
}

TEST(DemoHandle, SessionListRefusesAMissingOrMalformedParameterWith422) {
  for (const char* bad :
       {"/session/list", "/session/list?user_id=", "/session/list?user_id=x",
        "/session/list?user_id=1&limit=0", "/session/list?user_id=1&limit=101",
        "/session/list?user_id=1&skip=-1", "/session/list?user_id=1&is_deleted=maybe"}) {
    const auto response = respond(Role::kRuleEngine, {"GET", bad, ""});
    EXPECT_EQ(response.status, 422u) << bad;
    EXPECT_EQ(body_of(response)["status"], "error") << bad;
  }
  EXPECT_EQ(respond(Role::kRuleEngine, {"POST", "/session/list?user_id=1", ""}).status, 405u);
}

TEST(DemoHandle, ThinkMsDelaysTheAnswerOfTheRoutesThatAnswerAtOnce) {
  const std::vector<std::pair<Role, Request>> routes = {
      {Role::kRuleEngine, {"POST", "/session/add?think_ms=250", "{}"}},
      {Role::kRuleEngine, {"GET", "/session/list?user_id=1&think_ms=250", ""}},
      {Role::kRuleEngine, {"POST", "/play/scenario?think_ms=250", "{}"}},
      {Role::kAiGm, {"POST", "/api/v1/game/turn?think_ms=250", "{}"}},
  };
  for (const auto& [role, request] : routes) {
    const auto response = respond(role, request);
    EXPECT_EQ(response.status, 200u) << request.target;
    EXPECT_EQ(response.delay, 250ms) << request.target;
    Request plain = request;
    plain.target = plain.target.substr(0, plain.target.find("think_ms")) + "think_ms=0";
    EXPECT_EQ(respond(role, plain).delay, 0ms) << plain.target;
    Request endless = request;
    endless.target = endless.target.substr(0, endless.target.find("think_ms")) + "think_ms=60001";
    EXPECT_EQ(respond(role, endless).status, 400u) << endless.target;
  }
  EXPECT_EQ(respond(Role::kRuleEngine, {"POST", "/session/add", "{}"}).delay, 0ms);
}

TEST(DemoHandle, UnknownPathGets404InTheEnvelope) {
  const auto response = respond(Role::kRuleEngine, {"GET", "/nope", ""}, kContext);
  EXPECT_EQ(response.status, 404u);
  EXPECT_EQ(body_of(response)["status"], "error");
  EXPECT_TRUE(body_of(response)["data"].is_null());
}

TEST(DemoHandle, WrongMethodGets405WithAllow) {
  const auto response = respond(Role::kRuleEngine, {"GET", "/session/add", ""}, kContext);
  EXPECT_EQ(response.status, 405u);
  bool has_allow = false;
  for (const auto& [name, value] : response.headers)
    has_allow |= name == "Allow" && value == "POST";
  EXPECT_TRUE(has_allow);
}

TEST(DemoHandle, HeadIsRoutedLikeGet) {
  EXPECT_EQ(respond(Role::kAiGm, {"HEAD", "/health", ""}, kContext).status, 200u);
}

TEST(DemoHandle, AiGmTurnNarratesAndAdvancesThePostedTurn) {
  const auto response =
      respond(Role::kAiGm, {"POST", "/api/v1/game/turn", R"({"turn":4,"action":"open the door"})"},
              kContext);
  ASSERT_EQ(response.status, 200u);
  const auto body = body_of(response);
  EXPECT_EQ(body["turn"], 5);
  EXPECT_EQ(body["narration"].get<std::string>().rfind("You open the door. ", 0), 0u);
  EXPECT_FALSE(body["actions"].empty());
  EXPECT_EQ(body_of(respond(Role::kAiGm, {"POST", "/api/v1/game/turn", ""}, kContext))["turn"], 7);
}

TEST(DemoHandle, RolesDoNotShareRoutes) {
  EXPECT_EQ(respond(Role::kAiGm, {"POST", "/session/add", "{}"}, kContext).status, 404u);
  EXPECT_EQ(respond(Role::kRuleEngine, {"POST", "/api/v1/game/turn", "{}"}, kContext).status, 404u);
}

TEST(DemoHandle, SameContextGivesTheSameAnswer) {
  const Request request{"POST", "/api/v1/game/turn", "{}"};
  EXPECT_EQ(respond(Role::kAiGm, request, kContext).body,
            respond(Role::kAiGm, request, kContext).body);
}

TEST(DemoHandle, InjectedErrorUsesTheRoleShape) {
  const auto response = injected_error(Role::kRuleEngine, 503);
  EXPECT_EQ(response.status, 503u);
  EXPECT_EQ(body_of(response)["status"], "error");
  EXPECT_TRUE(is_health_check({"GET", "/health?probe=1", ""}));
  EXPECT_FALSE(is_health_check({"POST", "/health", ""}));
}

TEST(DemoStreamParams, ParsesKnownKeysAndIgnoresOthers) {
  std::string error;
  const auto params = parse_stream_params("think_ms=0&x=y&interval_ms=7&chars=12&chunk=3&flag", {},
                                          "chars", kMaxPieces, error);
  ASSERT_TRUE(params) << error;
  EXPECT_EQ(params->think, 0ms);
  EXPECT_EQ(params->interval, 7ms);
  EXPECT_EQ(params->count, 12u);
  EXPECT_EQ(params->chunk, 3u);
  const auto defaults = parse_stream_params("", {}, "chars", kMaxPieces, error);
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->think, 1500ms);
  EXPECT_EQ(defaults->interval, 50ms);
  EXPECT_EQ(defaults->count, 0u);
}

TEST(DemoStreamParams, RejectsValuesOutsideTheirCapsNamingTheKey) {
  for (const char* bad : {"think_ms=60001", "interval_ms=10001", "chars=0", "chars=100001",
                          "chunk=0", "chunk=1048577", "think_ms=", "think_ms=-1", "think_ms=1e3",
                          "interval_ms=99999999999999999999", "chars=5x"}) {
    std::string error;
    EXPECT_FALSE(parse_stream_params(bad, {}, "chars", kMaxPieces, error)) << bad;
    const std::string_view key = std::string_view(bad).substr(0, std::string_view(bad).find('='));
    EXPECT_EQ(error.rfind(key, 0), 0u) << error;
  }
  std::string error;
  EXPECT_TRUE(parse_stream_params("think_ms=60000&interval_ms=10000&chars=100000", {}, "chars",
                                  kMaxPieces, error));
  // A count key the route does not take is just an unknown key.
  EXPECT_TRUE(parse_stream_params("chars=0", {}, "tokens", kMaxPieces, error));
}

TEST(DemoStream, RiddleTrickesOneCharacterPerPieceAfterTheThinkTime) {
  const auto plan = plan_of(Role::kRuleEngine, {"GET", "/play/riddle/12345", ""});
  EXPECT_EQ(plan.kind, StreamPlan::Kind::kCharacters);
  EXPECT_EQ(plan.status, 200u);
  EXPECT_EQ(plan.think, 1500ms);
  EXPECT_EQ(plan.interval, 50ms);
  bool event_stream = false;
  for (const auto& [name, value] : plan.headers)
    event_stream |= name == "Content-Type" && value.rfind("text/event-stream", 0) == 0;
  EXPECT_TRUE(event_stream);
  std::string text;
  for (const auto& piece : pieces_of(plan)) {
    EXPECT_EQ(piece.size(), 1u) << piece;
    text += piece;
  }
  EXPECT_EQ(text, plan.text);
  EXPECT_EQ(text.rfind("data:", 0), std::string::npos);  // unframed, as the Rule Engine sends it
}

TEST(DemoStream, MultiByteCharactersAreNeverSplit) {
  // Entropy 2 picks the Korean riddle.
  const HandlerContext korean{1, 2, {}};
  const auto plan = plan_of(Role::kRuleEngine, {"GET", "/play/riddle/1", ""}, korean);
  std::string text;
  bool multibyte = false;
  for (const auto& piece : pieces_of(plan)) {
    const auto lead = static_cast<unsigned char>(piece[0]);
    EXPECT_NE(lead & 0xC0, 0x80u) << "piece starts inside a character";
    const std::size_t expected = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    EXPECT_EQ(piece.size(), expected);
    multibyte |= piece.size() > 1;
    text += piece;
  }
  EXPECT_TRUE(multibyte);
  EXPECT_EQ(text, plan.text);
}

TEST(DemoStream, QueryTunesTheQuizAndCharsCyclesTheText) {
  const auto plan =
      plan_of(Role::kRuleEngine, {"GET", "/play/quiz/u-1?think_ms=0&interval_ms=5&chars=500", ""});
  EXPECT_EQ(plan.think, 0ms);
  EXPECT_EQ(plan.interval, 5ms);
  EXPECT_EQ(plan.pieces(), 500u);
  const auto all = pieces_of(plan);
  std::string first_pass;
  for (std::size_t i = 0; i + 1 < plan.cuts.size(); ++i) first_pass += all[i];
  EXPECT_EQ(first_pass, plan.text);
}

TEST(DemoStream, BadUserIdOrEndlessStreamIsRefused) {
  EXPECT_EQ(respond(Role::kRuleEngine, {"GET", "/play/riddle/a%20b", ""}).status, 422u);
  EXPECT_EQ(respond(Role::kRuleEngine, {"GET", "/play/riddle/" + std::string(65, 'x'), ""}).status,
            422u);
  const auto endless =
      respond(Role::kRuleEngine, {"GET", "/play/riddle/1?chars=100000&interval_ms=10000", ""});
  EXPECT_EQ(endless.status, 400u);
  EXPECT_EQ(body_of(endless)["status"], "error");
  EXPECT_EQ(respond(Role::kRuleEngine, {"GET", "/play/riddle/1?think_ms=999999", ""}).status, 400u);
  EXPECT_EQ(respond(Role::kRuleEngine, {"GET", "/play/riddle/", ""}).status, 404u);
  EXPECT_EQ(respond(Role::kRuleEngine, {"GET", "/play/riddle/1/2", ""}).status, 404u);
  EXPECT_EQ(respond(Role::kRuleEngine, {"POST", "/play/riddle/1", ""}).status, 405u);
}

TEST(DemoStream, ChatCompletionStreamsOneSseEventPerTokenThenDone) {
  const auto plan = plan_of(Role::kAiGm, {"POST", "/v1/chat/completions?tokens=40&think_ms=10",
                                          R"({"model":"gm-large","stream":true,"messages":[]})"});
  EXPECT_EQ(plan.kind, StreamPlan::Kind::kChatChunks);
  EXPECT_EQ(plan.think, 10ms);
  ASSERT_EQ(plan.pieces(), 41u);
  const auto pieces = pieces_of(plan);
  std::string content;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const std::string& piece = pieces[i];
    ASSERT_EQ(piece.rfind("data: ", 0), 0u) << piece;
    const auto end = piece.find("\n\n");
    ASSERT_NE(end, std::string::npos);
    const json event = json::parse(piece.substr(6, end - 6));
    EXPECT_EQ(event["object"], "chat.completion.chunk");
    EXPECT_EQ(event["model"], "gm-large");
    EXPECT_EQ(event["id"], "chatcmpl-123456789abcdef0");
    const json& choice = event["choices"][0];
    if (i + 1 < pieces.size()) {
      EXPECT_TRUE(choice["finish_reason"].is_null());
      EXPECT_EQ(choice["delta"].contains("role"), i == 0);
      content += choice["delta"]["content"].get<std::string>();
      EXPECT_EQ(end + 2, piece.size());
    } else {
      EXPECT_EQ(choice["finish_reason"], "stop");
      EXPECT_EQ(piece.substr(end + 2), "data: [DONE]\n\n");
    }
  }
  EXPECT_EQ(content.rfind(std::string(plan.text), 0), 0u);  // 40 tokens: more than one pass
}

TEST(DemoStream, ChatCompletionWithoutStreamAnswersOnceAfterTheGenerationTime) {
  const auto response =
      respond(Role::kAiGm, {"POST", "/v1/chat/completions?think_ms=100&interval_ms=20&tokens=10",
                            R"({"model":")" + std::string(100, 'm') + R"(","messages":[]})"});
  ASSERT_EQ(response.status, 200u);
  EXPECT_EQ(response.delay, 100ms + 10 * 20ms);
  const auto body = body_of(response);
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["model"], "courier-demo-llm");  // an overlong model name is not echoed
  EXPECT_EQ(body["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(body["usage"]["completion_tokens"], 10);
  const auto capped = respond(Role::kAiGm, {"POST", "/v1/chat/completions", R"({"max_tokens":3})"});
  EXPECT_EQ(body_of(capped)["usage"]["completion_tokens"], 3);
  const auto bad = respond(Role::kAiGm, {"POST", "/v1/chat/completions?tokens=0", "{}"});
  EXPECT_EQ(bad.status, 400u);
  EXPECT_EQ(body_of(bad)["error"]["type"], "invalid_request_error");
}

TEST(DemoStream, BytesRouteCutsTheCountIntoChunks) {
  const auto plan = plan_of(Role::kRuleEngine, {"GET", "/bytes/100000?chunk=30000", ""});
  EXPECT_EQ(plan.kind, StreamPlan::Kind::kBytes);
  EXPECT_EQ(plan.think, 0ms);
  EXPECT_EQ(plan.interval, 0ms);
  const auto pieces = pieces_of(plan);
  ASSERT_EQ(pieces.size(), 4u);
  EXPECT_EQ(pieces[0].size(), 30000u);
  EXPECT_EQ(pieces[3].size(), 10000u);
  const std::string all = pieces[0] + pieces[1] + pieces[2] + pieces[3];
  EXPECT_EQ(all.substr(0, 3), "abc");
  EXPECT_EQ(all.substr(37, 3), "abc");  // the pattern continues across chunks
  EXPECT_EQ(all.substr(30000 - 1, 2), all.substr((30000 - 1) % 37, 2));
  EXPECT_EQ(plan_of(Role::kAiGm, {"GET", "/bytes/0", ""}).pieces(), 0u);
  EXPECT_EQ(plan_of(Role::kAiGm, {"GET", "/bytes/65536", ""}).pieces(), 1u);
  for (const char* bad : {"/bytes/x", "/bytes/-1", "/bytes/17179869185", "/bytes/10?chunk=0",
                          "/bytes/10?chunk=2000000", "/bytes/100000000?chunk=1&interval_ms=10"}) {
    EXPECT_EQ(respond(Role::kRuleEngine, {"GET", bad, ""}).status, 400u) << bad;
  }
}

TEST(DemoStream, StreamingRoutesBelongToTheirRole) {
  EXPECT_EQ(respond(Role::kAiGm, {"GET", "/play/riddle/1", ""}).status, 404u);
  EXPECT_EQ(respond(Role::kRuleEngine, {"POST", "/v1/chat/completions", "{}"}).status, 404u);
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

TEST(DemoServer, ThinkMsHoldsTheAnswerWithoutHoldingOtherRequests) {
  RunningServer running(Config{});
  const auto started = std::chrono::steady_clock::now();
  std::optional<ct::HttpResult> slow;
  std::thread slow_client([&] {
    slow = ct::http_request(running.port(), "POST", "/play/scenario?think_ms=800", {}, "{}");
  });
  const auto fast = ct::http_request(running.port(), "GET", "/session/list?user_id=1");
  const auto fast_done = std::chrono::steady_clock::now();
  slow_client.join();
  EXPECT_EQ(fast.status, 200u);
  ASSERT_TRUE(slow.has_value());
  EXPECT_EQ(slow->status, 200u);
  EXPECT_GE(std::chrono::steady_clock::now() - started, 800ms);
  EXPECT_LT(fast_done - started, 800ms);  // the server cannot answer early; it must not stall
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

// Reads one chunked response with a raw socket, noting when each chunk's data arrived.
struct TimedStream {
  unsigned status = 0;
  std::string content_type;
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::string>> chunks;
  bool complete = false;
  std::chrono::steady_clock::time_point sent;
};

TimedStream read_timed(std::uint16_t port, std::string_view target,
                       std::chrono::milliseconds timeout = 10s) {
  TimedStream result;
  asio::io_context io;
  tcp::socket socket(io);
  boost::system::error_code ec;
  socket.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) return result;
  // Blocking reads with a kernel timeout: a broken server fails the test instead of hanging it.
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string request = "GET " + std::string(target) + " HTTP/1.1\r\nHost: t\r\n\r\n";
  result.sent = std::chrono::steady_clock::now();
  asio::write(socket, asio::buffer(request), ec);
  if (ec) return result;

  // A hand-rolled chunked decoder: each chunk is stamped with the read that completed it.
  std::string pending;
  bool head_done = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buffer[4096];
  while (!result.complete && std::chrono::steady_clock::now() < deadline) {
    const std::size_t n = socket.read_some(asio::buffer(buffer), ec);
    if (ec) break;
    const auto arrived = std::chrono::steady_clock::now();
    pending.append(buffer, n);
    if (!head_done) {
      const auto end = pending.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      const std::string head = pending.substr(0, end + 2);
      pending.erase(0, end + 4);
      head_done = true;
      if (head.rfind("HTTP/1.1 ", 0) != 0 ||
          head.find("Transfer-Encoding: chunked\r\n") == std::string::npos)
        return result;
      result.status = static_cast<unsigned>(std::stoul(head.substr(9, 3)));
      const auto type = head.find("Content-Type: ");
      if (type != std::string::npos)
        result.content_type = head.substr(type + 14, head.find("\r\n", type) - type - 14);
    }
    for (;;) {
      const auto line_end = pending.find("\r\n");
      if (line_end == std::string::npos) break;
      const std::size_t size = std::stoul(pending.substr(0, line_end), nullptr, 16);
      if (pending.size() < line_end + 2 + size + 2) break;
      if (size == 0) {
        result.complete = true;
        break;
      }
      result.chunks.emplace_back(arrived, pending.substr(line_end + 2, size));
      pending.erase(0, line_end + 2 + size + 2);
    }
  }
  return result;
}

TEST(DemoServer, RiddleCharactersArriveOneByOneAndSpaced) {
  RunningServer running(Config{});
  constexpr auto kInterval = 150ms;
  constexpr int kChars = 6;
  const auto stream =
      read_timed(running.port(), "/play/riddle/7?think_ms=300&interval_ms=150&chars=6");
  ASSERT_TRUE(stream.complete);
  EXPECT_EQ(stream.status, 200u);
  EXPECT_EQ(stream.content_type.rfind("text/event-stream", 0), 0u);
  ASSERT_EQ(stream.chunks.size(), std::size_t{kChars});  // one chunk per character
  for (const auto& [when, data] : stream.chunks) {
    // One UTF-8 character (the server picks an English or a Korean riddle at random).
    EXPECT_TRUE(!data.empty() && data.size() <= 4 && (data[0] & 0xC0) != 0x80) << data;
  }
  // The server cannot send early, so lower bounds are safe; a stalled reader can only merge
  // arrivals, so half the expected spread is demanded, not all of it.
  ASSERT_FALSE(stream.chunks.empty());
  EXPECT_GE(stream.chunks.front().first - stream.sent, 300ms);
  int spaced = 0;  // gaps between consecutive arrivals of at least half the interval
  for (std::size_t i = 1; i < stream.chunks.size(); ++i)
    spaced += stream.chunks[i].first - stream.chunks[i - 1].first >= kInterval / 2;
  EXPECT_GE(spaced, (kChars - 1) / 2);
  EXPECT_GE(stream.chunks.back().first - stream.chunks.front().first, (kChars - 1) * kInterval / 2);
}

TEST(DemoServer, ChatCompletionStreamIsChunkedAndEndsWithDone) {
  RunningServer running(Config{.role = Role::kAiGm});
  const auto result = ct::http_request(
      running.port(), "POST", "/v1/chat/completions?think_ms=0&interval_ms=1&tokens=5",
      {{"Content-Type", "application/json"}}, R"({"stream":true})");
  ASSERT_TRUE(result.ok()) << result.error.message();
  EXPECT_EQ(result.status, 200u);
  EXPECT_EQ(ct::find_header(result.headers, "Transfer-Encoding"), "chunked");
  EXPECT_FALSE(ct::find_header(result.headers, "Content-Length"));
  const auto done = result.body.rfind("data: [DONE]\n\n");
  ASSERT_NE(done, std::string::npos);
  EXPECT_EQ(done + 14, result.body.size());
}

TEST(DemoServer, BytesRouteDeliversEveryByteAndKeepsTheConnection) {
  RunningServer running(Config{});
  ct::TestHttpConnection connection;
  ASSERT_FALSE(connection.connect(running.port()));
  const auto result = connection.request("GET", "/bytes/1000000?chunk=65536");
  ASSERT_TRUE(result.ok()) << result.error.message();
  EXPECT_EQ(result.body.size(), 1'000'000u);
  EXPECT_TRUE(result.keep_alive);
  const auto head = connection.request("HEAD", "/bytes/1000");
  EXPECT_EQ(head.status, 200u);
  EXPECT_TRUE(head.body.empty());
  EXPECT_EQ(connection.request("GET", "/health").status, 200u);
}

TEST(DemoServer, ClientLeavingMidStreamFreesTheConnection) {
  RunningServer running(Config{});
  {
    ct::TestHttpConnection connection;
    ASSERT_FALSE(connection.connect(running.port()));
    ASSERT_FALSE(connection.send("GET", "/play/quiz/1?think_ms=0&interval_ms=5&chars=100000"));
    ASSERT_TRUE(ct::wait_until([&] { return running.server().requests_in_flight() == 1; }, 5s));
  }
  EXPECT_TRUE(ct::wait_until([&] { return running.server().active_connections() == 0; }, 5s));
  EXPECT_EQ(running.server().requests_in_flight(), 0u);
  EXPECT_EQ(running.server().streams_abandoned(), 1u);
}

TEST(DemoServer, ClientLeavingDuringTheThinkTimeIsNoticedBeforeItEnds) {
  RunningServer running(Config{});
  {
    ct::TestHttpConnection connection;
    ASSERT_FALSE(connection.connect(running.port()));
    ASSERT_FALSE(connection.send("GET", "/play/riddle/1?think_ms=60000"));
    ASSERT_TRUE(ct::wait_until([&] { return running.server().requests_in_flight() == 1; }, 5s));
  }
  // Well inside the 60 s think time: the server watched the socket instead of waiting it out.
  EXPECT_TRUE(ct::wait_until([&] { return running.server().active_connections() == 0; }, 10s));
  EXPECT_EQ(running.server().streams_abandoned(), 1u);
}

TEST(DemoServer, PipelinedRequestAfterAStreamIsServed) {
  RunningServer running(Config{});
  const auto raw = ct::raw_exchange(
      running.port(),
      "GET /play/riddle/1?think_ms=50&interval_ms=10&chars=3 HTTP/1.1\r\nHost: t\r\n\r\n"
      "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
      5s);
  EXPECT_TRUE(raw.peer_closed);
  EXPECT_NE(raw.data.find("\r\n0\r\n\r\nHTTP/1.1 200"), std::string::npos) << raw.data;
  EXPECT_EQ(running.server().streams_abandoned(), 0u);
}

}  // namespace
}  // namespace courier::demo
