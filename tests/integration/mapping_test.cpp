// The gateway's request and reply mapping end to end, real binaries on loopback: dot segments,
// forwarding headers from untrusted and trusted peers, lookalikes of Courier's headers, generated
// request ids, JWT aud/iss/iat, and forged replies from a hostile peer registered as a worker.
#include <gtest/gtest.h>
#include <jwt.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/envelope.hpp"
#include "common/frames.hpp"
#include "tests/integration/shared_topology.hpp"
#include "tests/support/join_guard.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

nlohmann::json json_of(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  return j.is_object() ? j : nlohmann::json::object();
}

// Names as the upstream received them, for checks that case-insensitive lookup would blur.
std::vector<std::string> names_of(const RecordedRequest& r) {
  std::vector<std::string> out;
  for (const auto& [name, value] : r.headers) out.push_back(name);
  return out;
}

bool has_name_like(const RecordedRequest& r, std::string_view loose) {
  const auto normal = [](std::string s) {
    for (auto& c : s) c = c == '_' ? '-' : static_cast<char>(std::tolower(c));
    return s;
  };
  const auto want = normal(std::string(loose));
  for (const auto& n : names_of(r)) {
    if (normal(n) == want) return true;
  }
  return false;
}

// A second gateway on the shared broker, with its own flags and environment.
class ExtraGateway {
 public:
  ExtraGateway(const Topology& topology, const TestUpstream& upstream,
               std::vector<std::string> args, EnvList env = {}) {
    std::vector<std::string> all = {"--listen",       "127.0.0.1:" + std::to_string(port_.port()),
                                    "--broker",       topology.frontends(),
                                    "--threads",      "1",
                                    "--admin-listen", "off"};
    all.insert(all.end(), args.begin(), args.end());
    EnvList e = {{"COURIER_HEARTBEAT", "0.1"},
                 {"RULE_ENGINE_URL", upstream.url()},
                 {"AI_GM_URL", upstream.url()}};
    e.insert(e.end(), env.begin(), env.end());
    process_ = std::make_unique<ChildProcess>(COURIER_GATEWAY_BIN, all, e);
  }
  std::uint16_t port() const { return port_.port(); }
  bool wait_ready() {
    return wait_until(
        [&] {
          const auto r = http_request(port(), "GET", "/readyz", {}, {}, 500ms);
          return r.ok() && r.status == 200;
        },
        15s, 20ms);
  }
  std::string log() const { return process_->log_text(); }

 private:
  ReservedPort port_{/*for_server=*/true};
  std::unique_ptr<ChildProcess> process_;
};

class MappingTest : public SharedTopologyTest<MappingTest> {
 public:
  static void configure(TopologyOptions&) {}
};

// --- dot segments --------------------------------------------------------------------------

TEST_F(MappingTest, DotSegmentsAre400AndNeverReachTheUpstream) {
  const auto before = upstream_->request_count();
  for (const std::string target :
       {"/rule-engine/../admin", "/rule-engine/a/../../admin", "/rule-engine/%2e%2e/admin",
        "/rule-engine/.%2E/admin", "/rule-engine/..%2Fadmin", "/rule-engine/..%5cadmin",
        "/rule-engine/..;/admin", "/rule-engine/./x", "/rule-engine/x/..?q=1", "/rule-engine/.."}) {
    const auto raw = raw_exchange(
        port(), "GET " + target + " HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 5s);
    EXPECT_EQ(raw.data.rfind("HTTP/1.1 400", 0), 0u) << target << "\n" << raw.data;
    EXPECT_NE(raw.data.find("\"code\":\"BAD_REQUEST\""), std::string::npos) << raw.data;
    EXPECT_NE(raw.data.find(". or .. segments"), std::string::npos) << raw.data;
  }
  EXPECT_EQ(upstream_->request_count(), before);
}

TEST_F(MappingTest, EncodedSlashesAndDotsInNamesGoUpstreamByteForByte) {
  const auto r = http_request(port(), "GET", "/rule-engine/group%2Fproject/.../a..b/.env?x=/../");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(upstream_->last_request().value().target, "/group%2Fproject/.../a..b/.env?x=/../");
}

// --- forwarding headers and lookalikes --------------------------------------------------------

const HeaderList kHostileHeaders = {{"Host", "api.example"},
                                    {"Forwarded", "for=6.6.6.6;proto=https;host=evil"},
                                    {"X-Forwarded-For", "6.6.6.6"},
                                    {"X-Forwarded-Proto", "https"},
                                    {"X-Forwarded-Host", "evil.example"},
                                    {"X-Forwarded-Port", "443"},
                                    {"X-Forwarded-Prefix", "/admin"},
                                    {"X-Real-IP", "6.6.6.6"},
                                    {"X-Courier-Subject", "admin"},
                                    {"X_Courier_Subject", "admin"},
                                    {"x-courier_subject", "admin"},
                                    {"X_Forwarded_For", "6.6.6.6"},
                                    {"X_Request_ID", "forged"},
                                    {"X-Keep", "yes"}};

TEST_F(MappingTest, AnUntrustedClientsForwardingHeadersAreReplacedByTheGatewaysOwn) {
  const auto r = http_request(port(), "GET", "/rule-engine/fwd", kHostileHeaders);
  ASSERT_TRUE(r.ok()) << r.error.message();
  ASSERT_EQ(r.status, 200u);
  const auto seen = upstream_->last_request().value();
  EXPECT_EQ(seen.header("X-Forwarded-For"), "127.0.0.1");
  EXPECT_EQ(seen.header("X-Forwarded-Proto"), "http");
  EXPECT_EQ(seen.header("X-Forwarded-Host"), "api.example");
  EXPECT_EQ(seen.header("X-Keep"), "yes");
  for (const char* gone :
       {"Forwarded", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Real-IP", "X-Courier-Subject"}) {
    EXPECT_FALSE(has_name_like(seen, gone)) << gone;
  }
  const auto names = names_of(seen);
  for (const char* gone :
       {"X_Courier_Subject", "x-courier_subject", "X_Forwarded_For", "X_Request_ID"}) {
    EXPECT_EQ(std::count(names.begin(), names.end(), gone), 0) << gone;
  }
  EXPECT_EQ(std::count_if(names.begin(), names.end(),
                          [](const std::string& n) {
                            return n.find("orwarded-For") != n.npos ||
                                   n.find("orwarded-for") != n.npos;
                          }),
            1);
}

TEST_F(MappingTest, ATrustedProxysForwardingHeadersAreKeptAndItsChainExtended) {
  ExtraGateway trusting(*topology_, *upstream_, {"--trusted-proxies", "127.0.0.0/8"});
  ASSERT_TRUE(trusting.wait_ready()) << trusting.log();
  const auto r = http_request(trusting.port(), "GET", "/rule-engine/fwd", kHostileHeaders);
  ASSERT_TRUE(r.ok()) << r.error.message();
  ASSERT_EQ(r.status, 200u);
  const auto seen = upstream_->last_request().value();
  EXPECT_EQ(seen.header("X-Forwarded-For"), "6.6.6.6, 127.0.0.1");
  EXPECT_EQ(seen.header("X-Forwarded-Proto"), "https");
  EXPECT_EQ(seen.header("X-Forwarded-Host"), "evil.example");
  EXPECT_EQ(seen.header("X-Real-IP"), "6.6.6.6");
  EXPECT_EQ(seen.header("Forwarded"), "for=6.6.6.6;proto=https;host=evil");
  // Trust in a proxy does not extend to Courier's own headers or their lookalikes.
  EXPECT_FALSE(has_name_like(seen, "X-Courier-Subject"));
  const auto names = names_of(seen);
  EXPECT_EQ(std::count(names.begin(), names.end(), "X_Forwarded_For"), 0);
}

TEST_F(MappingTest, AnUntrustedListedBlockDoesNotCoverOtherPeers) {
  ExtraGateway other(*topology_, *upstream_, {}, {{"COURIER_TRUSTED_PROXIES", "10.0.0.0/8, ::1"}});
  ASSERT_TRUE(other.wait_ready()) << other.log();
  const auto r = http_request(other.port(), "GET", "/rule-engine/fwd", kHostileHeaders);
  ASSERT_TRUE(r.ok()) << r.error.message();
  const auto seen = upstream_->last_request().value();
  EXPECT_EQ(seen.header("X-Forwarded-For"), "127.0.0.1");
  EXPECT_EQ(seen.header("X-Forwarded-Proto"), "http");
}

TEST(MappingConfig, ABadTrustedProxyListStopsStartUp) {
  ChildProcess gateway(COURIER_GATEWAY_BIN,
                       {"--listen", "127.0.0.1:0", "--trusted-proxies", "10.0.0.0/33"});
  const auto status = gateway.wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << describe_wait_status(*status);
  EXPECT_NE(gateway.log_text().find("--trusted-proxies"), std::string::npos) << gateway.log_text();
}

// --- generated request ids ---------------------------------------------------------------------

TEST_F(MappingTest, GeneratedRequestIdsAreRandomAndWhatTheUpstreamSaw) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    const auto r = http_request(port(), "GET", "/rule-engine/rid");
    ASSERT_TRUE(r.ok()) << r.error.message();
    const auto id = r.header("X-Request-ID").value_or("");
    ASSERT_EQ(id.size(), 32u) << id;
    EXPECT_EQ(upstream_->last_request().value().header("X-Request-ID"), id);
    ids.push_back(id);
  }
  // A per-process prefix and a counter (the former ids) would share their first half.
  EXPECT_NE(ids[0].substr(0, 16), ids[1].substr(0, 16));
  EXPECT_NE(ids[1].substr(0, 16), ids[2].substr(0, 16));
  const auto given = http_request(port(), "GET", "/rule-engine/rid", {{"X-Request-ID", "mine-1"}});
  EXPECT_EQ(given.header("X-Request-ID"), "mine-1");
}

// --- JWT aud, iss, iat ------------------------------------------------------------------------

const std::string kJwtSecret = "mapping-test-secret-0123456789abcdef";

std::string token(const std::string& claims_json) {
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) throw std::runtime_error("jwt_new");
  std::unique_ptr<jwt_t, void (*)(jwt_t*)> t(raw, jwt_free);
  if (jwt_add_grants_json(raw, claims_json.c_str()) != 0) throw std::runtime_error("grants");
  if (jwt_set_alg(raw, JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(kJwtSecret.data()),
                  static_cast<int>(kJwtSecret.size())) != 0) {
    throw std::runtime_error("jwt_set_alg");
  }
  char* text = jwt_encode_str(raw);
  if (!text) throw std::runtime_error("jwt_encode_str");
  std::string out(text);
  std::free(text);
  return out;
}

TEST_F(MappingTest, JwtAudienceIssuerAndIssuedAtAreChecked) {
  ExtraGateway authed(
      *topology_, *upstream_,
      {"--auth-audience", "courier", "--auth-issuer", "https://id.example", "--auth-leeway", "5"},
      {{"COURIER_AUTH_JWT_SECRET", kJwtSecret}});
  ASSERT_TRUE(authed.wait_ready()) << authed.log();
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const auto claims = [&](const std::string& extra) {
    return "{\"sub\":\"alice\",\"exp\":" + std::to_string(now + 600) + extra + "}";
  };
  const auto call = [&](const std::string& jwt) {
    return http_request(authed.port(), "GET", "/rule-engine/jwt",
                        {{"Authorization", "Bearer " + jwt}});
  };
  const auto good = call(token(claims(R"(,"aud":["other","courier"],"iss":"https://id.example")")));
  ASSERT_TRUE(good.ok()) << good.error.message();
  EXPECT_EQ(good.status, 200u) << good.body;
  EXPECT_EQ(upstream_->last_request().value().header("X-Courier-Subject"), "alice");

  struct Case {
    std::string extra;
    std::string reason;
  };
  const std::vector<Case> bad = {
      {R"(,"aud":"other","iss":"https://id.example")", "token audience is not accepted"},
      {R"(,"iss":"https://id.example")", "token audience is not accepted"},
      {R"(,"aud":"courier","iss":"https://evil.example")", "token issuer is not accepted"},
      {R"(,"aud":"courier","iss":"https://id.example","iat":)" + std::to_string(now + 3600),
       "token issued in the future"},
  };
  for (const auto& c : bad) {
    const auto r = call(token(claims(c.extra)));
    ASSERT_TRUE(r.ok()) << r.error.message();
    EXPECT_EQ(r.status, 401u) << c.extra;
    EXPECT_EQ(json_of(r.body).value("detail", ""), c.reason) << r.body;
  }
}

// --- a hostile peer registered as the rule-engine worker --------------------------------------

// Plays a worker over a raw DEALER: registers, heartbeats, and answers every REQUEST with
// whatever `reply` makes of it (the envelope frame, so it may be garbage).
class FakeWorker {
 public:
  using Reply = std::function<zmq::message_t(const RequestEnvelope&)>;

  FakeWorker(std::string endpoint, Reply reply)
      : endpoint_(std::move(endpoint)), reply_(std::move(reply)), thread_([this] { run(); }) {}
  ~FakeWorker() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    zmq::socket_t socket(context_, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);
    socket.connect(endpoint_);
    ready(socket);
    auto next_heartbeat = SteadyClock::now();
    while (!stop_) {
      zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, 20ms);
      protocol::Frames in;
      while (zmq::recv_multipart(socket, std::back_inserter(in), zmq::recv_flags::dontwait)) {
        on_message(socket, in);
        in.clear();
      }
      if (SteadyClock::now() >= next_heartbeat) {
        protocol::Frames hb;
        protocol::add_header(hb, protocol::Command::kHeartbeat);
        (void)zmq::send_multipart(socket, hb, zmq::send_flags::dontwait);
        next_heartbeat = SteadyClock::now() + 50ms;
      }
    }
  }

  static void ready(zmq::socket_t& socket) {
    protocol::Frames out;
    protocol::add_ready(out, "rule-engine", 16, "fake-worker");
    (void)zmq::send_multipart(socket, out, zmq::send_flags::dontwait);
  }

  void on_message(zmq::socket_t& socket, protocol::Frames& in) {
    protocol::Command command{};
    if (protocol::parse_command(in, 0, command)) return;
    if (command == protocol::Command::kDisconnect) ready(socket);
    if (command != protocol::Command::kRequest) return;
    protocol::RequestHeader header;
    if (protocol::parse_request(in, 0, header)) return;
    RequestEnvelope request;
    if (decode(protocol::view(in[protocol::kEnvelopeIndex]), request)) return;
    protocol::Frames out;
    protocol::add_reply(out, header.id, reply_(request));
    (void)zmq::send_multipart(socket, out, zmq::send_flags::dontwait);
  }

  std::string endpoint_;
  Reply reply_;
  zmq::context_t context_{1};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// What the fake worker answers, by the request's path.
zmq::message_t forged_reply(const RequestEnvelope& request) {
  ReplyEnvelope r;
  r.id = request.id;
  r.status = 200;
  r.body = "secret-body";
  r.worker_id = "fake-worker";
  r.attempts = 1;
  const auto& t = request.target;
  if (t == "/crlf-value") {
    r.headers = {{"X-A", "b\r\nSet-Cookie: evil=1"}};
  } else if (t == "/lf-value") {
    r.headers = {{"X-A", "b\nSet-Cookie: evil=1"}};
  } else if (t == "/crlf-name") {
    r.headers = {{"X-A: b\r\nSet-Cookie", "evil=1"}};
  } else if (t == "/nul-value") {
    r.headers = {{"X-A", std::string("b\0Set-Cookie: evil=1", 20)}};
  } else if (t == "/control-value") {
    r.headers = {{"X-A", "b\x0bSet-Cookie: evil=1"}};
  } else if (t == "/status-101") {
    r.status = 101;
    r.headers = {{"Upgrade", "evil"}};
  } else if (t == "/status-700") {
    r.status = 700;
  } else if (t == "/too-many") {
    r.headers.assign(2000, Header{"Set-Cookie", "evil=1"});
  } else if (t == "/garbage") {
    const std::string garbage = "\x93\x01\xc4\x10not an envelope evil";
    return zmq::message_t(garbage.data(), garbage.size());
  } else {
    r.body = "fine";
    r.headers = {{"X-Fake", "yes"}, {"Content-Type", "text/plain"}};
  }
  return encode(r);
}

TEST(HostileWorker, ForgedRepliesAre502BadResponseAndNothingOfThemReachesTheClient) {
  TestUpstream upstream;
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  options.start = false;
  Topology topology(std::move(options));
  topology.start_broker();
  topology.start_worker("ai-gm");
  FakeWorker fake(topology.backends(), forged_reply);
  topology.start_gateway();
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();

  const std::vector<std::string> forged = {"/crlf-value", "/lf-value",      "/crlf-name",
                                           "/nul-value",  "/control-value", "/status-101",
                                           "/status-700", "/too-many",      "/garbage"};
  for (const auto& path : forged) {
    const auto raw = raw_exchange(topology.gateway_port(),
                                  "GET /rule-engine" + path +
                                      " HTTP/1.1\r\nHost: h\r\nX-Request-ID: rid-7\r\n"
                                      "Connection: close\r\n\r\n",
                                  5s);
    EXPECT_EQ(raw.data.rfind("HTTP/1.1 502", 0), 0u) << path << "\n" << raw.data;
    EXPECT_NE(raw.data.find("\"code\":\"RULE_ENGINE_BAD_RESPONSE\""), std::string::npos)
        << path << "\n"
        << raw.data;
    EXPECT_NE(raw.data.find("X-Request-ID: rid-7"), std::string::npos) << raw.data;
    EXPECT_EQ(raw.data.find("evil"), std::string::npos) << path << "\n" << raw.data;
    EXPECT_EQ(raw.data.find("secret-body"), std::string::npos) << path << "\n" << raw.data;
    EXPECT_EQ(raw.data.find("Upgrade"), std::string::npos) << path << "\n" << raw.data;
  }

  // The same peer's valid reply still goes through, on a kept-alive connection too.
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(topology.gateway_port()));
  for (int i = 0; i < 2; ++i) {
    const auto ok = conn.request("GET", "/rule-engine/fine");
    ASSERT_TRUE(ok.ok()) << ok.error.message();
    EXPECT_EQ(ok.status, 200u);
    EXPECT_EQ(ok.body, "fine");
    EXPECT_EQ(ok.header("X-Fake"), "yes");
    const auto bad = conn.request("GET", "/rule-engine/crlf-value");
    ASSERT_TRUE(bad.ok()) << bad.error.message();
    EXPECT_EQ(bad.status, 502u);
    EXPECT_TRUE(bad.keep_alive);
  }

  // Counted, by service, and logged.
  const auto metrics = topology.admin("/metrics");
  ASSERT_TRUE(metrics.ok());
  const std::string series = "courier_gateway_bad_responses_total{service=\"rule-engine\"} ";
  const auto at = metrics.body.find(series);
  ASSERT_NE(at, std::string::npos) << metrics.body;
  EXPECT_EQ(std::stod(metrics.body.substr(at + series.size())),
            static_cast<double>(forged.size() + 2));
  EXPECT_TRUE(wait_until(
      [&] {
        return topology.gateway().log_text().find("bad reply service=rule-engine") !=
               std::string::npos;
      },
      2s));
  EXPECT_EQ(topology.gateway().log_text().find("evil"), std::string::npos)
      << "the log names the problem, not the bytes";
}

}  // namespace
}  // namespace courier::testing
