// End-to-end fidelity through the real gateway, broker and workers against a real HTTP upstream.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/integration/shared_topology.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;

class ProxyTest : public SharedTopologyTest<ProxyTest> {
 public:
  static void configure(TopologyOptions& options) {
    options.env = {{"PROXY_RETRY_MIN_WAIT", "0.01"}, {"PROXY_RETRY_MAX_WAIT", "0.05"}};
  }
};

std::string binary_body(const std::string& tag) {
  std::string body = "payload-" + tag + ":";
  for (int i = 0; i < 256; ++i) body += static_cast<char>(i);  // every octet, NUL included
  return body;
}

TEST_F(ProxyTest, EveryMethodPassesThroughWithItsBodyTargetAndHeaders) {
  for (const std::string method : {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}) {
    SCOPED_TRACE(method);
    const auto body = binary_body(method);
    const std::string path = "/items/a%20b/" + method;
    const auto before = upstream_->request_count();
    const auto r = http_request(port(), method, "/rule-engine" + path + "?x=1&x=2&empty=&flag",
                                {{"X-Custom", "one"},
                                 {"X-Custom", "two"},
                                 {"Content-Type", "application/octet-stream"},
                                 {"Connection", "keep-alive, X-Hop"},
                                 {"X-Hop", "must not pass"},
                                 {"Keep-Alive", "timeout=5"}},
                                body);
    ASSERT_TRUE(r.ok()) << r.error.message();
    EXPECT_EQ(r.status, 200u);
    ASSERT_TRUE(upstream_->wait_for_requests(before + 1, 5s));
    const auto seen = *upstream_->last_request();
    EXPECT_EQ(seen.method, method);
    EXPECT_EQ(seen.target, path + "?x=1&x=2&empty=&flag");
    EXPECT_EQ(seen.body, body);
    std::vector<std::string> custom;
    for (const auto& [name, value] : seen.headers) {
      if (name == "X-Custom") custom.push_back(value);
      EXPECT_NE(name, "X-Hop");
      EXPECT_NE(name, "Keep-Alive");
    }
    EXPECT_EQ(custom, (std::vector<std::string>{"one", "two"}));
    EXPECT_EQ(seen.header("Content-Type"), "application/octet-stream");
    EXPECT_TRUE(seen.header("X-Request-ID").has_value());
    EXPECT_EQ(r.header("X-Courier-Attempts"), "1");
  }
}

TEST_F(ProxyTest, HeadGetsHeadersWithoutBody) {
  const auto r = http_request(port(), "HEAD", "/rule-engine/thing");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_TRUE(r.body.empty());
  EXPECT_EQ(upstream_->last_request()->method, "HEAD");
}

TEST_F(ProxyTest, UpstreamStatusHeadersAndBodyComeBackUnchanged) {
  upstream_->script(
      "/teapot",
      {Step::respond(
          418, binary_body("reply"),
          {{"Set-Cookie", "a=1; Path=/"}, {"Set-Cookie", "b=2; Path=/"}, {"X-Upstream", "yes"}})});
  const auto r = http_request(port(), "GET", "/ai-gm/teapot");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 418u);
  EXPECT_EQ(r.body, binary_body("reply"));
  std::vector<std::string> cookies;
  for (const auto& [name, value] : r.headers) {
    if (name == "Set-Cookie") cookies.push_back(value);
  }
  EXPECT_EQ(cookies, (std::vector<std::string>{"a=1; Path=/", "b=2; Path=/"}));
  EXPECT_EQ(r.header("X-Upstream"), "yes");
}

TEST_F(ProxyTest, ChunkedUpstreamResponseIsReassembled) {
  upstream_->script("/chunked", {Step::chunked(200, std::string(100'000, 'c'))});
  const auto r = http_request(port(), "GET", "/rule-engine/chunked");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, std::string(100'000, 'c'));
}

TEST_F(ProxyTest, KeepAliveConnectionServesManyRequests) {
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(port()));
  for (int i = 0; i < 20; ++i) {
    const auto r = conn.request("GET", "/rule-engine/k/" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << i << ": " << r.error.message();
    EXPECT_EQ(r.status, 200u);
    EXPECT_TRUE(r.keep_alive);
  }
}

TEST_F(ProxyTest, PipelinedRequestsAreAnsweredInOrder) {
  TestHttpConnection conn;
  ASSERT_FALSE(conn.connect(port()));
  std::string batch;
  for (int i = 0; i < 5; ++i) {
    batch += "GET /rule-engine/p/" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  }
  ASSERT_FALSE(conn.send_raw(batch));
  for (int i = 0; i < 5; ++i) {
    const auto r = conn.receive();
    ASSERT_TRUE(r.ok()) << r.error.message();
    EXPECT_EQ(r.header("X-Echo-Target"), "/p/" + std::to_string(i));
  }
}

TEST_F(ProxyTest, RequestIdIsKeptWhenValidAndGeneratedOtherwise) {
  auto r = topology_->get("/rule-engine/id", {{"X-Request-ID", "abc-123.x"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.header("X-Request-ID"), "abc-123.x");
  EXPECT_EQ(upstream_->last_request()->header("X-Request-ID"), "abc-123.x");

  r = topology_->get("/rule-engine/id", {{"X-Request-ID", "bad id with spaces"}});
  ASSERT_TRUE(r.ok());
  const auto generated = r.header("X-Request-ID");
  ASSERT_TRUE(generated.has_value());
  EXPECT_EQ(generated->size(), 32u);
  EXPECT_EQ(upstream_->last_request()->header("X-Request-ID"), generated);
}

void expect_error_json(const HttpResult& r, unsigned status, const std::string& code) {
  EXPECT_EQ(r.status, status);
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  const auto j = nlohmann::json::parse(r.body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.body;
  EXPECT_EQ(j.value("status", ""), "error");
  EXPECT_EQ(j.value("code", ""), code);
  EXPECT_FALSE(j.value("message", "").empty());
  EXPECT_TRUE(j.contains("detail"));
  EXPECT_EQ(j.size(), 4u) << r.body;
}

TEST_F(ProxyTest, UnknownServiceIs404Json) {
  expect_error_json(topology_->get("/no-such-service/x"), 404, "UNKNOWN_SERVICE");
  expect_error_json(topology_->get("/"), 404, "UNKNOWN_SERVICE");
}

TEST_F(ProxyTest, MalformedRequestGets400AndOthersAreStillServed) {
  const auto raw = raw_exchange(port(), "THIS IS NOT HTTP\r\n\r\n");
  EXPECT_NE(raw.data.find(" 400 "), std::string::npos) << raw.data;
  EXPECT_NE(raw.data.find("BAD_REQUEST"), std::string::npos) << raw.data;
  EXPECT_EQ(topology_->get("/rule-engine/after").status, 200u);
}

TEST_F(ProxyTest, InvalidRequestTimeoutHeaderIs400) {
  expect_error_json(topology_->get("/rule-engine/x", {{"X-Request-Timeout", "soon"}}), 400,
                    "BAD_REQUEST");
}

TEST_F(ProxyTest, HealthAndReadinessEndpointsAnswer) {
  EXPECT_EQ(topology_->get("/healthz").status, 200u);
  EXPECT_EQ(topology_->get("/readyz").status, 200u);
  const auto services = topology_->admin("/services");
  ASSERT_EQ(services.status, 200u);
  const auto j = nlohmann::json::parse(services.body);
  EXPECT_TRUE(j["broker_connected"].get<bool>());
  EXPECT_GE(j["services"]["rule-engine"]["workers"].get<int>(), 1);
}

// --- start-up behaviour of each binary, without a topology -------------------------------

int run_to_exit(const std::string& bin, const std::vector<std::string>& args, const EnvList& env,
                std::string* log = nullptr) {
  ChildProcess p(bin, args, env);
  const auto status = p.wait_exit(10s);
  if (log) *log = p.log_text();
  if (!status || !WIFEXITED(*status)) return -1;
  return WEXITSTATUS(*status);
}

TEST(Startup, EveryBinaryHasHelp) {
  for (const std::string bin :
       {COURIER_BROKER_BIN, COURIER_WORKER_BIN, COURIER_GATEWAY_BIN, COURIER_DEMO_BIN}) {
    std::string log;
    EXPECT_EQ(run_to_exit(bin, {"--help"}, {}, &log), 0) << bin;
    EXPECT_NE(log.find("Usage"), std::string::npos) << log;
  }
}

TEST(Startup, BadSettingStopsStartupNamingIt) {
  std::string log;
  EXPECT_EQ(run_to_exit(COURIER_GATEWAY_BIN, {"--listen", "127.0.0.1:0"},
                        {{"PROXY_TIMEOUT", "abc"}}, &log),
            2);
  EXPECT_NE(log.find("PROXY_TIMEOUT"), std::string::npos) << log;

  EXPECT_EQ(run_to_exit(COURIER_WORKER_BIN, {"--service", "rule-engine"},
                        {{"RULE_ENGINE_URL", "ftp://nope"}}, &log),
            2);
  EXPECT_NE(log.find("RULE_ENGINE_URL"), std::string::npos) << log;

  EXPECT_EQ(run_to_exit(COURIER_WORKER_BIN, {"--service", "nope"}, {}, &log), 2);
  EXPECT_NE(log.find("nope"), std::string::npos) << log;

  EXPECT_EQ(run_to_exit(COURIER_BROKER_BIN, {"--liveness", "0"}, {}, &log), 2);
  EXPECT_NE(log.find("--liveness"), std::string::npos) << log;
}

TEST(Startup, AMisspeltComponentKeyStopsEveryBinary) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("courier-typo-" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(path) << "gateway:\n  thraeds: 2\nworker:\n  concurency: 4\n";
  for (const std::string bin : {COURIER_BROKER_BIN, COURIER_WORKER_BIN, COURIER_GATEWAY_BIN}) {
    std::string log;
    EXPECT_EQ(run_to_exit(bin, {"--config", path.string()}, {}, &log), 2) << bin;
    EXPECT_NE(log.find("unknown setting"), std::string::npos) << log;
    EXPECT_EQ(run_to_exit(bin, {"--set", "gateway.max_bodyy=10"}, {}, &log), 2) << bin;
    EXPECT_NE(log.find("gateway.max_bodyy"), std::string::npos) << log;
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace courier::testing
