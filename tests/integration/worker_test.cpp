// The worker's resilience end to end: real gateway, broker and worker processes against a scripted
// real upstream, with every attempt counted where it lands (at the upstream), not where it is sent.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/envelope.hpp"
#include "common/frames.hpp"
#include "tests/integration/shared_topology.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// Fast retries keep the suite quick; a circuit that effectively never opens keeps tests that fail
// on purpose from tripping it for the next one (the circuit test sets its own threshold).
EnvList worker_env(const EnvList& extra = {}) {
  EnvList env = {{"PROXY_RETRY_MIN_WAIT", "0.01"},
                 {"PROXY_RETRY_MAX_WAIT", "0.05"},
                 {"COURIER_CIRCUIT_FAILURES", "1000"}};
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

// rule-engine is the service under test; ai-gm is configured by default, so readiness needs it too.
TopologyOptions options_for(const std::string& rule_engine_url, const EnvList& extra = {}) {
  TopologyOptions options;
  options.upstreams = {{"rule-engine", rule_engine_url}, {"ai-gm", rule_engine_url}};
  options.env = worker_env(extra);
  return options;
}

std::unique_ptr<Topology> start_ready(TopologyOptions options) {
  auto topology = std::make_unique<Topology>(std::move(options));
  EXPECT_TRUE(topology->wait_ready()) << topology->logs();
  return topology;
}

// For a topology made with `start = false`: the broker, an ai-gm worker, the rule-engine worker
// under test (with `worker_args`) and the gateway. Returns that worker, for the test to signal.
ChildProcess& start_with_worker_under_test(Topology& topology,
                                           std::vector<std::string> worker_args) {
  topology.start_broker();
  topology.start_worker("ai-gm");
  auto& worker = topology.start_worker("rule-engine", std::move(worker_args));
  topology.start_gateway();
  return worker;
}

std::optional<int> attempts_of(const HttpResult& r) {
  const auto value = r.header("X-Courier-Attempts");
  if (!value) return std::nullopt;
  return std::stoi(*value);
}

nlohmann::json error_body(const HttpResult& r) {
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  EXPECT_TRUE(j.is_object()) << r.body;
  return j.is_object() ? j : nlohmann::json::object();
}

std::chrono::milliseconds since(SteadyClock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start);
}

// The breaker state the workers report in their heartbeats, as the gateway's /services shows it.
std::string circuit_state(const Topology& topology, const std::string& service) {
  const auto r = topology.admin("/services", {}, 2s);
  const auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (!j.is_object() || !j.contains("services") || !j["services"].contains(service)) return "";
  return j["services"][service].value("circuit", "");
}

// --- retries and connection reuse against one shared topology ---------------------------------

class WorkerRetryTest : public SharedTopologyTest<WorkerRetryTest> {
 public:
  static void configure(TopologyOptions& options) { options.env = worker_env(); }

 protected:
  void SetUp() override {
    SharedTopologyTest::SetUp();
    upstream_->set_idle_close(0ms);
    upstream_->set_close_after_response(false);
  }
};

TEST_F(WorkerRetryTest, RetriesGatewayErrorsUntilUpstreamSucceedsOnThirdAttempt) {
  upstream_->script("/flaky", {Step::respond(503), Step::respond(503), Step::respond(200, "ok")});
  const auto r = http_request(port(), "GET", "/rule-engine/flaky");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(attempts_of(r), 3);
  EXPECT_EQ(upstream_->hits("/flaky"), 3u);
}

TEST_F(WorkerRetryTest, PassesLast503ThroughAfterThreeAttempts) {
  upstream_->script("/down", {Step::respond(503, "still down", {{"X-Upstream", "yes"}})});
  const auto r = http_request(port(), "GET", "/rule-engine/down");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 503u);
  EXPECT_EQ(r.body, "still down");  // the upstream's own answer, not a Courier error
  EXPECT_EQ(r.header("X-Upstream"), "yes");
  EXPECT_EQ(attempts_of(r), 3);
  EXPECT_EQ(upstream_->hits("/down"), 3u);
}

TEST_F(WorkerRetryTest, RetryAfterBeyondTheMaxWaitReachesTheClientWithoutARetry) {
  // The suite's max wait is 0.05 s: retrying before the upstream's 1 s would ignore it.
  upstream_->script("/busy",
                    {Step::respond(503, "busy", {{"Retry-After", "1"}}), Step::respond(200, "ok")});
  const auto r = http_request(port(), "GET", "/rule-engine/busy");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 503u);
  EXPECT_EQ(r.body, "busy");
  EXPECT_EQ(r.header("Retry-After"), "1");
  EXPECT_EQ(attempts_of(r), 1);
  EXPECT_EQ(upstream_->hits("/busy"), 1u);
}

TEST_F(WorkerRetryTest, TooManyRequestsIsRetriedAfterItsRetryAfter) {
  upstream_->script("/limited", {Step::respond(429, "slow down", {{"Retry-After", "0"}}),
                                 Step::respond(200, "ok")});
  const auto r = http_request(port(), "GET", "/rule-engine/limited");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(attempts_of(r), 2);
}

TEST_F(WorkerRetryTest, DoesNotRetryPostThatReachedUpstream) {
  upstream_->script("/orders", {Step::respond(503), Step::respond(200)});
  const auto r = http_request(port(), "POST", "/rule-engine/orders", {}, R"({"n":1})");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 503u);
  EXPECT_EQ(attempts_of(r), 1);
  EXPECT_EQ(upstream_->hits("/orders"), 1u);
}

TEST_F(WorkerRetryTest, RetriesPostCarryingIdempotencyKey) {
  upstream_->script("/payments", {Step::respond(503), Step::respond(200, "paid")});
  const auto r = http_request(port(), "POST", "/rule-engine/payments",
                              {{"Idempotency-Key", "pay-42"}}, R"({"n":1})");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, "paid");
  EXPECT_EQ(attempts_of(r), 2);
  EXPECT_EQ(upstream_->hits("/payments"), 2u);
  for (const auto& seen : upstream_->requests()) {
    if (seen.target == "/payments") {
      EXPECT_EQ(seen.body, R"({"n":1})");
      EXPECT_EQ(seen.header("Idempotency-Key"), "pay-42");
    }
  }
}

TEST_F(WorkerRetryTest, FreshConnectionReplacesOneTheUpstreamClosedWhileIdle) {
  upstream_->set_idle_close(50ms);
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    const auto accepted = upstream_->connections_accepted();
    const auto r = http_request(port(), "GET", "/rule-engine/idle");
    ASSERT_TRUE(r.ok()) << r.error.message();
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(attempts_of(r), 1);
    if (i > 0) {
      EXPECT_GT(upstream_->connections_accepted(), accepted);  // not the expired one
    }
    // The worker pooled the connection; the upstream now expires it.
    ASSERT_TRUE(wait_until([] { return upstream_->open_connections() == 0; }, 3s));
  }
  EXPECT_EQ(upstream_->hits("/idle"), 4u);
}

TEST_F(WorkerRetryTest, UnannouncedCloseAfterEveryResponseIsNeverAnError) {
  upstream_->set_close_after_response(true);
  for (const std::string method : {"GET", "POST"}) {
    for (int i = 0; i < 10; ++i) {
      SCOPED_TRACE(method + " " + std::to_string(i));
      const auto r =
          http_request(port(), method, "/rule-engine/closing", {}, method == "POST" ? "x" : "");
      ASSERT_TRUE(r.ok()) << r.error.message();
      EXPECT_EQ(r.status, 200u) << r.body;
      EXPECT_EQ(attempts_of(r), 1);
    }
  }
  EXPECT_EQ(upstream_->hits("/closing"), 20u);
}

TEST_F(WorkerRetryTest, ForwardsClientAuthorizationByDefault) {
  const auto r =
      http_request(port(), "GET", "/rule-engine/auth", {{"Authorization", "Bearer client-token"}});
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(upstream_->last_request()->header("Authorization"), "Bearer client-token");
}

// The gateway answers HEAD with the length the worker passes on (there is no body to measure).
TEST_F(WorkerRetryTest, HeadReplyKeepsUpstreamContentLength) {
  upstream_->script("/sized", {Step::respond(200, std::string(1234, 'x'))});
  const auto r = http_request(port(), "HEAD", "/rule-engine/sized");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.header("Content-Length"), "1234");
  EXPECT_TRUE(r.body.empty());
}

// --- failures that need their own configuration ------------------------------------------------

TEST(WorkerFailure, RefusedConnectionBecomes503JsonAfterRetriesWithinBoundedTime) {
  const ReservedPort closed;  // bound, never listening: connections are refused
  const auto closed_url = "http://127.0.0.1:" + std::to_string(closed.port());
  auto topology = start_ready(options_for(closed_url));
  for (const std::string method : {"GET", "POST"}) {
    SCOPED_TRACE(method);
    const auto start = SteadyClock::now();
    const auto r = http_request(topology->gateway_port(), method, "/rule-engine/x", {}, "{}");
    ASSERT_TRUE(r.ok()) << r.error.message();
    EXPECT_LT(since(start), 3s);
    EXPECT_EQ(r.status, 503u);
    const auto j = error_body(r);
    EXPECT_EQ(j.value("code", ""), "RULE_ENGINE_UNAVAILABLE");
    // Nothing reached the upstream, so even a POST is safe to try again.
    EXPECT_EQ(attempts_of(r), 3);
  }
  if (::testing::Test::HasFailure()) std::cerr << topology->logs();
}

TEST(WorkerFailure, SlowUpstreamBecomes504AtServiceTimeout) {
  TestUpstream upstream;
  upstream.script("/slow", {Step::echo().after(3s)});
  auto topology = start_ready(options_for(upstream.url(), {{"RULE_ENGINE_TIMEOUT", "0.5"}}));
  const auto start = SteadyClock::now();
  const auto r = http_request(topology->gateway_port(), "GET", "/rule-engine/slow");
  ASSERT_TRUE(r.ok()) << r.error.message();
  const auto took = since(start);
  EXPECT_GE(took, 450ms);
  EXPECT_LT(took, 2500ms);
  EXPECT_EQ(r.status, 504u);
  EXPECT_EQ(error_body(r).value("code", ""), "RULE_ENGINE_TIMEOUT");
  EXPECT_EQ(attempts_of(r), 1);  // the worker answered (not the gateway's own deadline)
  EXPECT_EQ(upstream.hits("/slow"), 1u);
  if (::testing::Test::HasFailure()) std::cerr << topology->logs();
}

// The breaker with its default policy: only fast retries are set, so that what trips it (or not)
// is what would trip it in production.
TopologyOptions default_breaker_options(const std::string& rule_engine_url,
                                        const std::string& ai_gm_url, const EnvList& extra = {}) {
  TopologyOptions options;
  options.upstreams = {{"rule-engine", rule_engine_url}, {"ai-gm", ai_gm_url}};
  options.env = {{"PROXY_RETRY_MIN_WAIT", "0.01"}, {"PROXY_RETRY_MAX_WAIT", "0.05"}};
  options.env.insert(options.env.end(), extra.begin(), extra.end());
  return options;
}

nlohmann::json rule_engine_worker_status(const Topology& topology) {
  const auto r = topology.admin("/services", {}, 2s);
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (!j.is_object()) return nlohmann::json::object();
  const auto& list = j["services"]["rule-engine"]["worker_list"];
  if (!list.is_array() || list.empty() || !list[0].contains("status")) {
    return nlohmann::json::object();  // no heartbeat with a status yet
  }
  return list[0]["status"];
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(WorkerFailure, OnePathFailingEveryTimeNeverDarkensTheOthers) {
  TestUpstream upstream;
  upstream.script("/broken", {Step::respond(503, "model unavailable")});
  upstream.script("/bad-input", {Step::respond(500, "bad prompt")});
  auto topology = start_ready(default_breaker_options(upstream.url(), upstream.url()));
  const auto port = topology->gateway_port();

  // Three of four requests go to failing paths, concurrently with the healthy one.
  constexpr int kThreads = 8, kPerThread = 30;
  std::atomic<int> good_ok{0}, good_total{0}, circuit_open{0}, broken_passed_through{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int kind = (t + i) % 4;
        const char* path = kind == 0   ? "/rule-engine/good"
                           : kind == 1 ? "/rule-engine/bad-input"
                                       : "/rule-engine/broken";
        const auto r = http_request(port, kind == 3 ? "POST" : "GET", path, {}, "{}", 10s);
        if (!r.ok()) continue;
        if (r.body.find("circuit open") != std::string::npos) ++circuit_open;
        if (kind == 0) {
          ++good_total;
          good_ok += r.status == 200;
        } else if (kind >= 2) {
          broken_passed_through += r.status == 503 && r.body == "model unavailable";
        }
      }
    });
  }
  for (auto& c : clients) c.join();

  EXPECT_EQ(good_total.load(), kThreads * kPerThread / 4);
  EXPECT_EQ(good_ok.load(), good_total.load()) << "the healthy path must never see a 503";
  EXPECT_EQ(circuit_open.load(), 0);
  EXPECT_EQ(broken_passed_through.load(), kThreads * kPerThread / 2)
      << "each failing request gets the upstream's own answer";
  // GETs are tried up to three times (the retry budget may refuse some retries), POSTs once.
  EXPECT_GE(upstream.hits("/broken"), std::size_t{kThreads * kPerThread / 2});
  EXPECT_LE(upstream.hits("/broken"), std::size_t{kThreads * kPerThread});
  nlohmann::json status;
  EXPECT_TRUE(wait_until(
      [&] {
        status = rule_engine_worker_status(*topology);
        return status.value("requests", 0) >= kThreads * kPerThread;
      },
      3s))
      << status.dump();  // the status of a heartbeat sent after the last request
  EXPECT_EQ(status.value("circuit", ""), "closed") << status.dump();
  EXPECT_EQ(status.value("circuit_opened", -1), 0) << status.dump();
  EXPECT_EQ(status.value("circuit_rejections", -1), 0) << status.dump();
  if (::testing::Test::HasFailure()) std::cerr << topology->logs();
}

TEST(WorkerFailure, RefusedUpstreamOpensTheCircuitThenItRecoversWhenTheUpstreamIsBack) {
  ReservedPort refused(/*for_server=*/true);
  TestUpstream ai_gm;
  auto topology =
      start_ready(default_breaker_options("http://127.0.0.1:" + std::to_string(refused.port()),
                                          ai_gm.url(), {{"RULE_ENGINE_CIRCUIT_COOLDOWN", "2"}}));
  const auto port = topology->gateway_port();

  // Defaults: 10 attempts, 5 failures, 50 %. Each GET makes three refused attempts, so the fourth
  // request's first attempt opens the circuit, and the fifth fails fast.
  HttpResult r;
  int requests = 0;
  while (requests < 8) {
    r = http_request(port, "GET", "/rule-engine/x");
    ++requests;
    ASSERT_TRUE(r.ok()) << r.error.message();
    ASSERT_EQ(r.status, 503u) << r.body;
    if (error_body(r).value("detail", "") == "circuit open") break;
  }
  EXPECT_EQ(requests, 5);
  const auto opened = SteadyClock::now();
  EXPECT_EQ(attempts_of(r), 0);
  const auto retry_after = r.header("Retry-After");
  ASSERT_TRUE(retry_after);
  EXPECT_TRUE(*retry_after == "1" || *retry_after == "2") << *retry_after;

  // While open, requests fail fast; /services and /metrics say so.
  const auto start = SteadyClock::now();
  r = http_request(port, "GET", "/rule-engine/x");
  if (SteadyClock::now() - opened < 1500ms) {
    EXPECT_LT(since(start), 500ms);
    EXPECT_EQ(error_body(r).value("detail", ""), "circuit open");
  }
  nlohmann::json status;
  EXPECT_TRUE(wait_until(
      [&] {
        status = rule_engine_worker_status(*topology);
        return status.value("circuit_opened", 0) >= 1;
      },
      3s))
      << status.dump();
  EXPECT_GE(status.value("circuit_rejections", 0), 1) << status.dump();
  // The breaker's series are the worker's own (worker.admin_listen), no longer the gateway's.
  const auto metrics = topology->admin("/metrics", {}, 2s).body;
  EXPECT_EQ(metrics.find("courier_worker_circuit_opened_total"), std::string::npos) << metrics;
  const auto logs = topology->logs();
  EXPECT_EQ(count_of(logs, "circuit opened service=rule-engine"), 1u) << logs;
  EXPECT_NE(logs.find("failure_rate=1.00 failures=10 attempts=10 over=\"last 10.0 s\""),
            std::string::npos)
      << logs;

  // The upstream comes back on the same port: after the cool-down the probes succeed and close it.
  UpstreamOptions back;
  back.port = refused.port();
  TestUpstream upstream(back);
  EXPECT_TRUE(wait_until(
      [&] {
        r = http_request(port, "GET", "/rule-engine/x");
        return r.ok() && r.status == 200;
      },
      10s, 50ms))
      << r.status << " " << r.body;
  EXPECT_GE(SteadyClock::now() - opened, 1500ms) << "not before the cool-down";
  for (int i = 0; i < 5; ++i) EXPECT_EQ(http_request(port, "GET", "/rule-engine/x").status, 200u);
  EXPECT_TRUE(wait_until([&] { return circuit_state(*topology, "rule-engine") == "closed"; }, 3s))
      << circuit_state(*topology, "rule-engine");
  EXPECT_EQ(count_of(topology->logs(), "circuit closed service=rule-engine"), 1u);
  if (::testing::Test::HasFailure()) std::cerr << topology->logs();
}

TEST(WorkerFailure, AWorkerWhoseUpstreamIsUnreachableIsTakenOutOfTheRotation) {
  // Two rule-engine workers; only the second one's path to the upstream is broken (as when one
  // host's network fails). Its open circuit answers 503 at once, which frees its credit at once:
  // without ejection it would draw most of the traffic.
  TestUpstream upstream;
  ReservedPort refused(/*for_server=*/true);
  // A long cool-down keeps the broken worker from probing again during the measured run.
  TopologyOptions options = default_breaker_options(upstream.url(), upstream.url(),
                                                    {{"RULE_ENGINE_CIRCUIT_COOLDOWN", "60"}});
  options.start = false;
  Topology topology(options);
  topology.start_broker();
  topology.start_worker("ai-gm");
  topology.start_worker("rule-engine");
  topology.start_worker("rule-engine", {"--set", "services.rule-engine.upstream=http://127.0.0.1:" +
                                                     std::to_string(refused.port())});
  topology.start_gateway();
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  ASSERT_TRUE(topology.wait_workers("rule-engine", 2)) << topology.logs();
  const auto port = topology.gateway_port();

  const auto concurrent_gets = [&](int threads, int each) {
    std::atomic<int> ok{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < threads; ++t) {
      clients.emplace_back([&] {
        for (int i = 0; i < each; ++i) {
          const auto r = http_request(port, "GET", "/rule-engine/x", {}, {}, 10s);
          ok += r.ok() && r.status == 200;
        }
      });
    }
    for (auto& c : clients) c.join();
    return ok.load();
  };
  // Until the broken worker's circuit opens, some requests reach it and fail.
  const auto broken_open = [&] {
    const auto j = nlohmann::json::parse(topology.admin("/services", {}, 2s).body, nullptr, false);
    return j.is_object() && j["services"]["rule-engine"].value("ejected", 0) == 1;
  };
  EXPECT_TRUE(wait_until(
      [&] {
        concurrent_gets(4, 5);
        return broken_open();
      },
      20s, 10ms))
      << topology.admin("/services").body;

  // Ejected: the healthy worker serves everything.
  EXPECT_EQ(concurrent_gets(8, 25), 200) << topology.admin("/services").body;
  const auto logs = topology.logs();
  EXPECT_NE(logs.find("circuit open: taken out of the rotation"), std::string::npos) << logs;
  if (::testing::Test::HasFailure()) std::cerr << topology.logs();
}

TEST(WorkerFailure, ZeroCircuitFailuresNeverOpensTheCircuit) {
  ReservedPort refused(/*for_server=*/true);
  TestUpstream ai_gm;
  auto topology =
      start_ready(default_breaker_options("http://127.0.0.1:" + std::to_string(refused.port()),
                                          ai_gm.url(), {{"RULE_ENGINE_CIRCUIT_FAILURES", "0"}}));
  for (int i = 0; i < 8; ++i) {
    const auto r = http_request(topology->gateway_port(), "GET", "/rule-engine/x");
    ASSERT_TRUE(r.ok()) << r.error.message();
    EXPECT_EQ(error_body(r).value("detail", ""), "connection refused");
    EXPECT_EQ(attempts_of(r), 3);
  }
  EXPECT_TRUE(wait_until([&] { return circuit_state(*topology, "rule-engine") == "disabled"; }, 3s))
      << circuit_state(*topology, "rule-engine");
}

// --- the worker against a hand-driven broker: frames are hostile input ---------------------------

// A broker played by the test: a ROUTER on a port of the system's choice that answers the worker's
// READY and keeps it alive with heartbeats while the test sends it REQUESTs by hand.
class HandBroker {
 public:
  HandBroker() : socket_(context_, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
  }
  std::string endpoint() const { return socket_.get(zmq::sockopt::last_endpoint); }

  // Runs REQUEST `request` with `flags` through the worker and returns its REPLY's envelope, or
  // nullopt at the deadline.
  std::optional<ReplyEnvelope> run(const RequestEnvelope& request, std::uint8_t flags) {
    sent_ = false;
    request_ = &request;
    flags_ = flags;
    const auto deadline = SteadyClock::now() + 10s;
    while (SteadyClock::now() < deadline) {
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, 50ms);
      if (!worker_.empty()) heartbeat();
      protocol::Frames in;
      while (zmq::recv_multipart(socket_, std::back_inserter(in), zmq::recv_flags::dontwait)) {
        if (auto reply = on_message(in)) return reply;
        in.clear();
      }
    }
    return std::nullopt;
  }

 private:
  std::optional<ReplyEnvelope> on_message(protocol::Frames& in) {
    protocol::Command command{};
    if (in.size() < 3 || protocol::parse_command(in, 1, command)) return std::nullopt;
    if (command == protocol::Command::kReady) {
      worker_ = std::string(protocol::view(in[0]));
      heartbeat();
    } else if (command == protocol::Command::kReply && in.size() == 5) {
      ReplyEnvelope reply;
      if (!decode(protocol::view(in[4]), reply)) return reply;
    }
    if (!worker_.empty() && !sent_) {
      protocol::Frames out;
      out.emplace_back(worker_.data(), worker_.size());
      auto header = protocol::request_header(*request_);
      header.flags = flags_;
      protocol::add_request(out, header, encode(*request_));
      sent_ = zmq::send_multipart(socket_, out).has_value();
    }
    return std::nullopt;
  }

  void heartbeat() {
    protocol::Frames hb;
    hb.emplace_back(worker_.data(), worker_.size());
    protocol::add_header(hb, protocol::Command::kHeartbeat);
    hb.emplace_back(std::string("hand-broker"));
    (void)zmq::send_multipart(socket_, hb, zmq::send_flags::dontwait);
  }

  zmq::context_t context_;
  zmq::socket_t socket_;
  std::string worker_;
  const RequestEnvelope* request_ = nullptr;
  std::uint8_t flags_ = 0;
  bool sent_ = false;
};

RequestEnvelope post_without_key(std::uint8_t id_byte) {
  RequestEnvelope r;
  r.id.fill(id_byte);
  r.service = "rule-engine";
  r.method = "POST";
  r.target = "/orders";
  r.body = "{}";
  r.deadline_ms = protocol::unix_ms_now() + 10'000;
  r.request_id = "hand-" + std::to_string(id_byte);
  return r;
}

TEST(WorkerFrames, RetrySafeFlagOnPostWithoutKeyIsRefusedAndNeverReachesTheUpstream) {
  TestUpstream upstream;
  HandBroker broker;
  ChildProcess worker(COURIER_WORKER_BIN,
                      {"--service", "rule-engine", "--broker", broker.endpoint(), "--id", "w-1"},
                      {{"RULE_ENGINE_URL", upstream.url()}, {"AI_GM_URL", upstream.url()}});

  // A broker trusting this flag may requeue the POST after a worker loss: it must not run.
  const auto refused = broker.run(post_without_key(1), protocol::kFlagRetrySafe);
  ASSERT_TRUE(refused) << worker.log_text();
  EXPECT_EQ(refused->status, 400);
  ASSERT_TRUE(refused->error);
  EXPECT_EQ(refused->error->code, "BAD_REQUEST");
  EXPECT_EQ(refused->worker_id, "w-1");
  EXPECT_EQ(upstream.hits("/orders"), 0u);

  // The same request flagged as the gateway flags it runs, once.
  const auto ran = broker.run(post_without_key(2), 0);
  ASSERT_TRUE(ran) << worker.log_text();
  EXPECT_EQ(ran->status, 200);
  EXPECT_EQ(ran->worker_id, "w-1");
  EXPECT_EQ(ran->attempts, 1u);
  EXPECT_EQ(upstream.hits("/orders"), 1u);
}

TEST(WorkerFrames, ForgedEnvelopeWithLineBreaksIsRefusedAndNeverReachesTheUpstream) {
  TestUpstream upstream;
  HandBroker broker;
  ChildProcess worker(COURIER_WORKER_BIN,
                      {"--service", "rule-engine", "--broker", broker.endpoint(), "--id", "w-1"},
                      {{"RULE_ENGINE_URL", upstream.url()}, {"AI_GM_URL", upstream.url()}});

  // Request smuggling through a forged envelope: a header value that ends the head and starts a
  // second request, and a method that carries a whole request line.
  auto smuggle = post_without_key(1);
  smuggle.headers = {{"X-Forged", "1\r\nContent-Length: 0\r\n\r\nGET /smuggled HTTP/1.1\r\nX: y"}};
  auto line = post_without_key(2);
  line.method = "GET /smuggled HTTP/1.1\r\nX:";
  for (const auto* forged : {&smuggle, &line}) {
    const auto refused = broker.run(*forged, 0);
    ASSERT_TRUE(refused) << worker.log_text();
    EXPECT_EQ(refused->status, 400);
    ASSERT_TRUE(refused->error);
    EXPECT_EQ(refused->error->code, "BAD_REQUEST");
  }
  EXPECT_EQ(upstream.request_count(), 0u);

  // The worker is still there, and serves a well-formed request once.
  const auto ran = broker.run(post_without_key(3), 0);
  ASSERT_TRUE(ran) << worker.log_text();
  EXPECT_EQ(ran->status, 200);
  EXPECT_EQ(upstream.hits("/orders"), 1u);
  EXPECT_EQ(upstream.hits("/smuggled"), 0u);
}

TEST(WorkerAuth, BearerModeReplacesClientAuthorizationWithSecretFromEnv) {
  TestUpstream upstream;
  const std::string secret = "s3cret-token-7f1";
  auto topology = start_ready(
      options_for(upstream.url(), {{"RULE_ENGINE_AUTH_MODE", "bearer"},
                                   {"RULE_ENGINE_AUTH_SECRET_ENV", "COURIER_TEST_RE_TOKEN"},
                                   {"COURIER_TEST_RE_TOKEN", secret}}));
  const auto r = http_request(topology->gateway_port(), "GET", "/rule-engine/secure",
                              {{"Authorization", "Bearer client-token"}});
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  const auto seen = upstream.last_request().value();
  int authorization_headers = 0;
  for (const auto& [name, value] : seen.headers) {
    if (name == "Authorization" || name == "authorization") ++authorization_headers;
  }
  EXPECT_EQ(authorization_headers, 1);
  EXPECT_EQ(seen.header("Authorization"), "Bearer " + secret);
  EXPECT_EQ(topology->logs().find(secret), std::string::npos) << "the secret was logged";
}

// --- lifecycle ----------------------------------------------------------------------------------

TEST(WorkerLifecycle, SigtermDrainsHundredInFlightRequestsAndExitsZero) {
  constexpr int kRequests = 100;
  TestUpstream upstream;
  // Long enough that all 100 are at the upstream together even when starting them is slow (a
  // loaded machine, sanitizers); far below the worker's drain timeout (30 s).
  upstream.set_default(Step::echo().after(4s));
  auto options = options_for(upstream.url());
  options.start = false;
  Topology topology(options);
  ChildProcess& worker = start_with_worker_under_test(topology, {"--concurrency", "128"});
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();

  std::vector<HttpResult> results(kRequests);
  std::vector<SteadyClock::time_point> answered(kRequests);
  std::vector<std::thread> clients;
  clients.reserve(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    clients.emplace_back([&, i] {
      results[i] = http_request(topology.gateway_port(), "GET",
                                "/rule-engine/drain/" + std::to_string(i), {}, {}, 20s);
      answered[i] = SteadyClock::now();
    });
  }
  const bool all_arrived = upstream.wait_for_requests(kRequests, 10s);
  EXPECT_TRUE(all_arrived) << upstream.request_count() << " of " << kRequests << " arrived";
  const auto terminated = SteadyClock::now();
  if (all_arrived) {
    EXPECT_FALSE(worker.signal(SIGTERM));
  }
  for (auto& t : clients) t.join();
  const auto answered_before =
      std::count_if(answered.begin(), answered.end(), [&](auto t) { return t < terminated; });
  EXPECT_EQ(answered_before, 0) << "requests answered before SIGTERM were not in flight";

  int ok = 0;
  for (int i = 0; i < kRequests; ++i) {
    const auto& r = results[i];
    if (r.ok() && r.status == 200) {
      ++ok;
    } else {
      ADD_FAILURE() << "request " << i << ": " << r.error.message() << " " << r.status << " "
                    << r.body;
    }
  }
  EXPECT_EQ(ok, kRequests);
  const auto status = worker.wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << "worker still running after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe_wait_status(*status);
  EXPECT_EQ(upstream.request_count(), static_cast<std::size_t>(kRequests));
  if (::testing::Test::HasFailure()) std::cerr << topology.logs();
}

TEST(WorkerLifecycle, DrainTimeoutWithARequestStillRunningExitsCleanly) {
  // The upstream holds the request far past the drain timeout: the worker stops with it still
  // running, and must exit cleanly (no crash tearing down the unfinished request).
  TestUpstream upstream;
  upstream.set_default(Step::echo().after(10s));
  auto options = options_for(upstream.url());
  options.start = false;
  Topology topology(options);
  ChildProcess& worker = start_with_worker_under_test(topology, {"--drain-timeout", "0.3"});
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();

  auto pending = std::async(std::launch::async, [&] {
    return http_request(topology.gateway_port(), "POST", "/rule-engine/held", {}, "once", 15s);
  });
  ASSERT_TRUE(upstream.wait_for_requests(1, 10s)) << topology.logs();
  EXPECT_FALSE(worker.signal(SIGTERM));
  const auto status = worker.wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << "worker still running after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe_wait_status(*status);
  // Its client is answered (the worker left holding it), not left waiting for its deadline.
  const auto r = pending.get();
  EXPECT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 502u) << r.body;
  if (::testing::Test::HasFailure()) std::cerr << topology.logs();
}

TEST(WorkerLifecycle, ReRegistersWithBrokerRestartedOnSamePorts) {
  TestUpstream upstream;
  auto topology = start_ready(options_for(upstream.url()));
  ASSERT_EQ(topology->get("/rule-engine/before").status, 200u);

  ASSERT_FALSE(topology->broker().signal(SIGKILL));
  ASSERT_TRUE(topology->broker().wait_exit(5s).has_value());
  topology->start_broker();

  EXPECT_TRUE(topology->wait_ready(15s)) << topology->logs();
  // Readiness may still reflect the old broker for a moment: wait for a request to get through.
  HttpResult last;
  EXPECT_TRUE(wait_until(
      [&] {
        last = topology->get("/rule-engine/after", {}, 2s);
        return last.ok() && last.status == 200;
      },
      10s, 50ms))
      << last.error.message() << " " << last.status << " " << last.body;
  for (int i = 0; i < 5; ++i) {
    const auto r = topology->get("/rule-engine/after/" + std::to_string(i));
    EXPECT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(attempts_of(r), 1);
  }
  if (::testing::Test::HasFailure()) std::cerr << topology->logs();
}

}  // namespace
}  // namespace courier::testing
