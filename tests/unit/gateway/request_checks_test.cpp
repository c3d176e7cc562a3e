// The checks a request meets before it goes anywhere: parser limits, the refusal a read error
// deserves, Expect, and the one admission (credentials, then route) run on heads and requests.
#include "gateway/request_checks.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/options.hpp"

namespace courier::gateway {
namespace {

using namespace std::chrono_literals;

const auto kNow = std::chrono::system_clock::time_point{} + 1'700'000'000s;

TEST(RequestChecks, DefaultLimitsAreTheSettingsTableDefaults) {
  // The fuzz target uses these constants without the settings table: they must agree.
  EXPECT_EQ(kDefaultMaxBody,
            static_cast<std::size_t>(options::gateway::kMaxBody.default_integer()));
  EXPECT_EQ(kDefaultMaxHeader,
            static_cast<std::size_t>(options::gateway::kMaxHeader.default_integer()));
}

Settings one_service() {
  Settings s;
  ServiceConfig c;
  c.name = "svc";
  s.services["svc"] = c;
  return s;
}

Authenticator api_keys() {
  AuthOptions o;
  o.api_keys = {{"alice", "k1"}};
  return Authenticator(o);
}

Authenticator bearer_and_api_keys() {
  return Authenticator(
      AuthOptions{.jwt_secret = std::string(32, 's'), .api_keys = {{"alice", "k1"}}});
}

HttpRequest request(std::string_view target, std::string_view api_key = "") {
  HttpRequest req{http::verb::post, target, 11};
  if (!api_key.empty()) req.set("X-API-Key", api_key);
  return req;
}

beast::error_code parse(std::string_view bytes, std::size_t max_header, std::size_t max_body) {
  RequestParser parser;
  apply_limits(parser, max_header, max_body);
  parser.eager(true);
  beast::error_code ec;
  parser.put(asio::buffer(bytes.data(), bytes.size()), ec);
  return ec;
}

TEST(ApplyLimits, AHeadOverTheLimitIsRefused431) {
  const std::string head = "GET /svc/x HTTP/1.1\r\nX-Long: " + std::string(2000, 'a') + "\r\n\r\n";
  const auto ec = parse(head, 1024, kDefaultMaxBody);
  EXPECT_EQ(ec, http::error::header_limit);
  const auto refusal = read_refusal(ec);
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->kind, ErrorKind::kHeadersTooLarge);
  EXPECT_FALSE(parse(head, kDefaultMaxHeader, kDefaultMaxBody));
}

TEST(ApplyLimits, ABodyOverTheLimitIsRefused413) {
  const auto ec = parse("POST /svc/x HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world", 1024, 10);
  EXPECT_EQ(ec, http::error::body_limit);
  const auto refusal = read_refusal(ec);
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->kind, ErrorKind::kPayloadTooLarge);
}

TEST(ReadRefusal, MalformedInputIs400AndAnEndedConnectionIsNobodyToAnswer) {
  const auto bad = read_refusal(http::error::bad_method);
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->kind, ErrorKind::kBadRequest);
  EXPECT_FALSE(read_refusal(http::error::end_of_stream));
  EXPECT_FALSE(read_refusal(http::error::partial_message));
  EXPECT_FALSE(read_refusal(beast::error::timeout));
  EXPECT_FALSE(read_refusal(asio::error::connection_reset));
}

TEST(ReadBufferLimit, AnEndlessChunkLineIsRefused431) {
  // Beast bounds neither a chunk line nor the trailer section: the read buffer's limit does.
  const std::size_t limit = read_buffer_limit(kDefaultMaxHeader);
  EXPECT_GT(limit, kDefaultMaxHeader) << "an oversized head is still refused as a head";
  const auto refusal = read_refusal(http::error::buffer_overflow);
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->kind, ErrorKind::kHeadersTooLarge);
}

// The head as the parser leaves it after the header (Beast has checked what it checks).
struct Head {
  beast::error_code ec;
  RequestParser parser;
};
std::unique_ptr<Head> head_of(std::string_view bytes) {
  auto h = std::make_unique<Head>();
  apply_limits(h->parser, kDefaultMaxHeader, kDefaultMaxBody);
  h->parser.put(asio::buffer(bytes.data(), bytes.size()), h->ec);
  return h;
}

TEST(CheckFraming, OnlyOneTransferEncodingThatIsExactlyChunkedPasses) {
  for (const std::string te : {"chunked", "Chunked", "CHUNKED"}) {
    const auto h = head_of("POST /svc/x HTTP/1.1\r\nTransfer-Encoding: " + te + "\r\n\r\n");
    ASSERT_FALSE(h->ec) << te;
    EXPECT_FALSE(check_framing(h->parser.get())) << te;
  }
  for (const std::string te : {"gzip", "chunked, gzip", "gzip, chunked", "xchunked", "identity", "",
                               "chunked;x=1", "gzip\r\nTransfer-Encoding: chunked"}) {
    const auto h = head_of("POST /svc/x HTTP/1.1\r\nTransfer-Encoding: " + te + "\r\n\r\n");
    if (h->ec && h->ec != http::error::need_more) continue;  // Beast refused it already
    const auto refusal = check_framing(h->parser.get());
    ASSERT_TRUE(refusal) << te;
    EXPECT_EQ(refusal->kind, ErrorKind::kBadRequest);
    EXPECT_EQ(refusal->detail, "Transfer-Encoding must be exactly chunked") << te;
  }
}

TEST(CheckFraming, TransferEncodingWithContentLengthOrInHttp10IsRefused) {
  // Beast refuses chunked beside Content-Length itself; another coding it lets through.
  auto h = head_of("POST /svc/x HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n");
  EXPECT_TRUE(h->ec == http::error::need_more || !h->ec) << h->ec.message();
  EXPECT_TRUE(check_framing(h->parser.get()));
  EXPECT_TRUE(head_of("POST /svc/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                      "Content-Length: 5\r\n\r\n")
                  ->ec);
  h = head_of("POST /svc/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
  const auto refusal = check_framing(h->parser.get());
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->detail, "Transfer-Encoding is not allowed in HTTP/1.0");
  EXPECT_FALSE(check_framing(request("/svc/x"))) << "no Transfer-Encoding: nothing to check";
}

TEST(CheckFraming, BeastRefusesContentLengthsThatDiffer) {
  EXPECT_EQ(head_of("POST /svc/x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")->ec,
            http::error::bad_content_length);
  EXPECT_EQ(head_of("POST /svc/x HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n")->ec,
            http::error::bad_content_length);
}

TEST(CheapToDrain, OnlyNoBodyOrASmallKnownLength) {
  EXPECT_TRUE(cheap_to_drain(head_of("GET /svc/x HTTP/1.1\r\n\r\n")->parser));
  EXPECT_TRUE(cheap_to_drain(
      head_of("POST /svc/x HTTP/1.1\r\nContent-Length: " + std::to_string(kCheapDrain) + "\r\n\r\n")
          ->parser));
  EXPECT_FALSE(cheap_to_drain(head_of("POST /svc/x HTTP/1.1\r\nContent-Length: " +
                                      std::to_string(kCheapDrain + 1) + "\r\n\r\n")
                                  ->parser));
  EXPECT_FALSE(cheap_to_drain(
      head_of("POST /svc/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")->parser));
}

TEST(HeadSnapshot, TrailerFieldsAreDroppedAndTheHeadIsKept) {
  const std::string head =
      "POST /svc/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Head: h\r\n\r\n";
  const std::string body =
      "5\r\nhello\r\n0\r\nX-API-Key: k1\r\nX-Request-Timeout: 0.1\r\nX-Head: trailer\r\n\r\n";
  RequestParser parser;
  apply_limits(parser, kDefaultMaxHeader, kDefaultMaxBody);
  beast::error_code ec;
  parser.put(asio::buffer(head.data(), head.size()), ec);
  ASSERT_FALSE(ec);
  ASSERT_TRUE(parser.is_header_done());
  HeadSnapshot snapshot(parser);
  parser.eager(true);
  parser.put(asio::buffer(body.data(), body.size()), ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(parser.is_done());
  // What Beast does on its own: the trailers are among the headers.
  ASSERT_EQ(parser.get()["X-API-Key"], "k1");
  snapshot.restore(parser);
  const auto req = parser.release();
  EXPECT_EQ(req.body(), "hello");
  EXPECT_EQ(req.count("X-API-Key"), 0u);
  EXPECT_EQ(req.count("X-Request-Timeout"), 0u);
  EXPECT_EQ(req.count("X-Head"), 1u);
  EXPECT_EQ(req["X-Head"], "h");
  EXPECT_EQ(req.target(), "/svc/x");
  // So credentials in a trailer authenticate nobody.
  const auto a = admit(req, api_keys(), one_service(), kNow);
  ASSERT_TRUE(a.refusal);
  EXPECT_EQ(a.refusal->kind, ErrorKind::kUnauthorized);
}

TEST(CheckExpect, OnlyHundredContinueIsMet) {
  auto req = request("/svc/x");
  EXPECT_FALSE(check_expect(req));
  EXPECT_FALSE(expects_continue(req));
  req.set(http::field::expect, "100-Continue");
  EXPECT_FALSE(check_expect(req));
  EXPECT_TRUE(expects_continue(req));
  req.set(http::field::expect, "200-ok");
  const auto refusal = check_expect(req);
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->kind, ErrorKind::kBadRequest);
  EXPECT_EQ(refusal->detail, "unsupported Expect header");
}

TEST(Admit, WithAuthOffAKnownServiceIsAdmittedWithItsTarget) {
  const auto settings = one_service();
  const Authenticator off{AuthOptions{}};
  const auto a = admit(request("/svc/items?x=1"), off, settings, kNow);
  EXPECT_FALSE(a.refusal);
  ASSERT_NE(a.service, nullptr);
  EXPECT_EQ(a.service->name, "svc");
  EXPECT_EQ(a.target, "/items?x=1");
  EXPECT_EQ(a.subject, "");
}

TEST(Admit, AnUnknownServiceIs404NamingTheTarget) {
  const auto settings = one_service();
  const auto a = admit(request("/nope/x"), Authenticator{AuthOptions{}}, settings, kNow);
  ASSERT_TRUE(a.refusal);
  EXPECT_EQ(a.refusal->kind, ErrorKind::kUnknownService);
  EXPECT_EQ(a.refusal->detail, "no service at /nope/x");
  EXPECT_EQ(a.service, nullptr);
}

TEST(Admit, CredentialsComeBeforeTheRoute) {
  const auto settings = one_service();
  const auto a = admit(request("/nope/x", "wrong"), api_keys(), settings, kNow);
  ASSERT_TRUE(a.refusal);
  EXPECT_EQ(a.refusal->kind, ErrorKind::kUnauthorized) << "strangers learn nothing of routes";
}

TEST(Admit, AValidCallerIsNamedEvenWhenTheRouteFails) {
  const auto settings = one_service();
  auto a = admit(request("/svc/x", "k1"), api_keys(), settings, kNow);
  EXPECT_FALSE(a.refusal);
  EXPECT_EQ(a.subject, "alice");
  a = admit(request("/nope/x", "k1"), api_keys(), settings, kNow);
  ASSERT_TRUE(a.refusal);
  EXPECT_EQ(a.refusal->kind, ErrorKind::kUnknownService);
  EXPECT_EQ(a.subject, "alice");
}

TEST(Admit, ASubjectVerifiedOnTheHeadIsNotCheckedAgain) {
  const auto settings = one_service();
  const auto a = admit(request("/svc/x"), api_keys(), settings, kNow, std::string("alice"));
  EXPECT_FALSE(a.refusal);
  EXPECT_EQ(a.subject, "alice");
}

TEST(RefusalResponse, OnAHeadItClosesTheConnection) {
  const Refusal refusal{ErrorKind::kPayloadTooLarge, "body limit exceeded"};
  const auto res = refusal_response(refusal, nullptr, Authenticator{AuthOptions{}});
  EXPECT_EQ(res.result_int(), 413);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_EQ(nlohmann::json::parse(res.body())["detail"], "body limit exceeded");
}

TEST(RefusalResponse, On401ItChallengesOnlyWhenBearerTokensCount) {
  const Refusal refusal{ErrorKind::kUnauthorized, "missing credentials"};
  auto req = request("/svc/x");
  req.keep_alive(true);
  auto res = refusal_response(refusal, &req, bearer_and_api_keys());
  EXPECT_EQ(res.result_int(), 401);
  EXPECT_EQ(res[http::field::www_authenticate], "Bearer");
  EXPECT_TRUE(res.keep_alive()) << "a complete request refused keeps its connection";
  res = refusal_response(refusal, &req, api_keys());
  EXPECT_EQ(res.count(http::field::www_authenticate), 0u);
}

}  // namespace
}  // namespace courier::gateway
