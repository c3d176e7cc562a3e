// Pure HTTP <-> envelope mapping: routing, request ids, budgets, forwarded headers, envelope
// assembly, responses.
#include "gateway/request_mapper.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/errors.hpp"
#include "common/http_headers.hpp"
#include "common/ids.hpp"

namespace courier::gateway {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> values_of(const HttpResponse& res, std::string_view name) {
  std::vector<std::string> out;
  for (const auto& f : res) {
    if (iequals(f.name_string(), name)) out.emplace_back(f.value());
  }
  return out;
}

std::vector<std::string> values_of(const Headers& headers, std::string_view name) {
  std::vector<std::string> out;
  for (const auto& h : headers) {
    if (iequals(h.name, name)) out.push_back(h.value);
  }
  return out;
}

// --- route -------------------------------------------------------------------------------

TEST(Route, SplitsServiceFromPathAndQuery) {
  const auto r = route("/rule-engine/health?x=1&x=2");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->service, "rule-engine");
  EXPECT_EQ(r->target, "/health?x=1&x=2");
}

TEST(Route, KeepsPercentEncodingExactlyAsReceived) {
  const auto r = route("/ai-gm/items/a%20b/%2F%3F?q=%26x");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->service, "ai-gm");
  EXPECT_EQ(r->target, "/items/a%20b/%2F%3F?q=%26x");
}

TEST(Route, QueryWithoutPathBecomesRootWithQuery) {
  const auto r = route("/rule-engine?x=1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->service, "rule-engine");
  EXPECT_EQ(r->target, "/?x=1");
}

TEST(Route, ServiceOnlyBecomesRoot) {
  auto r = route("/rule-engine");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->target, "/");
  r = route("/rule-engine/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->target, "/");
}

TEST(Route, RejectsTargetsWithoutAValidServiceName) {
  for (const std::string_view bad :
       {"", "/", "//x", "*", "rule-engine/x", "http://host/rule-engine/x", "/Rule-Engine/x",
        "/rule%2Dengine/x", "/rule engine/x", "/-leading/x", "/9lives/x", "/?x=1"}) {
    EXPECT_FALSE(route(bad)) << bad;
  }
  EXPECT_FALSE(route("/" + std::string(65, 'a') + "/x"));
  EXPECT_TRUE(route("/" + std::string(64, 'a') + "/x"));
}

// --- valid_request_id --------------------------------------------------------------------

TEST(ValidRequestId, AcceptsSafeCharactersUpTo128) {
  EXPECT_TRUE(valid_request_id("abc-123.x_Y:z"));
  EXPECT_TRUE(valid_request_id(std::string(128, 'a')));
}

TEST(ValidRequestId, RejectsEmptyLongAndUnsafe) {
  EXPECT_FALSE(valid_request_id(""));
  EXPECT_FALSE(valid_request_id(std::string(129, 'a')));
  for (const std::string_view bad : {"a b", "a\"b", "a\nb", "a/b", "é"}) {
    EXPECT_FALSE(valid_request_id(bad)) << bad;
  }
  EXPECT_FALSE(valid_request_id(std::string_view("a\0b", 3)));
}

// --- request_budget ----------------------------------------------------------------------

ServiceConfig service_with_timeout(std::chrono::milliseconds timeout) {
  ServiceConfig svc;
  svc.name = "rule-engine";
  svc.timeout = timeout;
  return svc;
}

TEST(RequestBudget, DefaultsToTheServiceTimeout) {
  EXPECT_EQ(request_budget(service_with_timeout(10s), ""), 10s);
}

TEST(RequestBudget, HeaderShortensButNeverLengthens) {
  const auto svc = service_with_timeout(10s);
  EXPECT_EQ(request_budget(svc, "0.5"), 500ms);
  EXPECT_EQ(request_budget(svc, "2"), 2s);
  EXPECT_EQ(request_budget(svc, "30"), 10s);
  EXPECT_EQ(request_budget(svc, "1e9"), 10s);
}

TEST(RequestBudget, RoundsSubMillisecondUpSoItIsNeverZero) {
  EXPECT_EQ(request_budget(service_with_timeout(10s), "0.0001"), 1ms);
}

TEST(RequestBudget, InvalidHeaderIsNullopt) {
  const auto svc = service_with_timeout(10s);
  for (const std::string_view bad :
       {"0", "-1", "soon", "1s", " 1", "1 ", "inf", "nan", "+1", "0x10"}) {
    EXPECT_FALSE(request_budget(svc, bad)) << bad;
  }
}

// --- forwarded_headers -------------------------------------------------------------------

HttpRequest request_with(std::initializer_list<std::pair<std::string, std::string>> fields,
                         http::verb method = http::verb::get) {
  HttpRequest req{method, "/rule-engine/x", 11};
  for (const auto& [name, value] : fields) req.insert(name, value);
  return req;
}

TEST(ForwardedHeaders, DropsHopByHopAndConnectionNamedHeaders) {
  const auto req = request_with({{"Host", "example"},
                                 {"Connection", "keep-alive, X-Hop"},
                                 {"Keep-Alive", "timeout=5"},
                                 {"TE", "trailers"},
                                 {"Transfer-Encoding", "chunked"},
                                 {"Content-Length", "3"},
                                 {"Upgrade", "websocket"},
                                 {"Proxy-Authorization", "Basic x"},
                                 {"X-Hop", "no"},
                                 {"X-Keep", "yes"}});
  const auto headers = forwarded_headers(req, "");
  ASSERT_EQ(headers.size(), 1u);
  EXPECT_EQ(headers[0], (Header{"X-Keep", "yes"}));
}

// Beast keeps same-named fields together; what matters (RFC 9110 5.3) is their relative order.
TEST(ForwardedHeaders, KeepsRepeatedNamesInTheirOrder) {
  const auto req = request_with({{"X-A", "1"}, {"X-B", "2"}, {"X-A", "3"}});
  const auto headers = forwarded_headers(req, "");
  EXPECT_EQ(headers, (Headers{{"X-A", "1"}, {"X-A", "3"}, {"X-B", "2"}}));
}

TEST(ForwardedHeaders, AppendsClientAddressToXForwardedFor) {
  auto headers = forwarded_headers(request_with({}), "10.0.0.7");
  EXPECT_EQ(values_of(headers, "X-Forwarded-For"), std::vector<std::string>{"10.0.0.7"});

  headers = forwarded_headers(
      request_with({{"X-Forwarded-For", "1.1.1.1"}, {"X-Forwarded-For", "2.2.2.2, 3.3.3.3"}}),
      "10.0.0.7");
  EXPECT_EQ(values_of(headers, "X-Forwarded-For"),
            std::vector<std::string>{"1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.7"});
}

TEST(ForwardedHeaders, StripsClientSentSubject) {
  const auto headers = forwarded_headers(
      request_with({{"X-Courier-Subject", "admin"}, {"x-courier-subject", "x"}}), "");
  EXPECT_TRUE(values_of(headers, "X-Courier-Subject").empty());
}

// --- to_envelope -------------------------------------------------------------------------

EnvelopeContext context_for(const ServiceConfig& svc, std::string_view subject = "") {
  EnvelopeContext c;
  c.service = &svc;
  c.target = "/x?y=1";
  c.client_address = "10.0.0.9";
  c.subject = subject;
  c.id = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  c.now_ms = 1'000'000;
  return c;
}

TEST(ToEnvelope, CarriesServiceTargetMethodBodyAndDeadline) {
  const auto svc = service_with_timeout(10s);
  auto req = request_with({{"Content-Type", "text/plain"}}, http::verb::post);
  req.body() = "payload";
  const auto m = to_envelope(req, context_for(svc));
  ASSERT_FALSE(m.error);
  EXPECT_EQ(m.budget, 10s);
  EXPECT_EQ(m.envelope.service, "rule-engine");
  EXPECT_EQ(m.envelope.method, "POST");
  EXPECT_EQ(m.envelope.target, "/x?y=1");
  EXPECT_EQ(m.envelope.body, "payload");
  EXPECT_TRUE(req.body().empty()) << "the body moves into the envelope";
  EXPECT_EQ(m.envelope.deadline_ms, 1'010'000u);
  EXPECT_EQ(m.envelope.id, context_for(svc).id);
  EXPECT_EQ(values_of(m.envelope.headers, "content-type"), std::vector<std::string>{"text/plain"});
  EXPECT_EQ(values_of(m.envelope.headers, "x-forwarded-for"), std::vector<std::string>{"10.0.0.9"});
  EXPECT_EQ(m.header.service, "rule-engine");
  EXPECT_EQ(m.header.id, m.envelope.id);
  EXPECT_EQ(m.header.deadline_ms, m.envelope.deadline_ms);
  EXPECT_EQ(m.header.flags, 0) << "POST without Idempotency-Key is not retry-safe";
}

TEST(ToEnvelope, IdempotentRequestsAreFlaggedRetrySafe) {
  const auto svc = service_with_timeout(10s);
  auto get = request_with({});
  EXPECT_EQ(to_envelope(get, context_for(svc)).header.flags, protocol::kFlagRetrySafe);
  auto keyed = request_with({{"Idempotency-Key", "k"}}, http::verb::post);
  EXPECT_EQ(to_envelope(keyed, context_for(svc)).header.flags, protocol::kFlagRetrySafe);
}

TEST(ToEnvelope, KeepsAValidRequestIdAndReplacesTheClientsHeaderWithIt) {
  const auto svc = service_with_timeout(10s);
  auto req = request_with({{"X-Request-ID", "abc-1"}});
  auto m = to_envelope(req, context_for(svc));
  EXPECT_EQ(m.request_id, "abc-1");
  EXPECT_EQ(m.envelope.request_id, "abc-1");
  EXPECT_TRUE(values_of(m.envelope.headers, "x-request-id").empty());

  auto bad = request_with({{"X-Request-ID", "not valid"}});
  m = to_envelope(bad, context_for(svc));
  EXPECT_EQ(m.request_id, to_hex(context_for(svc).id));
  EXPECT_TRUE(values_of(m.envelope.headers, "x-request-id").empty());
}

TEST(ToEnvelope, TheRequestTimeoutShortensTheDeadline) {
  const auto svc = service_with_timeout(10s);
  auto req = request_with({{"X-Request-Timeout", "0.25"}});
  const auto m = to_envelope(req, context_for(svc));
  EXPECT_EQ(m.budget, 250ms);
  EXPECT_EQ(m.envelope.deadline_ms, 1'000'250u);
}

TEST(ToEnvelope, AnInvalidRequestTimeoutIs400WithTheSettledId) {
  const auto svc = service_with_timeout(10s);
  auto req = request_with({{"X-Request-Timeout", "soon"}, {"X-Request-ID", "abc-1"}});
  const auto m = to_envelope(req, context_for(svc));
  ASSERT_TRUE(m.error);
  EXPECT_EQ(m.error->result_int(), 400);
  EXPECT_EQ((*m.error)["X-Request-ID"], "abc-1");
  const auto body = nlohmann::json::parse(m.error->body());
  EXPECT_EQ(body["detail"], "X-Request-Timeout must be a positive number of seconds");
  EXPECT_EQ(m.request_id, "abc-1");
}

TEST(ToEnvelope, TheVerifiedSubjectReplacesAnyClientSentOne) {
  const auto svc = service_with_timeout(10s);
  auto req = request_with({{"X-Courier-Subject", "mallory"}});
  const auto m = to_envelope(req, context_for(svc, "alice"));
  EXPECT_EQ(values_of(m.envelope.headers, kSubjectHeader), std::vector<std::string>{"alice"});
}

TEST(ToEnvelope, TheGatewaysApiKeyGoesNoFurtherWhenItIsTheCredential) {
  const auto svc = service_with_timeout(10s);
  auto req = request_with({{"X-API-Key", "k1"}});
  auto context = context_for(svc);
  EXPECT_EQ(values_of(to_envelope(req, context).envelope.headers, "x-api-key").size(), 1u)
      << "without gateway API keys the header is the upstream's";
  context.strip_api_key = true;
  EXPECT_TRUE(values_of(to_envelope(req, context).envelope.headers, "x-api-key").empty());
}

// --- to_http -----------------------------------------------------------------------------

ReplyEnvelope reply(std::uint16_t status, std::string body, Headers headers = {}) {
  ReplyEnvelope r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

TEST(ToHttp, CopiesStatusBodyAndRepeatedSetCookie) {
  const auto req = request_with({});
  const auto res = to_http(reply(418, std::string("a\0b", 3),
                                 {{"Set-Cookie", "a=1"}, {"X-Up", "yes"}, {"Set-Cookie", "b=2"}}),
                           req, "rid-1");
  EXPECT_EQ(res.result_int(), 418u);
  EXPECT_EQ(res.body(), std::string("a\0b", 3));
  EXPECT_EQ(values_of(res, "Set-Cookie"), (std::vector<std::string>{"a=1", "b=2"}));
  EXPECT_EQ(values_of(res, "X-Up"), std::vector<std::string>{"yes"});
  EXPECT_EQ(values_of(res, "Content-Length"), std::vector<std::string>{"3"});
  EXPECT_EQ(values_of(res, "X-Request-ID"), std::vector<std::string>{"rid-1"});
}

TEST(ToHttp, DropsUpstreamHopByHopAndRequestIdHeaders) {
  const auto res = to_http(reply(200, "x",
                                 {{"Connection", "close"},
                                  {"Transfer-Encoding", "chunked"},
                                  {"Keep-Alive", "timeout=1"},
                                  {"X-Request-ID", "upstream-made"}}),
                           request_with({}), "ours");
  EXPECT_TRUE(values_of(res, "Transfer-Encoding").empty());
  EXPECT_TRUE(values_of(res, "Keep-Alive").empty());
  EXPECT_EQ(values_of(res, "X-Request-ID"), std::vector<std::string>{"ours"});
  EXPECT_TRUE(res.keep_alive());
}

TEST(ToHttp, HeadKeepsUpstreamContentLengthWithoutBody) {
  const auto req = request_with({}, http::verb::head);
  const auto res = to_http(reply(200, "", {{"Content-Length", "1234"}}), req, "");
  EXPECT_TRUE(res.body().empty());
  EXPECT_EQ(values_of(res, "Content-Length"), std::vector<std::string>{"1234"});
}

TEST(ToHttp, NoBodyStatusesSendNoBody) {
  for (const std::uint16_t status : {204, 304}) {
    const auto res =
        to_http(reply(status, "should not be sent", {{"ETag", "\"v1\""}}), request_with({}), "");
    EXPECT_EQ(res.result_int(), status);
    EXPECT_TRUE(res.body().empty()) << status;
    EXPECT_TRUE(values_of(res, "Content-Length").empty()) << status;
    EXPECT_EQ(values_of(res, "ETag"), std::vector<std::string>{"\"v1\""});
  }
}

TEST(ToHttp, Http10RequestWithoutKeepAliveClosesConnection) {
  HttpRequest req{http::verb::get, "/x", 10};
  const auto res = to_http(reply(200, "x"), req, "");
  EXPECT_EQ(res.version(), 10u);
  EXPECT_FALSE(res.keep_alive());
}

// --- error_response ----------------------------------------------------------------------

TEST(ErrorResponse, IsJsonWithCodeAndServicePrefix) {
  const auto req = request_with({});
  const auto res =
      error_response(static_cast<int>(ErrorKind::kTimeout), "rule-engine", "late", &req, "r1");
  EXPECT_EQ(res.result_int(), 504u);
  const auto j = nlohmann::json::parse(res.body());
  EXPECT_EQ(j["code"], "RULE_ENGINE_TIMEOUT");
  EXPECT_EQ(j["detail"], "late");
  EXPECT_EQ(values_of(res, "X-Request-ID"), std::vector<std::string>{"r1"});
}

TEST(ErrorResponse, HeadGetsNoBody) {
  const auto req = request_with({}, http::verb::head);
  const auto res = error_response(static_cast<int>(ErrorKind::kUnknownService), "", "x", &req, "");
  EXPECT_EQ(res.result_int(), 404u);
  EXPECT_TRUE(res.body().empty());
}

}  // namespace
}  // namespace courier::gateway
