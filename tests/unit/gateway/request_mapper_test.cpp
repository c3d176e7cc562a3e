// Pure HTTP <-> envelope mapping: routing, paths, request ids, budgets, forwarded headers,
// envelope assembly, reply checks, responses.
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
  const auto headers = forwarded_headers(req, {});
  // What the gateway adds itself comes last.
  EXPECT_EQ(
      headers,
      (Headers{{"X-Keep", "yes"}, {"X-Forwarded-Proto", "http"}, {"X-Forwarded-Host", "example"}}));
}

// Beast keeps same-named fields together; what matters (RFC 9110 5.3) is their relative order.
TEST(ForwardedHeaders, KeepsRepeatedNamesInTheirOrder) {
  const auto req = request_with({{"X-A", "1"}, {"X-B", "2"}, {"X-A", "3"}});
  const auto headers = forwarded_headers(req, {});
  EXPECT_EQ(headers,
            (Headers{{"X-A", "1"}, {"X-A", "3"}, {"X-B", "2"}, {"X-Forwarded-Proto", "http"}}));
}

TEST(ForwardedHeaders, AppendsClientAddressToATrustedPeersXForwardedFor) {
  auto headers =
      forwarded_headers(request_with({}), {.client_address = "10.0.0.7", .trusted_peer = true});
  EXPECT_EQ(values_of(headers, "X-Forwarded-For"), std::vector<std::string>{"10.0.0.7"});

  headers = forwarded_headers(
      request_with({{"X-Forwarded-For", "1.1.1.1"}, {"X-Forwarded-For", "2.2.2.2, 3.3.3.3"}}),
      {.client_address = "10.0.0.7", .trusted_peer = true});
  EXPECT_EQ(values_of(headers, "X-Forwarded-For"),
            std::vector<std::string>{"1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.7"});
}

TEST(ForwardedHeaders, StripsClientSentSubject) {
  const auto headers = forwarded_headers(
      request_with({{"X-Courier-Subject", "admin"}, {"x-courier-subject", "x"}}), {});
  EXPECT_TRUE(values_of(headers, "X-Courier-Subject").empty());
}

// What a client says about earlier hops is believed from a trusted proxy only.
const HttpRequest& forwarding_request() {
  static const HttpRequest req = request_with({{"Host", "api.example"},
                                               {"Forwarded", "for=6.6.6.6;proto=https"},
                                               {"X-Forwarded-For", "6.6.6.6"},
                                               {"X-Forwarded-Proto", "https"},
                                               {"X-Forwarded-Host", "evil.example"},
                                               {"X-Forwarded-Port", "443"},
                                               {"X-Forwarded-Prefix", "/admin"},
                                               {"X-Real-IP", "6.6.6.6"},
                                               {"True-Client-IP", "6.6.6.6"},
                                               {"X-Original-URL", "/admin"},
                                               {"X-Keep", "yes"}});
  return req;
}

TEST(ForwardedHeaders, AnUntrustedPeersForwardingHeadersAreReplacedByTheGatewaysOwn) {
  const auto headers = forwarded_headers(forwarding_request(), {.client_address = "10.0.0.7"});
  EXPECT_EQ(headers, (Headers{{"X-Keep", "yes"},
                              {"X-Forwarded-For", "10.0.0.7"},
                              {"X-Forwarded-Proto", "http"},
                              {"X-Forwarded-Host", "api.example"}}));
}

TEST(ForwardedHeaders, ATrustedPeersForwardingHeadersAreKeptAndItsChainExtended) {
  const auto headers =
      forwarded_headers(forwarding_request(), {.client_address = "10.0.0.7", .trusted_peer = true});
  EXPECT_EQ(values_of(headers, "X-Forwarded-For"), std::vector<std::string>{"6.6.6.6, 10.0.0.7"});
  // The proxy in front terminated TLS and saw the public host: its word stands, not ours.
  EXPECT_EQ(values_of(headers, "X-Forwarded-Proto"), std::vector<std::string>{"https"});
  EXPECT_EQ(values_of(headers, "X-Forwarded-Host"), std::vector<std::string>{"evil.example"});
  for (const char* name : {"Forwarded", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Real-IP",
                           "True-Client-IP", "X-Original-URL"}) {
    EXPECT_EQ(values_of(headers, name).size(), 1u) << name;
  }
}

TEST(ForwardedHeaders, ATrustedPeerWithoutProtoOrHostGetsTheGatewaysOwn) {
  const auto headers =
      forwarded_headers(request_with({{"Host", "h"}, {"X-Forwarded-For", "1.1.1.1"}}),
                        {.client_address = "10.0.0.7", .trusted_peer = true});
  EXPECT_EQ(values_of(headers, "X-Forwarded-Proto"), std::vector<std::string>{"http"});
  EXPECT_EQ(values_of(headers, "X-Forwarded-Host"), std::vector<std::string>{"h"});
}

// CGI, WSGI, PHP and Rack read X_Courier_Subject and X-Courier-Subject as one variable.
TEST(ForwardedHeaders, LookalikesOfCourierHeadersAreDroppedEvenFromATrustedPeer) {
  const auto req = request_with({{"X_Courier_Subject", "admin"},
                                 {"x-courier_subject", "admin"},
                                 {"X-COURIER-SUBJECT", "admin"},
                                 {"X-Courier-Attempts", "9"},
                                 {"X-Courier-Anything", "1"},
                                 {"X_Forwarded_For", "6.6.6.6"},
                                 {"x_forwarded-host", "evil"},
                                 {"X_Real_IP", "6.6.6.6"},
                                 {"X_Request_ID", "forged"},
                                 {"X_Request_Timeout", "1"},
                                 {"X_API_Key", "guess"},
                                 {"X_Svc_Key", "guess"},
                                 {"Idempotency_Key", "k"},
                                 {"Transfer_Encoding", "chunked"},
                                 {"Content_Length", "5"},
                                 {"X_Custom_Header", "kept"},
                                 {"X-Courier", "kept: not a Courier header"}});
  for (const bool trusted : {false, true}) {
    const auto headers = forwarded_headers(
        req, {.client_address = "10.0.0.7", .trusted_peer = trusted, .auth_header = "X-Svc-Key"});
    EXPECT_EQ(headers, (Headers{{"X_Custom_Header", "kept"},
                                {"X-Courier", "kept: not a Courier header"},
                                {"X-Forwarded-For", "10.0.0.7"},
                                {"X-Forwarded-Proto", "http"}}))
        << "trusted=" << trusted;
  }
}

// --- path_problem ------------------------------------------------------------------------

TEST(PathProblem, DotSegmentsRawOrEncodedAreRefused) {
  for (const std::string_view bad : {"/..",
                                     "/../admin",
                                     "/a/../../admin",
                                     "/a/..",
                                     "/.",
                                     "/./x",
                                     "/a/./b",
                                     "/%2e%2e/admin",
                                     "/%2E%2E/admin",
                                     "/.%2e/admin",
                                     "/%2e./admin",
                                     "/%2e",
                                     "/a/%2E",
                                     "/..%2fadmin",
                                     "/..%2Fadmin",
                                     "/a%2F..%2F..%2Fadmin",
                                     "/..\\admin",
                                     "/a\\..\\admin",
                                     "/..%5cadmin",
                                     "/..%5Cadmin",
                                     "/..;/admin",
                                     "/..;jsessionid=1/admin",
                                     "/.;x",
                                     "/..%3b/admin",
                                     "/%2e%2e%3Bx/admin",
                                     "/../?q=1",
                                     "/x/..?q"}) {
    EXPECT_FALSE(path_problem(bad).empty()) << bad;
  }
}

TEST(PathProblem, OtherPathsPassByteForByte) {
  for (const std::string_view ok : {"/",
                                    "/x",
                                    "/a/b/",
                                    "//",
                                    "/...",
                                    "/.../x",
                                    "/..a",
                                    "/a..",
                                    "/.hidden",
                                    "/a.b/c..d",
                                    "/%2e%2e%2e",
                                    "/%252e%252e/x",
                                    "/group%2Fproject",
                                    "/a%5Cb",
                                    "/;x",
                                    "/x;..",
                                    "/?q=/../..",
                                    "/x?../..",
                                    "/%2",
                                    "/%2e%2",
                                    "/a%"}) {
    EXPECT_TRUE(path_problem(ok).empty()) << ok;
  }
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

TEST(ToEnvelope, AGeneratedRequestIdIsUsedWhenTheClientSentNoValidOne) {
  const auto svc = service_with_timeout(10s);
  auto context = context_for(svc);
  context.generated_request_id = "0123456789abcdef0123456789abcdef";
  auto req = request_with({{"X-Request-ID", "not valid"}});
  auto m = to_envelope(req, context);
  EXPECT_EQ(m.request_id, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(m.envelope.request_id, m.request_id);
  EXPECT_NE(m.request_id, to_hex(context.id));

  auto given = request_with({{"X-Request-ID", "abc-1"}});
  EXPECT_EQ(to_envelope(given, context).request_id, "abc-1");
}

TEST(ToEnvelope, DotSegmentsAre400WithTheSettledId) {
  const auto svc = service_with_timeout(10s);
  auto context = context_for(svc);
  context.target = "/%2e%2e/admin?x=1";
  auto req = request_with({{"X-Request-ID", "abc-1"}});
  const auto m = to_envelope(req, context);
  ASSERT_TRUE(m.error);
  EXPECT_EQ(m.error->result_int(), 400);
  EXPECT_EQ((*m.error)["X-Request-ID"], "abc-1");
  const auto body = nlohmann::json::parse(m.error->body());
  EXPECT_EQ(body["code"], "BAD_REQUEST");
  EXPECT_EQ(body["detail"], "the path must not contain . or .. segments (raw or percent-encoded)");
}

TEST(ToEnvelope, ForwardingHeadersFollowTheTrustedProxyList) {
  const auto svc = service_with_timeout(10s);
  const auto trusted = TrustedProxies::parse("x", "10.0.0.0/24");
  auto context = context_for(svc);  // peer 10.0.0.9
  auto req = request_with({{"X-Forwarded-For", "1.1.1.1"}, {"X-Real-IP", "1.1.1.1"}});
  auto m = to_envelope(req, context);
  EXPECT_EQ(values_of(m.envelope.headers, "x-forwarded-for"), std::vector<std::string>{"10.0.0.9"});
  EXPECT_TRUE(values_of(m.envelope.headers, "x-real-ip").empty());

  context.trusted_proxies = &trusted;
  m = to_envelope(req, context);
  EXPECT_EQ(values_of(m.envelope.headers, "x-forwarded-for"),
            std::vector<std::string>{"1.1.1.1, 10.0.0.9"});
  EXPECT_EQ(values_of(m.envelope.headers, "x-real-ip"), std::vector<std::string>{"1.1.1.1"});

  context.client_address = "10.0.1.9";  // outside the block
  m = to_envelope(req, context);
  EXPECT_EQ(values_of(m.envelope.headers, "x-forwarded-for"), std::vector<std::string>{"10.0.1.9"});
}

TEST(ToEnvelope, ALookalikeOfTheServicesApiKeyHeaderIsDropped) {
  auto svc = service_with_timeout(10s);
  svc.auth_mode = AuthMode::kApiKey;
  svc.auth_header = "X-Upstream-Key";
  auto req = request_with({{"X_Upstream_Key", "guess"}, {"X-Other_Key", "kept"}});
  const auto m = to_envelope(req, context_for(svc));
  EXPECT_TRUE(values_of(m.envelope.headers, "X_Upstream_Key").empty());
  EXPECT_EQ(values_of(m.envelope.headers, "X-Other_Key"), std::vector<std::string>{"kept"});
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

TEST(ToHttp, DropsHeadersTheRepliesConnectionNames) {
  const auto res =
      to_http(reply(200, "x", {{"Connection", "X-Hop"}, {"X-Hop", "1"}, {"X-Up", "2"}}),
              request_with({}), "");
  EXPECT_TRUE(values_of(res, "X-Hop").empty());
  EXPECT_EQ(values_of(res, "X-Up"), std::vector<std::string>{"2"});
}

// --- reply_problem and checked_response --------------------------------------------------

TEST(ReplyProblem, AValidReplyHasNone) {
  const auto r = reply(200, "x",
                       {{"Set-Cookie", "a=1"},
                        {"X-Tab", "a\tb"},
                        {"X-Obs", "caf\xc3\xa9"},
                        {"Content-Length", "1"},
                        {"X-Empty", ""}});
  EXPECT_EQ(reply_problem(r, request_with({})), "");
  for (const std::uint16_t status : {200, 204, 304, 404, 599}) {
    EXPECT_EQ(reply_problem(reply(status, ""), request_with({})), "") << status;
  }
}

TEST(ReplyProblem, StatusesThatAreNotFinalAreRefused) {
  for (const std::uint16_t status : {100, 101, 103, 199, 600, 999}) {
    EXPECT_NE(reply_problem(reply(status, ""), request_with({})), "") << status;
  }
}

TEST(ReplyProblem, InvalidNamesAndValuesAreRefusedWithoutEchoingThem) {
  const std::vector<Header> bad = {
      {"X-A", "b\r\nSet-Cookie: evil"},
      {"X-A", "b\nSet-Cookie: evil"},
      {"X-A", "b\rSet-Cookie: evil"},
      {"X-A", std::string("b\0c", 3)},
      {"X-A", "\x01"},
      {"X-A", "\x7f"},
      {"X-A\r\nSet-Cookie", "evil"},
      {"X-A: b\r\nSet-Cookie", "evil"},
      {"", "v"},
      {"X A", "v"},
      {"X-A:", "v"},
      {std::string("X\0A", 3), "v"},
  };
  for (const auto& h : bad) {
    const auto problem = reply_problem(reply(200, "", {{"X-Ok", "1"}, h}), request_with({}));
    EXPECT_NE(problem, "") << h.name << ": " << h.value;
    EXPECT_EQ(problem.find("evil"), std::string::npos) << problem;
    EXPECT_EQ(problem.find_first_of(std::string_view("\r\n\0", 3)), std::string::npos);
    EXPECT_NE(problem.find("header field 2"), std::string::npos) << problem;
  }
}

TEST(ReplyProblem, TooManyOrTooLargeHeadersAreRefused) {
  Headers many(kMaxReplyHeaders + 1, Header{"X-A", "1"});
  EXPECT_NE(reply_problem(reply(200, "", many), request_with({})), "");
  many.pop_back();
  EXPECT_EQ(reply_problem(reply(200, "", many), request_with({})), "");
  const Headers large = {{"X-A", std::string(kMaxReplyHeaderBytes / 2, 'a')},
                         {"X-B", std::string(kMaxReplyHeaderBytes / 2, 'b')}};
  EXPECT_NE(reply_problem(reply(200, "", large), request_with({})), "");
}

TEST(ReplyProblem, ConflictingOrMalformedContentLengthIsRefused) {
  const auto head = request_with({}, http::verb::head);
  EXPECT_NE(reply_problem(reply(200, "", {{"Content-Length", "1"}, {"Content-Length", "2"}}),
                          request_with({})),
            "");
  EXPECT_EQ(reply_problem(reply(200, "", {{"Content-Length", "7"}, {"content-length", "7"}}), head),
            "");
  for (const std::string_view bad : {"", "abc", "-1", "1 2", "1,2", "+5", "99999999999999999999"}) {
    EXPECT_NE(reply_problem(reply(200, "", {{"Content-Length", std::string(bad)}}), head), "")
        << bad;
  }
}

TEST(CheckedResponse, AnInvalidReplyIs502BadResponseWithNothingOfTheReply) {
  const auto req = request_with({});
  auto r = reply(200, "secret body", {{"X-A", "b\r\nSet-Cookie: evil"}, {"Set-Cookie", "s=1"}});
  r.attempts = 2;
  const auto out = checked_response(std::move(r), req, "rule-engine", "rid-1");
  EXPECT_NE(out.problem, "");
  EXPECT_EQ(out.attempts, 2u);
  EXPECT_EQ(out.response.result_int(), 502u);
  EXPECT_TRUE(values_of(out.response, "Set-Cookie").empty());
  EXPECT_TRUE(values_of(out.response, "X-A").empty());
  EXPECT_EQ(values_of(out.response, "X-Request-ID"), std::vector<std::string>{"rid-1"});
  EXPECT_EQ(out.response.body().find("secret"), std::string::npos);
  EXPECT_EQ(out.response.body().find("evil"), std::string::npos);
  const auto j = nlohmann::json::parse(out.response.body());
  EXPECT_EQ(j["status"], "error");
  EXPECT_EQ(j["code"], "RULE_ENGINE_BAD_RESPONSE");
  EXPECT_EQ(j["message"], "The service sent an invalid response");
}

TEST(CheckedResponse, AValidReplyGoesThroughUnchanged) {
  const auto req = request_with({});
  const auto out = checked_response(reply(201, "made", {{"Location", "/x/1"}}), req, "ai-gm", "r");
  EXPECT_EQ(out.problem, "");
  EXPECT_EQ(out.response.result_int(), 201u);
  EXPECT_EQ(out.response.body(), "made");
  EXPECT_EQ(values_of(out.response, "Location"), std::vector<std::string>{"/x/1"});
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
