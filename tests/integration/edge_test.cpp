// The gateway's HTTP edge against hostile clients, over raw sockets: request framing
// (Transfer-Encoding, Content-Length), chunked trailers, credentials checked on the head before any
// body is read, and connection limits (per client address; idle eviction at the global cap).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/integration/shared_topology.hpp"
#include "tests/unit/gateway/prometheus_text.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;

// The gateway's resident set in KiB, from /proc/PID/status.
long rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  }
  return -1;
}

// Status lines: at the start, or at the start of a line.
std::size_t responses_in(const std::string& data) {
  std::size_t n = data.starts_with("HTTP/1.") ? 1 : 0;
  for (auto pos = data.find("\nHTTP/1."); pos != std::string::npos;
       pos = data.find("\nHTTP/1.", pos + 1)) {
    ++n;
  }
  return n;
}

void expect_code(const HttpResult& r, unsigned status, const std::string& code) {
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, status) << r.body;
  const auto j = nlohmann::json::parse(r.body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.body;
  EXPECT_EQ(j.value("code", ""), code) << r.body;
}

// --- framing ------------------------------------------------------------------------------

class EdgeFramingTest : public SharedTopologyTest<EdgeFramingTest> {
 public:
  static void configure(TopologyOptions&) {}
};

const std::string kSmuggled = "GET /rule-engine/SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n";

// Each is refused with one 400 and a close: the bytes after the head never become a request.
void expect_refused_without_smuggling(std::uint16_t port, const std::string& request) {
  const auto raw = raw_exchange(port, request, 5s);
  EXPECT_TRUE(raw.data.starts_with("HTTP/1.1 400 ")) << request << "\n-> " << raw.data;
  EXPECT_EQ(responses_in(raw.data), 1u) << request << "\n-> " << raw.data;
  EXPECT_TRUE(raw.peer_closed) << request;
}

TEST_F(EdgeFramingTest, TransferEncodingOtherThanChunkedIs400AndItsBodyIsNeverARequest) {
  for (const std::string te : {
           "Transfer-Encoding: gzip\r\n",
           "Transfer-Encoding: chunked, gzip\r\n",
           "Transfer-Encoding: gzip, chunked\r\n",
           "Transfer-Encoding: xchunked\r\n",
           "Transfer-Encoding: identity\r\n",
           "Transfer-Encoding:\r\n",
           "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
           "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
       }) {
    expect_refused_without_smuggling(
        port(), "POST /rule-engine/te HTTP/1.1\r\nHost: x\r\n" + te + "\r\n" + kSmuggled);
  }
  EXPECT_EQ(upstream_->hits("/te"), 0u);
  EXPECT_EQ(upstream_->hits("/SMUGGLED"), 0u);
}

TEST_F(EdgeFramingTest, TransferEncodingBesideContentLengthIs400) {
  for (const std::string framing : {
           "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
           "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
           "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n",
       }) {
    expect_refused_without_smuggling(port(), "POST /rule-engine/te-cl HTTP/1.1\r\nHost: x\r\n" +
                                                 framing + "\r\nhello" + kSmuggled);
  }
  EXPECT_EQ(upstream_->hits("/te-cl"), 0u);
  EXPECT_EQ(upstream_->hits("/SMUGGLED"), 0u);
}

TEST_F(EdgeFramingTest, ContentLengthsThatDifferAre400) {
  for (const std::string framing : {
           "Content-Length: 5\r\nContent-Length: 6\r\n",
           "Content-Length: 5, 6\r\n",
           "Content-Length: 5\r\nContent-Length: \r\n",
       }) {
    expect_refused_without_smuggling(port(), "POST /rule-engine/cl HTTP/1.1\r\nHost: x\r\n" +
                                                 framing + "\r\nhello!" + kSmuggled);
  }
  EXPECT_EQ(upstream_->hits("/cl"), 0u);
  EXPECT_EQ(upstream_->hits("/SMUGGLED"), 0u);
}

TEST_F(EdgeFramingTest, ChunkedInHttp10Is400) {
  expect_refused_without_smuggling(port(),
                                   "POST /rule-engine/te10 HTTP/1.0\r\nHost: x\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" +
                                       kSmuggled);
  EXPECT_EQ(upstream_->hits("/te10"), 0u);
}

TEST_F(EdgeFramingTest, ChunkedInAnyCaseWithSpacesIsStillAccepted) {
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(port()));
  ASSERT_FALSE(conn.send_raw(
      "POST /rule-engine/chunked-ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  ChunKed \r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n"));
  const auto r = conn.receive();
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  ASSERT_TRUE(upstream_->last_request());
  EXPECT_EQ(upstream_->last_request()->body, "hello");
  EXPECT_EQ(conn.request("GET", "/rule-engine/next").status, 200u) << "the connection is kept";
}

// --- trailers -----------------------------------------------------------------------------

TEST_F(EdgeFramingTest, TrailerFieldsNeverActAsHeadersNorReachTheUpstream) {
  upstream_->script("/trailers", {Step::respond(200, "slow").after(1s)});
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(port()));
  ASSERT_FALSE(conn.send_raw(
      "POST /rule-engine/trailers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
      "X-Head-Field: h\r\n\r\n"
      "5\r\nhello\r\n0\r\n"
      "X-Request-Timeout: 0.2\r\nX-Request-ID: from-a-trailer\r\n"
      "Idempotency-Key: from-a-trailer\r\nX-Trailer-Only: t\r\nX-Head-Field: from-a-trailer\r\n"
      "\r\n"));
  const auto r = conn.receive(5s);
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u) << "X-Request-Timeout in a trailer was obeyed: " << r.body;
  EXPECT_NE(r.header("X-Request-ID").value_or(""), "from-a-trailer");
  const auto seen = upstream_->last_request();
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->body, "hello");
  for (const auto& [name, value] : seen->headers) {
    EXPECT_NE(value, "from-a-trailer") << name;
    EXPECT_NE(name, "X-Trailer-Only");
  }
  EXPECT_EQ(seen->header("X-Head-Field"), "h");
}

TEST_F(EdgeFramingTest, EndlessChunkLinesAndTrailersAreRefusedNotBuffered) {
  const std::string head =
      "POST /rule-engine/endless HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const std::string start : {"5;ext=", "0\r\nX-Endless: "}) {
    TestHttpConnection conn;
    ASSERT_FALSE(conn.connect(port()));
    ASSERT_FALSE(conn.send_raw(head + start));
    const std::string filler(64 * 1024, 'a');
    for (int i = 0; i < 32; ++i) {
      if (conn.send_raw(filler, 2s)) break;  // the gateway stopped reading
    }
    const auto r = conn.receive(5s);
    ASSERT_TRUE(r.ok()) << start << ": " << r.error.message();
    EXPECT_GE(r.status, 400u) << start;
    EXPECT_LT(r.status, 500u) << start;
  }
  EXPECT_EQ(upstream_->hits("/endless"), 0u);
}

// --- credentials on the head ----------------------------------------------------------------

class EdgeAuthTest : public SharedTopologyTest<EdgeAuthTest> {
 public:
  static void configure(TopologyOptions& options) {
    options.env = {{"COURIER_AUTH_API_KEYS", "ops:key-for-ops"}};
  }
};

constexpr std::size_t kBigBody = 8u << 20;  // the default body limit

std::string post_head(const std::string& target, std::size_t length,
                      const std::string& extra = "") {
  return "POST " + target + " HTTP/1.1\r\nHost: x\r\n" + extra +
         "Content-Length: " + std::to_string(length) + "\r\n\r\n";
}

TEST_F(EdgeAuthTest, AnUnauthenticatedPostIs401BeforeItsBodyIsSentAndTheConnectionCloses) {
  const auto before = upstream_->request_count();
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(port()));
  ASSERT_FALSE(conn.send_raw(post_head("/rule-engine/upload", kBigBody)));
  // Not a byte of the body sent: the gateway answers the head alone.
  const auto r = conn.receive(3s);
  expect_code(r, 401, "UNAUTHORIZED");
  EXPECT_FALSE(r.keep_alive);
  EXPECT_TRUE(conn.read_until_close(5s).peer_closed);
  EXPECT_EQ(upstream_->request_count(), before);
}

TEST_F(EdgeAuthTest, AnUnauthenticatedChunkedPostIs401AtOnce) {
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(port()));
  ASSERT_FALSE(conn.send_raw(
      "POST /rule-engine/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4000\r\n"));
  const auto r = conn.receive(3s);
  expect_code(r, 401, "UNAUTHORIZED");
  EXPECT_FALSE(r.keep_alive);
  EXPECT_TRUE(conn.read_until_close(5s).peer_closed);
}

TEST_F(EdgeAuthTest, AnApiKeyOnlyInATrailerIs401) {
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(port()));
  ASSERT_FALSE(conn.send_raw(
      "POST /rule-engine/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\nX-API-Key: key-for-ops\r\n\r\n"));
  expect_code(conn.receive(3s), 401, "UNAUTHORIZED");
  EXPECT_EQ(upstream_->hits("/upload"), 0u);
}

TEST_F(EdgeAuthTest, ASmallRefusedRequestKeepsItsConnectionAndItsBodyIsNotARequest) {
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(port()));
  const auto get = conn.request("GET", "/rule-engine/small");
  expect_code(get, 401, "UNAUTHORIZED");
  EXPECT_TRUE(get.keep_alive);
  // A body that is itself a request: drained with its request, not parsed as the next one.
  const auto post = conn.request("POST", "/rule-engine/small", {}, kSmuggled);
  expect_code(post, 401, "UNAUTHORIZED");
  EXPECT_TRUE(post.keep_alive);
  const auto ok = conn.request("GET", "/rule-engine/small", {{"X-API-Key", "key-for-ops"}});
  ASSERT_TRUE(ok.ok()) << ok.error.message();
  EXPECT_EQ(ok.status, 200u);
  EXPECT_EQ(upstream_->hits("/SMUGGLED"), 0u);
}

TEST_F(EdgeAuthTest, FiftyUnauthenticatedBigPostsDoNotGrowTheGateway) {
  const auto pid = topology_->gateway().pid();
  const long before = rss_kib(pid);
  ASSERT_GT(before, 0);
  // Each sends all of its body but the last byte and stays open: a gateway that buffered bodies
  // before checking credentials would now hold 50 x 8 MiB.
  std::vector<std::unique_ptr<TestHttpConnection>> conns;
  const std::string body(kBigBody - 1, 'b');
  for (int i = 0; i < 50; ++i) {
    auto c = std::make_unique<TestHttpConnection>();
    ASSERT_FALSE(c->connect(port()));
    if (!c->send_raw(post_head("/rule-engine/upload", kBigBody))) {
      (void)c->send_raw(body, 10s);  // the gateway may close first
    }
    conns.push_back(std::move(c));
  }
  const long after = rss_kib(pid);
  std::cerr << "[measure] gateway VmRSS " << before / 1024 << " MiB before, " << after / 1024
            << " MiB after 50 unauthenticated 8 MiB POSTs\n";
  EXPECT_LT(after - before, 64 * 1024) << "KiB";
  conns.clear();
  EXPECT_EQ(topology_->get("/rule-engine/after", {{"X-API-Key", "key-for-ops"}}).status, 200u);
}

TEST_F(EdgeAuthTest, AValidKeyOnTheHeadStillGetsItsBodyThrough) {
  const std::string body(1u << 20, 'k');
  const auto r = http_request(port(), "POST", "/rule-engine/with-key",
                              {{"X-API-Key", "key-for-ops"}}, body, 10s);
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  ASSERT_TRUE(upstream_->last_request());
  EXPECT_EQ(upstream_->last_request()->body.size(), body.size());
  EXPECT_EQ(upstream_->last_request()->header("X-Courier-Subject"), "ops");
}

// --- connection limits ----------------------------------------------------------------------

// A keep-alive connection that has had one answered request. Retried until the deadline: the
// gateway may not yet have noticed that an earlier connection (a readiness probe) closed.
std::unique_ptr<TestHttpConnection> open_idle(std::uint16_t port, const std::string& from,
                                              const std::string& target) {
  std::unique_ptr<TestHttpConnection> out;
  wait_until(
      [&] {
        auto c = std::make_unique<TestHttpConnection>();
        if (c->connect_from(from, port)) return false;
        const auto r = c->request("GET", target, {}, {}, 2s);
        if (!r.ok() || r.status != 200 || !r.keep_alive) return false;
        out = std::move(c);
        return true;
      },
      5s, 20ms);
  return out;
}

// A fresh connection from `from` is closed without an answer.
void expect_closed_at_accept(std::uint16_t port, const std::string& from) {
  TestHttpConnection c;
  if (c.connect_from(from, port)) return;  // refused outright is fine too
  const auto r = c.request("GET", "/rule-engine/refused", {}, {}, 3s);
  EXPECT_EQ(r.error, make_error_code(ClientError::kClosed)) << r.status << " " << r.body;
}

// Holds the connection until the gateway counts it as its only one (the admin listener's
// connections are not counted).
std::unique_ptr<TestHttpConnection> sole_connection(const Topology& topology) {
  auto c = open_idle(topology.gateway_port(), "127.0.0.1", "/healthz");
  if (!c) return c;
  const bool alone = wait_until(
      [&] {
        const auto r = topology.admin("/metrics", {}, 2s);
        return r.ok() && prometheus_text::parse(r.body).value("courier_gateway_connections") == 1.0;
      },
      5s, 20ms);
  if (!alone) c.reset();
  return c;
}

class EdgeLimitsTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> gateway_args) {
    TopologyOptions options;
    options.upstreams = {{"rule-engine", upstream_.url()}, {"ai-gm", upstream_.url()}};
    options.gateway_args = std::move(gateway_args);
    topology_ = std::make_unique<Topology>(std::move(options));
    ASSERT_TRUE(topology_->wait_ready()) << topology_->logs();
  }
  void TearDown() override {
    if (HasFailure() && topology_) std::cerr << topology_->logs();
  }
  std::uint16_t port() const { return topology_->gateway_port(); }

  TestUpstream upstream_;
  std::unique_ptr<Topology> topology_;
};

TEST_F(EdgeLimitsTest, OneAddressOverItsLimitIsClosedAtAcceptAndOthersAreServed) {
  start({"--max-connections-per-client", "4"});
  std::vector<std::unique_ptr<TestHttpConnection>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(open_idle(port(), "127.0.0.1", "/rule-engine/held"));
    ASSERT_TRUE(held.back()) << "connection " << i;
  }
  expect_closed_at_accept(port(), "127.0.0.1");

  TestHttpConnection other;
  ASSERT_FALSE(other.connect_from("127.0.0.2", port()));
  EXPECT_EQ(other.request("GET", "/rule-engine/other").status, 200u);
  EXPECT_EQ(other.request("GET", "/healthz").status, 200u);
  const auto metrics = topology_->admin("/metrics");
  EXPECT_GE(prometheus_text::parse(metrics.body)
                .value("courier_gateway_rejected_connections_total")
                .value_or(0),
            1.0)
      << metrics.body;

  EXPECT_EQ(held[1]->request("GET", "/rule-engine/held").status, 200u) << "held ones stay";
  held[0]->close();
  EXPECT_TRUE(open_idle(port(), "127.0.0.1", "/rule-engine/again")) << "a freed place is reused";
}

TEST_F(EdgeLimitsTest, AtTheCapTheLongestIdleConnectionMakesRoomForANewClient) {
  constexpr int kCap = 6;
  start({"--max-connections", std::to_string(kCap)});
  std::vector<std::unique_ptr<TestHttpConnection>> idle;
  idle.push_back(sole_connection(*topology_));
  ASSERT_TRUE(idle.back());
  for (int i = 1; i < kCap; ++i) {
    idle.push_back(open_idle(port(), "127.0.0.1", "/rule-engine/idle"));
    ASSERT_TRUE(idle.back()) << "connection " << i;
  }
  // Every place is taken, all by idle keep-alive connections of one client.
  TestHttpConnection newcomer;
  ASSERT_FALSE(newcomer.connect_from("127.0.0.2", port()));
  const auto r = newcomer.request("GET", "/rule-engine/newcomer");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  // The one idle longest made room, closed without a word; the newest is still served.
  const auto oldest = idle[0]->read_until_close(3s);
  EXPECT_TRUE(oldest.peer_closed);
  EXPECT_EQ(oldest.data, "");
  EXPECT_EQ(idle[kCap - 1]->request("GET", "/rule-engine/idle").status, 200u);
  EXPECT_EQ(newcomer.request("GET", "/healthz").status, 200u);
}

TEST_F(EdgeLimitsTest, AtTheCapConnectionsWithARequestInFlightAreNeverClosed) {
  constexpr int kCap = 3;
  start({"--max-connections", std::to_string(kCap)});
  upstream_.script("/slow", {Step::respond(200, "done").after(3s)});
  std::vector<std::unique_ptr<TestHttpConnection>> busy;
  busy.push_back(sole_connection(*topology_));
  ASSERT_TRUE(busy.back());
  ASSERT_FALSE(busy[0]->send("GET", "/rule-engine/slow"));
  for (int i = 1; i < kCap; ++i) {
    busy.push_back(std::make_unique<TestHttpConnection>());
    ASSERT_FALSE(busy.back()->connect(port()));
    ASSERT_FALSE(busy.back()->send("GET", "/rule-engine/slow"));
  }
  ASSERT_TRUE(upstream_.wait_for_hits("/slow", kCap, 3s));
  expect_closed_at_accept(port(), "127.0.0.2");
  for (auto& c : busy) {
    const auto r = c->receive(5s);
    ASSERT_TRUE(r.ok()) << r.error.message();
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, "done");
  }
}

}  // namespace
}  // namespace courier::testing
