// The worker's resilience end to end: real gateway, broker and worker processes against a scripted
// real upstream, with every attempt counted where it lands (at the upstream), not where it is sent.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

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
  const auto r = topology.get("/services", {}, 2s);
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

TEST(WorkerFailure, CircuitOpensAfterConsecutiveFailuresAndRecoversAfterCooldown) {
  TestUpstream upstream;
  upstream.script("/breaker", {Step::respond(503), Step::respond(503), Step::respond(503),
                               Step::respond(200, "back")});
  auto topology = start_ready(options_for(upstream.url(), {{"RULE_ENGINE_CIRCUIT_FAILURES", "3"},
                                                           {"RULE_ENGINE_CIRCUIT_COOLDOWN", "4"}}));
  const auto port = topology->gateway_port();

  auto r = http_request(port, "GET", "/rule-engine/breaker");
  ASSERT_TRUE(r.ok()) << r.error.message();
  const auto opened = SteadyClock::now();
  EXPECT_EQ(r.status, 503u);
  EXPECT_EQ(attempts_of(r), 3);
  ASSERT_EQ(upstream.hits("/breaker"), 3u);

  // Open: fail fast without touching the upstream.
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE(i);
    const auto start = SteadyClock::now();
    r = http_request(port, "GET", "/rule-engine/breaker");
    ASSERT_TRUE(r.ok()) << r.error.message();
    ASSERT_LT(SteadyClock::now() - opened, 4s) << "the machine is too slow to see the open state";
    EXPECT_LT(since(start), 500ms);
    EXPECT_EQ(r.status, 503u);
    const auto j = error_body(r);
    EXPECT_EQ(j.value("code", ""), "RULE_ENGINE_UNAVAILABLE");
    EXPECT_EQ(j.value("detail", ""), "circuit open");
    EXPECT_EQ(attempts_of(r), 0);
  }
  EXPECT_EQ(upstream.hits("/breaker"), 3u);
  EXPECT_TRUE(wait_until([&] { return circuit_state(*topology, "rule-engine") == "open"; }, 3s))
      << circuit_state(*topology, "rule-engine");

  // After the cool-down one probe goes through; its success closes the circuit.
  HttpResult last;
  EXPECT_TRUE(wait_until(
      [&] {
        last = http_request(port, "GET", "/rule-engine/breaker");
        return last.ok() && last.status == 200;
      },
      8s, 50ms))
      << last.status << " " << last.body;
  EXPECT_GE(SteadyClock::now() - opened, 4s);
  EXPECT_EQ(last.body, "back");
  EXPECT_EQ(upstream.hits("/breaker"), 4u);
  r = http_request(port, "GET", "/rule-engine/breaker");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(upstream.hits("/breaker"), 5u);
  EXPECT_TRUE(wait_until([&] { return circuit_state(*topology, "rule-engine") == "closed"; }, 3s))
      << circuit_state(*topology, "rule-engine");
  if (::testing::Test::HasFailure()) std::cerr << topology->logs();
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
