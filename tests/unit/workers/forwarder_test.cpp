#include "workers/forwarder.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/http_headers.hpp"
#include "tests/unit/workers/scripted_upstream.hpp"

namespace courier::workers {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using testing::ok_response;
using testing::ScriptedUpstream;
using testing::status_response;

ServiceConfig service_config(UpstreamUrl upstream = {"rules", 8080, "/api",
                                                     "http://rules:8080/api"}) {
  ServiceConfig service;
  service.name = "rule-engine";
  service.upstream = std::move(upstream);
  service.timeout = 2s;
  service.retry_min_wait = 1ms;
  service.retry_max_wait = 5ms;
  return service;
}

RequestEnvelope envelope(std::string method = "GET", std::string target = "/rules?x=1") {
  RequestEnvelope request;
  request.service = "rule-engine";
  request.method = std::move(method);
  request.target = std::move(target);
  request.request_id = "req-1";
  return request;
}

std::vector<std::string> names(const Headers& headers) {
  std::vector<std::string> out;
  for (const auto& h : headers) out.push_back(h.name);
  return out;
}

const Header* find(const Headers& headers, std::string_view name) {
  for (const auto& h : headers) {
    if (h.name == name) return &h;
  }
  return nullptr;
}

TEST(ForwarderHeaders, DropsHopByHopHeadersAndThoseNamedInConnection) {
  const Headers headers = {{"Accept", "*/*"},     {"Connection", "keep-alive, X-Trace"},
                           {"keep-alive", "300"}, {"X-Trace", "1"},
                           {"TE", "trailers"},    {"Transfer-Encoding", "chunked"},
                           {"Upgrade", "h2c"},    {"Proxy-Authorization", "Basic x"},
                           {"X-Custom", "a"},     {"X-Custom", "b"}};
  EXPECT_THAT(names(end_to_end(headers)), ElementsAre("Accept", "X-Custom", "X-Custom"));
}

TEST(ForwarderRequest, PrefixesBasePathAndKeepsQuery) {
  const auto service = service_config();
  EXPECT_EQ(build_upstream_request(envelope("GET", "/rules?x=1"), service)->target(),
            "/api/rules?x=1");
  EXPECT_EQ(build_upstream_request(envelope("GET", ""), service)->target(), "/api");

  auto root = service_config({"rules", 80, "", "http://rules"});
  EXPECT_EQ(build_upstream_request(envelope("GET", ""), root)->target(), "/");
  EXPECT_EQ(build_upstream_request(envelope("GET", "?q=1"), root)->target(), "/?q=1");
}

TEST(ForwarderRequest, SetsHostAndRequestIdReplacingClientValues) {
  auto request = envelope();
  request.headers = {{"Host", "gateway.example"}, {"X-Request-ID", "spoofed"}, {"Accept", "a"}};
  const auto out = build_upstream_request(request, service_config()).value();
  EXPECT_EQ(out[http::field::host], "rules:8080");
  EXPECT_EQ(out["X-Request-ID"], "req-1");
  EXPECT_EQ(out.count("X-Request-ID"), 1u);
  EXPECT_EQ(out.count(http::field::host), 1u);
  EXPECT_EQ(out[http::field::accept], "a");
}

// Beast groups fields by name; only the order among repeats carries meaning (RFC 9110 5.3).
TEST(ForwarderRequest, KeepsRepeatedHeadersInOrder) {
  auto request = envelope();
  request.headers = {{"X-B", "1"}, {"X-A", "2"}, {"X-B", "3"}};
  const auto out = build_upstream_request(request, service_config()).value();
  std::vector<std::string> values;
  for (auto [it, end] = out.equal_range("X-B"); it != end; ++it) values.emplace_back(it->value());
  EXPECT_THAT(values, ElementsAre("1", "3"));
  EXPECT_EQ(out["X-A"], "2");
}

TEST(ForwarderRequest, SetsContentLengthFromBody) {
  auto request = envelope("POST", "/rules");
  request.headers = {{"Content-Length", "999"}};
  request.body = "{}";
  auto out = build_upstream_request(request, service_config()).value();
  EXPECT_EQ(out[http::field::content_length], "2");
  EXPECT_EQ(out.body(), "{}");

  request.body.clear();
  out = build_upstream_request(request, service_config()).value();
  EXPECT_EQ(out[http::field::content_length], "0");
  EXPECT_EQ(
      build_upstream_request(envelope("GET"), service_config())->count(http::field::content_length),
      0u);
}

TEST(ForwarderRequest, SendsUnknownMethodsVerbatim) {
  const auto out = build_upstream_request(envelope("PURGE"), service_config()).value();
  EXPECT_EQ(out.method_string(), "PURGE");
}

TEST(ForwarderRequest, RejectsWhatCouldSplitOrRetargetTheRequest) {
  const auto service = service_config();
  EXPECT_FALSE(build_upstream_request(envelope("GET X", "/"), service));
  EXPECT_FALSE(build_upstream_request(envelope("GET", "/a b"), service));
  EXPECT_FALSE(build_upstream_request(envelope("GET", "http://evil/"), service));
  EXPECT_FALSE(build_upstream_request(envelope("GET", "@evil/"), service));
  auto request = envelope();
  request.headers = {{"X-A", "1\r\nX-Injected: 1"}};
  EXPECT_FALSE(build_upstream_request(request, service));
  request.headers = {{"Bad Name", "1"}};
  EXPECT_FALSE(build_upstream_request(request, service));
}

TEST(ForwarderAuth, ForwardModeKeepsClientAuthorization) {
  auto request = envelope();
  request.headers = {{"Authorization", "Bearer client"}};
  const auto out = build_upstream_request(request, service_config()).value();
  EXPECT_EQ(out[http::field::authorization], "Bearer client");
}

TEST(ForwarderAuth, BearerModeReplacesAuthorization) {
  auto service = service_config();
  service.auth_mode = AuthMode::kBearer;
  service.auth_secret = "s3cret";
  auto request = envelope();
  request.headers = {{"authorization", "Bearer client"}};
  const auto out = build_upstream_request(request, service).value();
  EXPECT_EQ(out[http::field::authorization], "Bearer s3cret");
  EXPECT_EQ(out.count(http::field::authorization), 1u);
}

TEST(ForwarderAuth, ApiKeyModeSetsKeyHeaderAndKeepsAuthorization) {
  auto service = service_config();
  service.auth_mode = AuthMode::kApiKey;
  service.auth_header = "X-API-Key";
  service.auth_secret = "k3y";
  auto request = envelope();
  request.headers = {{"Authorization", "Bearer client"}, {"x-api-key", "spoofed"}};
  const auto out = build_upstream_request(request, service).value();
  EXPECT_EQ(out["X-API-Key"], "k3y");
  EXPECT_EQ(out.count("X-API-Key"), 1u);
  EXPECT_EQ(out[http::field::authorization], "Bearer client");
}

TEST(ForwarderReply, PassesUpstreamResponseThroughWithoutHopByHopHeaders) {
  UpstreamResponse response{http::status::not_found, 11};
  response.set(http::field::content_type, "text/plain");
  response.set(http::field::connection, "close");
  response.set(http::field::transfer_encoding, "chunked");
  response.body() = "nope";
  const auto reply = make_upstream_reply(response);
  EXPECT_EQ(reply.status, 404);
  EXPECT_THAT(names(reply.headers), ElementsAre("Content-Type"));
  EXPECT_EQ(reply.body, "nope");
  EXPECT_FALSE(reply.error);
}

// The gateway answers HEAD with this length: the reply has no body to recompute it from.
TEST(ForwarderReply, KeepsUpstreamContentLength) {
  UpstreamResponse response{http::status::ok, 11};
  response.set(http::field::content_type, "application/json");
  response.set(http::field::content_length, "1234");
  const auto reply = make_upstream_reply(response);
  const auto* length = find_header(reply.headers, "Content-Length");
  ASSERT_NE(length, nullptr);
  EXPECT_EQ(length->value, "1234");
}

TEST(ForwarderDeadline, ConvertsEpochDeadlineToSteadyTime) {
  const auto system_now = std::chrono::system_clock::time_point{} + 1'000'000s;
  const TimePoint steady_now{};
  const auto epoch_ms = static_cast<std::uint64_t>(1'000'000'000 + 1'500);
  EXPECT_EQ(request_deadline(epoch_ms, system_now, steady_now, 10s), steady_now + 1'500ms);
  EXPECT_EQ(request_deadline(0, system_now, steady_now, 10s), steady_now + 10s);
  EXPECT_EQ(request_deadline(1'000'000'000 - 200, system_now, steady_now, 10s), steady_now - 200ms);
}

// Forwarder against a real socket: the parts that only show up end to end.
class ForwarderTest : public ::testing::Test {
 protected:
  ReplyEnvelope forward(Forwarder& forwarder, RequestEnvelope request) {
    auto reply = testing::run_for(ioc_, forwarder.forward(std::move(request)));
    EXPECT_TRUE(reply.has_value()) << "forward did not complete";
    return reply.value_or(ReplyEnvelope{});
  }
  static std::string header(const ReplyEnvelope& reply, std::string_view name) {
    const auto* h = find(reply.headers, name);
    return h ? h->value : "<absent>";
  }

  asio::io_context ioc_;
};

TEST_F(ForwarderTest, RetriesGatewayErrorsUntilSuccess) {
  ScriptedUpstream upstream(
      ioc_, {{status_response(503)}, {status_response(503)}, {ok_response("done")}});
  Forwarder forwarder(ioc_.get_executor(), service_config(upstream.url()), "worker-1", 1);

  const auto reply = forward(forwarder, envelope());
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "done");
  EXPECT_EQ(reply.attempts, 3u);
  EXPECT_EQ(header(reply, "X-Courier-Attempts"), "3");
  EXPECT_EQ(reply.worker_id, "worker-1");
  EXPECT_GT(reply.upstream_us, 0u);
  EXPECT_EQ(upstream.requests().size(), 3u);
  EXPECT_EQ(upstream.requests()[0].target(), "/rules?x=1");
  EXPECT_EQ(upstream.requests()[0]["X-Request-ID"], "req-1");
  EXPECT_EQ(forwarder.stats().retries, 2u);
}

TEST_F(ForwarderTest, PassesLastGatewayErrorThroughWhenAttemptsRunOut) {
  ScriptedUpstream upstream(
      ioc_, {{status_response(502)}, {status_response(503)}, {status_response(504)}});
  Forwarder forwarder(ioc_.get_executor(), service_config(upstream.url()), "worker-1", 1);

  const auto reply = forward(forwarder, envelope());
  EXPECT_EQ(reply.status, 504);
  EXPECT_FALSE(reply.error);
  EXPECT_EQ(reply.attempts, 3u);
}

TEST_F(ForwarderTest, DoesNotRetryPostAfterUpstreamAnswered) {
  ScriptedUpstream upstream(ioc_, {{status_response(503)}, {ok_response()}});
  Forwarder forwarder(ioc_.get_executor(), service_config(upstream.url()), "worker-1", 1);

  const auto reply = forward(forwarder, envelope("POST", "/rules"));
  EXPECT_EQ(reply.status, 503);
  EXPECT_EQ(reply.attempts, 1u);
  EXPECT_EQ(upstream.requests().size(), 1u);
}

TEST_F(ForwarderTest, ConnectionRefusedBecomesUnavailableJson) {
  const auto port = testing::closed_port(ioc_);
  Forwarder forwarder(ioc_.get_executor(), service_config({"127.0.0.1", port, "", ""}), "worker-1",
                      1);

  const auto reply = forward(forwarder, envelope("POST", "/rules"));
  EXPECT_EQ(reply.status, 503);
  EXPECT_EQ(reply.attempts, 3u) << "nothing reached the upstream, so even POST is retried";
  ASSERT_TRUE(reply.error);
  EXPECT_EQ(reply.error->code, "RULE_ENGINE_UNAVAILABLE");
  EXPECT_EQ(reply.error->detail, "connection refused");
  EXPECT_EQ(header(reply, "Content-Type"), "application/json");
  const auto body = nlohmann::json::parse(reply.body);
  EXPECT_EQ(body["status"], "error");
  EXPECT_EQ(body["code"], "RULE_ENGINE_UNAVAILABLE");
  EXPECT_EQ(body["detail"], "connection refused");
}

TEST_F(ForwarderTest, SilentUpstreamBecomesTimeout) {
  ScriptedUpstream upstream(ioc_, {{""}});
  auto service = service_config(upstream.url());
  service.timeout = 50ms;
  Forwarder forwarder(ioc_.get_executor(), service, "worker-1", 1);

  const auto reply = forward(forwarder, envelope("POST", "/rules"));
  EXPECT_EQ(reply.status, 504);
  ASSERT_TRUE(reply.error);
  EXPECT_EQ(reply.error->code, "RULE_ENGINE_TIMEOUT");
  EXPECT_EQ(reply.attempts, 1u);
}

TEST_F(ForwarderTest, TimeoutsCountForTheCircuitOnlyWhenTheAttemptHadTheServiceTimeout) {
  ScriptedUpstream upstream(ioc_, {{""}, {""}});
  auto service = service_config(upstream.url());
  service.timeout = 300ms;
  Forwarder forwarder(ioc_.get_executor(), service, "worker-1", 1);

  EXPECT_EQ(forward(forwarder, envelope("POST", "/rules")).status, 504);
  EXPECT_EQ(forwarder.circuit_status(Clock::now()).window.failures, 1);

  // The client asked for 50 ms (X-Request-Timeout): its timeout says nothing about the upstream.
  auto hurried = envelope("POST", "/rules");
  hurried.deadline_ms =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     (std::chrono::system_clock::now() + 50ms).time_since_epoch())
                                     .count());
  EXPECT_EQ(forward(forwarder, hurried).status, 504);
  const auto circuit = forwarder.circuit_status(Clock::now());
  EXPECT_EQ(circuit.window.attempts, 2);
  EXPECT_EQ(circuit.window.failures, 1);
}

TEST_F(ForwarderTest, GarbageBecomesBadResponse) {
  ScriptedUpstream upstream(ioc_, {{"garbage\r\n\r\n"}});
  Forwarder forwarder(ioc_.get_executor(), service_config(upstream.url()), "worker-1", 1);

  const auto reply = forward(forwarder, envelope());
  EXPECT_EQ(reply.status, 502);
  ASSERT_TRUE(reply.error);
  EXPECT_EQ(reply.error->code, "RULE_ENGINE_BAD_RESPONSE");
}

TEST_F(ForwarderTest, PostLostAfterSendingOnAReusedConnectionIs502AndNotSentAgain) {
  // The second request is read on the pooled connection, which then closes unanswered.
  ScriptedUpstream upstream(
      ioc_, {{ok_response("first")}, {"", /*close_after=*/true}, {ok_response("twice")}});
  Forwarder forwarder(ioc_.get_executor(), service_config(upstream.url()), "worker-1", 1);

  ASSERT_EQ(forward(forwarder, envelope("POST", "/orders")).status, 200);
  const auto reply = forward(forwarder, envelope("POST", "/orders"));
  EXPECT_EQ(reply.status, 502);
  ASSERT_TRUE(reply.error);
  EXPECT_EQ(reply.error->code, "RULE_ENGINE_BAD_RESPONSE");
  EXPECT_EQ(reply.error->detail.rfind("connection lost after sending", 0), 0u)
      << reply.error->detail;
  EXPECT_EQ(header(reply, "X-Courier-Attempts"), "1");
  EXPECT_EQ(upstream.requests().size(), 2u);
  EXPECT_EQ(upstream.connections(), 1);
  EXPECT_EQ(forwarder.stats().lost_after_sending, 1u);
  EXPECT_EQ(forwarder.stats().retries, 0u);
}

TEST_F(ForwarderTest, GetLostAfterSendingOnAReusedConnectionIsSentAgain) {
  ScriptedUpstream upstream(
      ioc_, {{ok_response("first")}, {"", /*close_after=*/true}, {ok_response("second")}});
  Forwarder forwarder(ioc_.get_executor(), service_config(upstream.url()), "worker-1", 1);

  ASSERT_EQ(forward(forwarder, envelope()).status, 200);
  const auto reply = forward(forwarder, envelope());
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "second");
  EXPECT_EQ(upstream.requests().size(), 3u);
  EXPECT_EQ(forwarder.stats().lost_after_sending, 0u);
}

TEST_F(ForwarderTest, UpstreamHeadWithControlBytesBecomesBadResponse) {
  ScriptedUpstream upstream(
      ioc_, {{std::string("HTTP/1.1 200 OK\r\nX-Evil: a\x01b\r\nContent-Length: 0\r\n\r\n")}});
  Forwarder forwarder(ioc_.get_executor(), service_config(upstream.url()), "worker-1", 1);

  const auto reply = forward(forwarder, envelope());
  EXPECT_EQ(reply.status, 502);
  ASSERT_TRUE(reply.error);
  EXPECT_EQ(reply.error->code, "RULE_ENGINE_BAD_RESPONSE");
  EXPECT_EQ(find(reply.headers, "X-Evil"), nullptr);
}

TEST_F(ForwarderTest, ExpiredRequestIsNotSent) {
  ScriptedUpstream upstream(ioc_, {{ok_response()}});
  Forwarder forwarder(ioc_.get_executor(), service_config(upstream.url()), "worker-1", 1);
  auto request = envelope();
  request.deadline_ms = 1;  // 1970

  const auto reply = forward(forwarder, request);
  EXPECT_EQ(reply.status, 504);
  EXPECT_EQ(reply.attempts, 0u);
  EXPECT_EQ(header(reply, "X-Courier-Attempts"), "0");
  EXPECT_TRUE(upstream.requests().empty());
}

TEST_F(ForwarderTest, UpstreamErrorStatusesDoNotOpenTheCircuitByDefault) {
  std::vector<testing::Step> script(30, {status_response(500)});
  ScriptedUpstream upstream(ioc_, script);
  auto service = service_config(upstream.url());
  service.circuit_min_requests = 2;
  service.circuit_failures = 2;
  Forwarder forwarder(ioc_.get_executor(), service, "worker-1", 1);

  for (int i = 0; i < 30; ++i) ASSERT_EQ(forward(forwarder, envelope()).status, 500);
  const auto circuit = forwarder.circuit_status(Clock::now());
  EXPECT_EQ(circuit.state, CircuitState::kClosed) << "an answer proves the upstream is up";
  EXPECT_EQ(circuit.window.attempts, 30);
  EXPECT_EQ(circuit.window.failures, 0);
  EXPECT_EQ(forwarder.stats().circuit_rejections, 0u);
}

TEST_F(ForwarderTest, OpenCircuitFailsFastWithRetryAfter) {
  ScriptedUpstream upstream(ioc_, {{status_response(500)}, {status_response(500)}});
  auto service = service_config(upstream.url());
  service.circuit_failure_statuses = {500};
  service.circuit_min_requests = 2;
  service.circuit_failures = 2;
  service.circuit_cooldown = 60s;
  Forwarder forwarder(ioc_.get_executor(), service, "worker-1", 1);

  EXPECT_EQ(forward(forwarder, envelope()).status, 500);
  EXPECT_EQ(forward(forwarder, envelope()).status, 500);
  const auto circuit = forwarder.circuit_status(Clock::now());
  EXPECT_EQ(circuit.state, CircuitState::kOpen);
  EXPECT_EQ(circuit.opened, 1u);
  const auto reply = forward(forwarder, envelope());
  EXPECT_EQ(reply.status, 503);
  ASSERT_TRUE(reply.error);
  EXPECT_EQ(reply.error->detail, "circuit open");
  EXPECT_EQ(header(reply, "Retry-After"), "60");
  EXPECT_EQ(reply.attempts, 0u);
  EXPECT_EQ(upstream.requests().size(), 2u);
  EXPECT_EQ(forwarder.stats().circuit_rejections, 1u);
}

TEST_F(ForwarderTest, RefusedConnectionsOpenTheCircuit) {
  const auto port = testing::closed_port(ioc_);
  auto service = service_config({"127.0.0.1", port, "", ""});
  service.circuit_min_requests = 4;
  service.circuit_failures = 4;
  Forwarder forwarder(ioc_.get_executor(), service, "worker-1", 1);

  EXPECT_EQ(forward(forwarder, envelope()).attempts, 3u);
  const auto second = forward(forwarder, envelope());
  EXPECT_EQ(second.attempts, 1u) << "the fourth refused attempt opened it";
  EXPECT_EQ(second.error->detail, "connection refused") << "the last real outcome is kept";
  EXPECT_EQ(forwarder.circuit_status(Clock::now()).state, CircuitState::kOpen);
  EXPECT_EQ(forward(forwarder, envelope()).error->detail, "circuit open");
}

TEST_F(ForwarderTest, ZeroCircuitFailuresNeverOpensIt) {
  const auto port = testing::closed_port(ioc_);
  auto service = service_config({"127.0.0.1", port, "", ""});
  service.circuit_failures = 0;
  service.circuit_min_requests = 1;
  Forwarder forwarder(ioc_.get_executor(), service, "worker-1", 1);

  for (int i = 0; i < 10; ++i) EXPECT_EQ(forward(forwarder, envelope()).attempts, 3u);
  EXPECT_FALSE(forwarder.circuit_status(Clock::now()).enabled);
  EXPECT_EQ(forwarder.stats().circuit_rejections, 0u);
}

TEST_F(ForwarderTest, RetryAfterIsWaitedForBeforeTheRetry) {
  ScriptedUpstream upstream(ioc_,
                            {{"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"},
                             {ok_response("later")}});
  auto service = service_config(upstream.url());
  service.retry_max_wait = 2s;  // the backoff alone would wait 1 ms
  Forwarder forwarder(ioc_.get_executor(), service, "worker-1", 1);

  const auto start = Clock::now();
  const auto reply = forward(forwarder, envelope());
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.attempts, 2u);
  EXPECT_GE(Clock::now() - start, 1s);
}

TEST_F(ForwarderTest, RetryAfterBeyondMaxWaitReachesTheClientWithoutRetry) {
  ScriptedUpstream upstream(
      ioc_, {{"HTTP/1.1 429 Slow Down\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n"},
             {ok_response()}});
  Forwarder forwarder(ioc_.get_executor(), service_config(upstream.url()), "worker-1", 1);

  const auto reply = forward(forwarder, envelope());
  EXPECT_EQ(reply.status, 429);
  EXPECT_EQ(header(reply, "Retry-After"), "30");
  EXPECT_EQ(reply.attempts, 1u);
  EXPECT_EQ(upstream.requests().size(), 1u);
}

}  // namespace
}  // namespace courier::workers
