// The gateway as callers see it, with the real broker and workers: limits, large and chunked
// bodies, Expect: 100-continue, slow clients, deadlines, broker loss and recovery, graceful stop,
// /metrics and authentication.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <future>
#include <nlohmann/json.hpp>
#include <random>

#include "tests/integration/shared_topology.hpp"
#include "tests/unit/gateway/prometheus_text.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

void expect_error(const HttpResult& r, unsigned status, const std::string& code) {
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, status) << r.body;
  const auto j = nlohmann::json::parse(r.body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.body;
  EXPECT_EQ(j.value("code", ""), code) << r.body;
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(gen() & 0xff);
  return out;
}

// The head of a POST that waits for 100 Continue before sending its `length`-byte body.
std::string expect_continue_head(const std::string& target, std::size_t length,
                                 const std::string& extra_headers = "") {
  return "POST " + target + " HTTP/1.1\r\nHost: x\r\n" + extra_headers +
         "Expect: 100-continue\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
}

constexpr std::size_t kMaxBody = 6u << 20;

class GatewayTest : public SharedTopologyTest<GatewayTest> {
 public:
  static void configure(TopologyOptions& options) {
    options.gateway_args = {"--max-body", std::to_string(kMaxBody), "--header-timeout", "1"};
  }
};

// --- limits ------------------------------------------------------------------------------

TEST_F(GatewayTest, BodyOverMaxBodyIs413) {
  const auto before = upstream_->request_count();
  const auto r =
      http_request(port(), "POST", "/rule-engine/upload", {}, std::string(kMaxBody + 1, 'x'), 10s);
  expect_error(r, 413, "PAYLOAD_TOO_LARGE");
  EXPECT_EQ(upstream_->request_count(), before);
}

TEST_F(GatewayTest, ChunkedBodyOverMaxBodyIs413) {
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(port()));
  ASSERT_FALSE(
      conn.send_raw("POST /rule-engine/upload HTTP/1.1\r\nHost: x\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n"));
  const std::string chunk(1u << 20, 'c');
  char size_line[32];
  std::snprintf(size_line, sizeof size_line, "%zx\r\n", chunk.size());
  for (int i = 0; i < 7; ++i) {
    if (conn.send_raw(size_line + chunk + "\r\n")) break;  // the gateway may stop reading
  }
  const auto r = conn.receive(10s);
  expect_error(r, 413, "PAYLOAD_TOO_LARGE");
}

TEST_F(GatewayTest, HugeHeaderIs431) {
  const auto r = topology_->get("/rule-engine/x", {{"X-Big", std::string(20'000, 'h')}});
  expect_error(r, 431, "HEADERS_TOO_LARGE");
}

TEST_F(GatewayTest, GarbageIs400AndOtherConnectionsAreStillServed) {
  TestHttpConnection other;
  ASSERT_FALSE(other.connect(port()));
  ASSERT_EQ(other.request("GET", "/rule-engine/before").status, 200u);
  for (const std::string_view garbage :
       {"THIS IS NOT HTTP\r\n\r\n", "GET / HTTP/9.9\r\n\r\n",
        "GET /x HTTP/1.1\r\nBad Header\r\n\r\n",
        "POST /rule-engine/x HTTP/1.1\r\nContent-Length: -1\r\n\r\n"}) {
    const auto raw = raw_exchange(port(), garbage);
    EXPECT_NE(raw.data.find(" 400 "), std::string::npos) << garbage << " -> " << raw.data;
    EXPECT_TRUE(raw.peer_closed) << garbage;
  }
  EXPECT_EQ(other.request("GET", "/rule-engine/after").status, 200u);
  EXPECT_EQ(topology_->get("/rule-engine/after").status, 200u);
}

// --- bodies ------------------------------------------------------------------------------

TEST_F(GatewayTest, FiveMiBBinaryBodiesRoundTrip) {
  const auto request_body = random_bytes(5u << 20, 1);
  const auto reply_body = random_bytes(5u << 20, 2);
  upstream_->script(
      "/big", {Step::respond(200, reply_body, {{"Content-Type", "application/octet-stream"}})});
  const auto start = Clock::now();
  const auto r = http_request(port(), "POST", "/rule-engine/big",
                              {{"Content-Type", "application/octet-stream"}}, request_body, 20s);
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_TRUE(r.body == reply_body) << "reply body differs (" << r.body.size() << " bytes)";
  const auto seen = upstream_->last_request();
  ASSERT_TRUE(seen);
  EXPECT_TRUE(seen->body == request_body) << "request body differs (" << seen->body.size() << ")";
  std::cerr << "[measure] 5 MiB each way through the gateway: " << ms_since(start) << " ms\n";
}

TEST_F(GatewayTest, ChunkedRequestBodyIsReassembled) {
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(port()));
  const std::string part1 = "hello ", part2("\0\x01\xff binary", 10), part3(5000, 'z');
  std::string raw =
      "POST /rule-engine/chunked-in HTTP/1.1\r\nHost: x\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  for (const auto* p : {&part1, &part2, &part3}) {
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx;ext=1\r\n", p->size());
    raw += size_line + *p + "\r\n";
  }
  raw += "0\r\nX-Trailer: t\r\n\r\n";
  ASSERT_FALSE(conn.send_raw(raw));
  const auto r = conn.receive();
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  const auto seen = upstream_->last_request();
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->body, part1 + part2 + part3);
  EXPECT_FALSE(seen->header("Transfer-Encoding").has_value() &&
               seen->header("Content-Length").has_value());
}

TEST_F(GatewayTest, ExpectContinueGets100ThenTheResponse) {
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(port()));
  ASSERT_FALSE(conn.send_raw(expect_continue_head("/rule-engine/expect", 5)));
  const auto interim = conn.receive(3s);
  ASSERT_TRUE(interim.ok()) << interim.error.message();
  EXPECT_EQ(interim.status, 100u);
  ASSERT_FALSE(conn.send_raw("abcde"));
  const auto r = conn.receive();
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(upstream_->last_request()->body, "abcde");
}

TEST_F(GatewayTest, ExpectContinueOverTheBodyLimitIs413WithoutContinue) {
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(port()));
  ASSERT_FALSE(conn.send_raw(expect_continue_head("/rule-engine/expect", kMaxBody + 1)));
  expect_error(conn.receive(3s), 413, "PAYLOAD_TOO_LARGE");
}

TEST_F(GatewayTest, ExpectContinueToAnUnknownServiceIs404WithoutContinue) {
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(port()));
  ASSERT_FALSE(conn.send_raw(expect_continue_head("/no-such-service/x", 5)));
  expect_error(conn.receive(3s), 404, "UNKNOWN_SERVICE");
}

// --- slow clients ------------------------------------------------------------------------

TEST_F(GatewayTest, StalledHalfSentRequestsDoNotDelayOthersAndAreClosed) {
  std::vector<std::unique_ptr<TestHttpConnection>> stalled;
  for (int i = 0; i < 50; ++i) {
    auto c = std::make_unique<TestHttpConnection>();
    ASSERT_FALSE(c->connect(port()));
    ASSERT_FALSE(c->send_raw("GET /rule-engine/stalled HTTP/1.1\r\nHost: x\r\nX-Half: "));
    stalled.push_back(std::move(c));
  }
  const auto stalled_at = Clock::now();
  const auto start = Clock::now();
  const auto r = topology_->get("/rule-engine/normal");
  const auto normal_ms = ms_since(start);
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_LT(normal_ms, 900.0) << "a stalled connection is closed after 1 s, not served first";
  std::cerr << "[measure] normal request beside 50 stalled ones: " << normal_ms << " ms\n";

  // --header-timeout 1: each stalled connection is closed about a second after it connected.
  for (auto& c : stalled) {
    const auto rest = c->read_until_close(5s);
    EXPECT_TRUE(rest.peer_closed);
  }
  const auto closed_ms = ms_since(stalled_at);
  EXPECT_LT(closed_ms, 3000.0);
  std::cerr << "[measure] 50 stalled connections all closed after " << closed_ms << " ms\n";
  EXPECT_EQ(upstream_->hits("/stalled"), 0u);
}

// --- deadlines ---------------------------------------------------------------------------

TEST_F(GatewayTest, RequestTimeoutHeaderShortensTheDeadline) {
  upstream_->script("/slow", {Step::respond(200, "late").after(3s)});
  const auto start = Clock::now();
  const auto r = topology_->get("/rule-engine/slow", {{"X-Request-Timeout", "0.3"}});
  const auto elapsed = ms_since(start);
  expect_error(r, 504, "RULE_ENGINE_TIMEOUT");
  EXPECT_GE(elapsed, 250.0);
  EXPECT_LT(elapsed, 1500.0);
  std::cerr << "[measure] X-Request-Timeout 0.3 answered 504 after " << elapsed << " ms\n";
}

// --- local endpoints ---------------------------------------------------------------------

TEST_F(GatewayTest, MetricsAreValidPrometheusText) {
  ASSERT_EQ(topology_->get("/rule-engine/m").status, 200u);
  ASSERT_EQ(topology_->get("/nope/m").status, 404u);
  namespace pt = prometheus_text;
  pt::Parsed parsed;
  // The broker link's state shows once its first heartbeat is answered.
  const bool has_broker = wait_until(
      [&] {
        const auto r = topology_->admin("/metrics");
        if (!r.ok() || r.status != 200) return false;
        EXPECT_EQ(r.header("Content-Type").value_or(""),
                  "text/plain; version=0.0.4; charset=utf-8");
        parsed = pt::parse(r.body);
        EXPECT_EQ(parsed.error, "") << r.body;
        // A request is counted just after its response is written, so a fast client can scrape
        // before its own previous request shows: wait for those too.
        return parsed.value("courier_gateway_broker_connected").value_or(0) == 1 &&
               parsed.value("courier_gateway_requests_total",
                            {{"service", "none"}, {"status", "404"}})
                       .value_or(0) >= 1 &&
               parsed.value("courier_gateway_request_duration_seconds_count",
                            {{"service", "rule-engine"}})
                       .value_or(0) >= 1;
      },
      5s, 100ms);
  ASSERT_TRUE(has_broker);
  EXPECT_GE(
      parsed
          .value("courier_gateway_requests_total", {{"service", "rule-engine"}, {"status", "200"}})
          .value_or(0),
      1);
  EXPECT_GE(parsed.value("courier_gateway_requests_total", {{"service", "none"}, {"status", "404"}})
                .value_or(0),
            1);
  EXPECT_GE(
      parsed.value("courier_gateway_request_duration_seconds_count", {{"service", "rule-engine"}})
          .value_or(0),
      1);
  EXPECT_EQ(parsed.value("courier_gateway_broker_connected"), 1);
  // Client connections only: the scrape's own, on the admin listener, is not one of them.
  EXPECT_TRUE(parsed.value("courier_gateway_connections").has_value());
  EXPECT_GE(parsed.value("courier_gateway_in_flight").value_or(0), 1) << "the scrape itself";
  EXPECT_EQ(parsed.value("courier_build_info", {{"component", "gateway"}}), 1);
  // The broker's series come from the broker's admin port, not from every gateway.
  EXPECT_FALSE(parsed.value("courier_broker_workers", {{"service", "rule-engine"}}).has_value());
}

TEST_F(GatewayTest, HeadOnLocalEndpointsSendsNoBody) {
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(port()));
  const auto head = conn.request("HEAD", "/healthz");
  ASSERT_TRUE(head.ok()) << head.error.message();
  EXPECT_EQ(head.status, 200u);
  EXPECT_TRUE(head.body.empty());
  // Had a body been sent, it would be read as the next response's start.
  const auto next = conn.request("GET", "/healthz");
  ASSERT_TRUE(next.ok()) << next.error.message();
  EXPECT_EQ(next.status, 200u);
}

// --- broker loss and recovery ------------------------------------------------------------

TEST(GatewayBrokerLoss, PendingAndNewRequestsGet503PromptlyAndTheGatewayRecovers) {
  TestUpstream upstream;
  upstream.script("/hang", {Step::respond(200, "late").after(10s)});
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  Topology topology(options);
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  const auto port = topology.gateway_port();

  auto pending = std::async(std::launch::async, [&] {
    return http_request(port, "GET", "/rule-engine/hang", {}, {}, 8s);
  });
  ASSERT_TRUE(upstream.wait_for_hits("/hang", 1, 5s));
  ASSERT_FALSE(topology.broker().signal(SIGKILL));
  const auto killed_at = Clock::now();
  const auto r = pending.get();
  const auto detect_ms = ms_since(killed_at);
  expect_error(r, 503, "BROKER_UNAVAILABLE");
  EXPECT_LT(detect_ms, 1200.0);
  std::cerr << "[measure] pending request answered 503 " << detect_ms
            << " ms after the broker was SIGKILLed (the dropped connection, seen by the socket "
               "monitor)\n";

  const auto start = Clock::now();
  expect_error(topology.get("/rule-engine/new"), 503, "BROKER_UNAVAILABLE");
  EXPECT_LT(ms_since(start), 1000.0) << "at once, not at the request's deadline";
  EXPECT_EQ(topology.get("/readyz").status, 503u);

  topology.start_broker();  // same ports
  const auto restarted_at = Clock::now();
  ASSERT_TRUE(topology.wait_ready(15s))
      << (topology.broker().running() ? "" : "the restarted broker exited (port taken?)\n")
      << topology.logs();
  std::cerr << "[measure] /readyz 200 again " << ms_since(restarted_at)
            << " ms after the broker restarted\n";
  const auto after = topology.get("/rule-engine/again");
  EXPECT_EQ(after.status, 200u) << after.body;
  if (::testing::Test::HasFailure()) std::cerr << topology.logs();
}

// A broker that hangs keeps its TCP connection open: only the missed heartbeats reveal it.
TEST(GatewayBrokerLoss, FrozenBrokerIsDetectedByHeartbeatAndRecoversWhenItResumes) {
  TestUpstream upstream;
  // /hang holds the worker until well after the broker has been frozen, detected and resumed
  // and has expired the gateway's old connection, however slowly the steps below run.
  upstream.script("/hang", {Step::respond(200, "late").after(5s)});
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  options.worker_args = {"--concurrency", "1"};  // /hang holds the worker; /queued must wait
  Topology topology(options);
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  const auto port = topology.gateway_port();

  auto pending = std::async(std::launch::async, [&] {
    return http_request(port, "GET", "/rule-engine/hang", {}, {}, 8s);
  });
  ASSERT_TRUE(upstream.wait_for_hits("/hang", 1, 5s));
  const auto hang_seen = Clock::now();
  auto queued = std::async(std::launch::async, [&] {
    return http_request(port, "POST", "/rule-engine/queued", {}, "once", 8s);
  });
  ASSERT_TRUE(wait_until(
      [&] {
        const auto s = nlohmann::json::parse(topology.admin("/services").body, nullptr, false);
        return s.is_object() && s["services"]["rule-engine"].value("queue_depth", 0) == 1;
      },
      5s, 10ms));
  ASSERT_FALSE(topology.broker().signal(SIGSTOP));
  const auto stopped_at = Clock::now();
  const auto r = pending.get();
  const auto detect_ms = ms_since(stopped_at);
  const auto q = queued.get();
  topology.broker().signal(SIGCONT);  // before any assertion can return early
  expect_error(r, 503, "BROKER_UNAVAILABLE");
  expect_error(q, 503, "BROKER_UNAVAILABLE");
  EXPECT_LT(detect_ms, 1000.0);
  // The client was told 503: the POST the broker had queued must not run once it wakes up,
  // even after /hang finishes (5 s after it arrived) and frees the worker.
  EXPECT_FALSE(upstream.wait_for_hits(
      "/queued", 1,
      std::chrono::duration_cast<std::chrono::milliseconds>(hang_seen + 6500ms - Clock::now())))
      << topology.logs();
  std::cerr << "[measure] frozen broker (SIGSTOP): pending request answered 503 after " << detect_ms
            << " ms (heartbeat 0.1 s x liveness 4)\n";

  const auto resumed_at = Clock::now();
  ASSERT_TRUE(topology.wait_ready(10s)) << topology.logs();
  std::cerr << "[measure] /readyz 200 again " << ms_since(resumed_at)
            << " ms after the broker resumed\n";
  // On waking, the broker saw its own stall and answered what it had queued, without running it.
  EXPECT_TRUE(wait_until(
      [&] {
        const auto s = nlohmann::json::parse(topology.admin("/services").body, nullptr, false);
        return s.is_object() && s["broker"]["counters"].value("stall_drops", 0) >= 1;
      },
      5s, 20ms))
      << topology.admin("/services").body;
  EXPECT_EQ(topology.get("/rule-engine/again").status, 200u);
}

// --- graceful stop -----------------------------------------------------------------------

// Exit 0 also checks the teardown: under ASan, links destroyed after the io_context that ran
// them (one HTTP thread) read its freed reactor and abort the process.
void sigterm_finishes_in_flight_requests(int gateway_threads) {
  TestUpstream upstream;
  upstream.script("/work", {Step::respond(200, "done").after(1s)});
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  options.gateway_threads = gateway_threads;
  Topology topology(options);
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  const auto port = topology.gateway_port();

  std::vector<std::future<HttpResult>> in_flight;
  for (int i = 0; i < 3; ++i) {
    in_flight.push_back(std::async(std::launch::async, [port] {
      return http_request(port, "POST", "/rule-engine/work", {}, "job", 10s);
    }));
  }
  ASSERT_TRUE(upstream.wait_for_hits("/work", 3, 5s));
  ASSERT_FALSE(topology.gateway().signal(SIGTERM));
  for (auto& f : in_flight) {
    const auto r = f.get();
    ASSERT_TRUE(r.ok()) << r.error.message() << topology.logs();
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, "done");
  }
  const auto status = topology.gateway().wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << describe_wait_status(*status) << "\n"
      << topology.gateway().log_text();
  EXPECT_FALSE(http_request(port, "GET", "/healthz", {}, {}, 1s).ok());
}

TEST(GatewayShutdown, SigtermFinishesInFlightRequests) { sigterm_finishes_in_flight_requests(2); }

TEST(GatewayShutdown, SigtermFinishesInFlightRequestsWithTheLinksOnTheHttpThread) {
  sigterm_finishes_in_flight_requests(1);
}

// --- authentication ----------------------------------------------------------------------

// HS256 tokens made once with PyJWT (python3-jwt) under kSecret; HS256 is deterministic, so
// they are fixed test data. The valid one expires in 2100, the expired one in 2001.
constexpr const char* kSecret = "courier-integration-test-secret-0123456789";
constexpr const char* kValidToken =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0."
    "F_wQL-jPeqy3QIvtAnhoUC79JjZRLuhahlqoyPYEUew";
constexpr const char* kExpiredToken =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTAwMDAwMDAwMH0."
    "KWT4LqJhB0H04KcVuAfe2ecftGv8YJVWrhHpAGZmSeM";
constexpr const char* kOtherSecretToken =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0."
    "CSabxqsooOnv77sEt0SOO6d37TWkH5ZT3MKuutyEIhs";

class GatewayAuthTest : public SharedTopologyTest<GatewayAuthTest> {
 public:
  static void configure(TopologyOptions& options) {
    options.env = {{"COURIER_AUTH_JWT_SECRET", kSecret},
                   {"COURIER_AUTH_API_KEYS", "ops:key-for-ops"}};
  }

 protected:
  static HttpResult get(const HeaderList& headers) {
    return topology_->get("/rule-engine/private", headers);
  }
};

TEST_F(GatewayAuthTest, ValidTokenPassesAndItsSubjectReachesTheWorker) {
  const auto r = get(
      {{"Authorization", std::string("Bearer ") + kValidToken}, {"X-Courier-Subject", "mallory"}});
  ASSERT_EQ(r.status, 200u) << r.body;
  const auto seen = upstream_->last_request();
  ASSERT_TRUE(seen);
  std::vector<std::string> subjects;
  for (const auto& [name, value] : seen->headers) {
    if (name == "X-Courier-Subject" || name == "x-courier-subject") subjects.push_back(value);
  }
  EXPECT_EQ(subjects, std::vector<std::string>{"alice"});
}

TEST_F(GatewayAuthTest, ExpiredTokenIs401) {
  expect_error(get({{"Authorization", std::string("Bearer ") + kExpiredToken}}), 401,
               "UNAUTHORIZED");
}

TEST_F(GatewayAuthTest, BadSignatureIs401) {
  expect_error(get({{"Authorization", std::string("Bearer ") + kOtherSecretToken}}), 401,
               "UNAUTHORIZED");
}

TEST_F(GatewayAuthTest, MissingCredentialsAre401WithChallenge) {
  const auto before = upstream_->request_count();
  const auto r = get({{"X-Courier-Subject", "mallory"}});
  expect_error(r, 401, "UNAUTHORIZED");
  EXPECT_EQ(r.header("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(upstream_->request_count(), before);
}

TEST_F(GatewayAuthTest, ExpectContinueWithoutCredentialsIs401WithoutContinue) {
  const auto before = upstream_->request_count();
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(topology_->gateway_port()));
  ASSERT_FALSE(conn.send_raw(expect_continue_head("/rule-engine/upload", 5)));
  const auto r = conn.receive(3s);
  expect_error(r, 401, "UNAUTHORIZED");
  EXPECT_EQ(r.header("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(upstream_->request_count(), before);
}

TEST_F(GatewayAuthTest, ExpectContinueWithAValidKeyGets100) {
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(topology_->gateway_port()));
  ASSERT_FALSE(
      conn.send_raw(expect_continue_head("/rule-engine/upload", 5, "X-API-Key: key-for-ops\r\n")));
  const auto interim = conn.receive(3s);
  ASSERT_TRUE(interim.ok()) << interim.error.message();
  EXPECT_EQ(interim.status, 100u);
  ASSERT_FALSE(conn.send_raw("abcde"));
  EXPECT_EQ(conn.receive().status, 200u);
  // The credentials verified on the head carry their subject to the upstream with the body.
  ASSERT_TRUE(upstream_->last_request().has_value());
  EXPECT_EQ(upstream_->last_request()->header("X-Courier-Subject"), "ops");
  EXPECT_EQ(upstream_->last_request()->body, "abcde");
}

TEST_F(GatewayAuthTest, ApiKeyPassesWithItsSubject) {
  ASSERT_EQ(get({{"X-API-Key", "key-for-ops"}}).status, 200u);
  EXPECT_EQ(upstream_->last_request()->header("X-Courier-Subject"), "ops");
  EXPECT_FALSE(upstream_->last_request()->header("X-API-Key").has_value())
      << "the gateway's credential must not reach the upstream";
  expect_error(get({{"X-API-Key", "wrong"}}), 401, "UNAUTHORIZED");
}

TEST_F(GatewayAuthTest, ProbesAndTheAdminListenerNeedNoCredentials) {
  EXPECT_EQ(topology_->get("/healthz").status, 200u);
  EXPECT_EQ(topology_->get("/readyz").status, 200u);
  EXPECT_EQ(topology_->get("/readyz/rule-engine").status, 200u);
  EXPECT_EQ(topology_->admin("/metrics").status, 200u);
  EXPECT_EQ(topology_->admin("/services").status, 200u);
}

TEST_F(GatewayAuthTest, OnThePublicPortAdminPathsAreServicePathsAndNeedCredentials) {
  for (const auto* path : {"/metrics", "/services", "/dashboard"}) {
    expect_error(topology_->get(path), 401, "UNAUTHORIZED");
  }
}

TEST(GatewayAuthConfig, ShortSecretStopsStartup) {
  ChildProcess p(COURIER_GATEWAY_BIN, {"--listen", "127.0.0.1:0"},
                 {{"COURIER_AUTH_JWT_SECRET", "short"}});
  const auto status = p.wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << describe_wait_status(*status);
  EXPECT_NE(p.log_text().find("gateway.auth.jwt_secret"), std::string::npos) << p.log_text();
}

}  // namespace
}  // namespace courier::testing
