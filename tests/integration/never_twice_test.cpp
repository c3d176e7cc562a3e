// "Never twice": a request that is not retry-safe reaches the upstream at most once, whatever
// happens to the connection after its first byte was written. Real gateway, broker and worker
// against a real upstream that reads a request on a reused keep-alive connection and closes it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "tests/integration/shared_topology.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;

std::optional<int> attempts_of(const HttpResult& r) {
  const auto value = r.header("X-Courier-Attempts");
  if (!value) return std::nullopt;
  return std::stoi(*value);
}

nlohmann::json error_body(const HttpResult& r) {
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  EXPECT_TRUE(j.is_object()) << r.body;
  return j.is_object() ? j : nlohmann::json::object();
}

class NeverTwiceTest : public SharedTopologyTest<NeverTwiceTest> {
 public:
  // Fast retries, and a circuit that never opens on the failures these tests cause on purpose.
  static void configure(TopologyOptions& options) {
    options.gateway_threads = 1;  // the broker links on the HTTP thread (the other tests: 2)
    options.env = {{"PROXY_RETRY_MIN_WAIT", "0.01"},
                   {"PROXY_RETRY_MAX_WAIT", "0.05"},
                   {"COURIER_CIRCUIT_FAILURES", "1000"}};
  }

  static std::vector<RecordedRequest> upstream_requests_for(std::string_view target) {
    std::vector<RecordedRequest> out;
    for (auto& seen : upstream_->requests()) {
      if (seen.target == target) out.push_back(std::move(seen));
    }
    return out;
  }
};

TEST_F(NeverTwiceTest, PostLostAfterTheUpstreamReadItOnAReusedConnectionIsNotSentAgain) {
  // First POST answered keep-alive; the second, on that same connection, is read in full and
  // the connection closed without an answer; a third step would answer a resend.
  upstream_->script("/orders",
                    {Step::respond(200, "first"), Step::close(), Step::respond(200, "sent twice")});
  const auto first = http_request(port(), "POST", "/rule-engine/orders", {}, R"({"n":1})");
  ASSERT_TRUE(first.ok()) << first.error.message();
  ASSERT_EQ(first.status, 200u);

  const auto r = http_request(port(), "POST", "/rule-engine/orders", {}, R"({"n":2})");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 502u) << r.body;
  const auto body = error_body(r);
  EXPECT_EQ(body.value("code", ""), "RULE_ENGINE_BAD_RESPONSE");
  EXPECT_EQ(body.value("detail", "").rfind("connection lost after sending", 0), 0u) << body.dump();
  EXPECT_EQ(attempts_of(r), 1);

  const auto seen = upstream_requests_for("/orders");
  ASSERT_EQ(seen.size(), 2u) << "the second POST reached the upstream exactly once";
  EXPECT_EQ(seen[1].body, R"({"n":2})");
  EXPECT_EQ(seen[1].connection_index, seen[0].connection_index) << "on the reused connection";
  EXPECT_EQ(seen[1].index_on_connection, 1u);
}

TEST_F(NeverTwiceTest, GetLostTheSameWayIsSentAgainAndSucceeds) {
  upstream_->script("/catalog",
                    {Step::respond(200, "first"), Step::close(), Step::respond(200, "second")});
  const auto first = http_request(port(), "GET", "/rule-engine/catalog");
  ASSERT_TRUE(first.ok()) << first.error.message();
  ASSERT_EQ(first.status, 200u);

  const auto r = http_request(port(), "GET", "/rule-engine/catalog");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.body, "second");
  const auto seen = upstream_requests_for("/catalog");
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].connection_index, seen[0].connection_index);
  EXPECT_NE(seen[2].connection_index, seen[1].connection_index) << "resent on a fresh one";
}

TEST_F(NeverTwiceTest, PostWithIdempotencyKeyLostTheSameWayIsSentAgain) {
  upstream_->script("/payments",
                    {Step::respond(200, "first"), Step::close(), Step::respond(200, "paid")});
  const HeaderList key = {{"Idempotency-Key", "pay-7"}};
  ASSERT_EQ(http_request(port(), "POST", "/rule-engine/payments", key, "a").status, 200u);
  const auto r = http_request(port(), "POST", "/rule-engine/payments", key, "b");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.body, "paid");
  EXPECT_EQ(upstream_requests_for("/payments").size(), 3u);
}

TEST_F(NeverTwiceTest, PostCutOffDuringItsBodyOnAReusedConnectionIsNotSentAgain) {
  upstream_->script("/upload", {Step::respond(200, "first"), Step::respond(200, "sent twice")});
  ASSERT_EQ(http_request(port(), "POST", "/rule-engine/upload", {}, "small").status, 200u);

  // 2 MiB, of which the upstream reads 64 KiB before it closes (with the rest unread: a reset).
  upstream_->close_during_body("/upload", 64 * 1024);
  const std::string big(2 << 20, 'x');
  const auto r = http_request(port(), "POST", "/rule-engine/upload", {}, big, 10s);
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 502u) << r.body;
  const auto body = error_body(r);
  EXPECT_EQ(body.value("code", ""), "RULE_ENGINE_BAD_RESPONSE");
  EXPECT_EQ(body.value("detail", "").rfind("connection lost after sending", 0), 0u) << body.dump();
  EXPECT_EQ(attempts_of(r), 1);

  const auto seen = upstream_requests_for("/upload");
  ASSERT_EQ(seen.size(), 2u) << "the cut-off POST was not sent again";
  EXPECT_GE(seen[1].body.size(), 64u * 1024);
  EXPECT_LT(seen[1].body.size(), big.size());
  EXPECT_EQ(seen[1].connection_index, seen[0].connection_index);
}

TEST_F(NeverTwiceTest, PostLostBeforeAnyAnswerIsNotRetriedByThePolicyEither) {
  // Every attempt is lost this way: whether or not the pool reused a connection, neither it nor
  // the retry policy may send the POST again.
  upstream_->script("/fresh", {Step::close()});
  const auto r = http_request(port(), "POST", "/rule-engine/fresh", {}, "once");
  ASSERT_TRUE(r.ok()) << r.error.message();
  EXPECT_EQ(r.status, 502u) << r.body;
  EXPECT_EQ(attempts_of(r), 1);
  EXPECT_EQ(upstream_requests_for("/fresh").size(), 1u);
}

}  // namespace
}  // namespace courier::testing
