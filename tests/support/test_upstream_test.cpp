#include "tests/support/test_upstream.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

namespace courier::testing {
namespace {

TEST(TestUpstream, EchoesMethodTargetHeadersAndBody) {
  TestUpstream upstream;
  auto result = http_request(upstream.port(), "POST", "/echo?x=1", {{"X-Test", "yes"}}, "payload");
  ASSERT_TRUE(result.ok()) << result.error.message();
  EXPECT_EQ(result.status, 200u);
  EXPECT_EQ(result.header("X-Echo-Method"), "POST");
  const auto echo = nlohmann::json::parse(result.body);
  EXPECT_EQ(echo["method"], "POST");
  EXPECT_EQ(echo["target"], "/echo?x=1");
  EXPECT_EQ(echo["body"], "payload");
  EXPECT_EQ(echo["connection_index"], 0);
  bool saw_header = false;
  for (const auto& pair : echo["headers"]) saw_header = saw_header || pair[0] == "X-Test";
  EXPECT_TRUE(saw_header);

  EXPECT_EQ(upstream.hits("/echo"), 1u);
  const auto recorded = upstream.last_request();
  ASSERT_TRUE(recorded);
  EXPECT_EQ(recorded->body, "payload");
  EXPECT_EQ(recorded->header("x-test"), "yes");
}

TEST(TestUpstream, ScriptReplaysStepsThenRepeatsTheLast) {
  TestUpstream upstream;
  upstream.script("/flaky", {Step::respond(503, "busy"), Step::respond(200, "fine")});
  EXPECT_EQ(http_request(upstream.port(), "GET", "/flaky").status, 503u);
  const auto second = http_request(upstream.port(), "GET", "/flaky?again");
  EXPECT_EQ(second.status, 200u);
  EXPECT_EQ(second.body, "fine");
  EXPECT_EQ(http_request(upstream.port(), "GET", "/flaky").status, 200u);
  EXPECT_EQ(upstream.hits("/flaky"), 3u);
  EXPECT_EQ(http_request(upstream.port(), "GET", "/other").status, 200u);  // unscripted: echo
}

TEST(TestUpstream, CloseActionEndsTheConnectionWithoutAResponse) {
  TestUpstream upstream;
  upstream.script("/drop", {Step::close()});
  const auto result = http_request(upstream.port(), "GET", "/drop");
  EXPECT_EQ(result.error, ClientError::kClosed);
  EXPECT_EQ(upstream.hits("/drop"), 1u);
}

TEST(TestUpstream, RespondAndCloseAnnouncesAndCloses) {
  TestUpstream upstream;
  upstream.script("/bye", {Step::respond_and_close(200, "last")});
  TestHttpConnection connection;
  ASSERT_FALSE(connection.connect(upstream.port()));
  const auto result = connection.request("GET", "/bye");
  ASSERT_TRUE(result.ok()) << result.error.message();
  EXPECT_FALSE(result.keep_alive);
  EXPECT_EQ(result.body, "last");
  const auto rest = connection.read_until_close(2s);
  EXPECT_TRUE(rest.peer_closed);
  EXPECT_TRUE(rest.data.empty());
}

TEST(TestUpstream, KeepAliveServesManyRequestsOnOneConnection) {
  TestUpstream upstream;
  TestHttpConnection connection;
  ASSERT_FALSE(connection.connect(upstream.port()));
  for (int i = 0; i < 3; ++i) {
    const auto result = connection.request("GET", "/k");
    ASSERT_TRUE(result.ok()) << result.error.message();
    EXPECT_TRUE(result.keep_alive);
    EXPECT_EQ(nlohmann::json::parse(result.body)["index_on_connection"], i);
  }
  EXPECT_EQ(upstream.connections_accepted(), 1u);
}

TEST(TestUpstream, ChunkedActionSendsAChunkedBody) {
  TestUpstream upstream;
  upstream.script("/chunks", {Step::chunked(200, "0123456789", {{"Content-Type", "text/plain"}})});
  const auto result = http_request(upstream.port(), "GET", "/chunks");
  ASSERT_TRUE(result.ok()) << result.error.message();
  EXPECT_TRUE(result.chunked);
  EXPECT_EQ(result.body, "0123456789");
  EXPECT_EQ(result.header("Content-Type"), "text/plain");
}

TEST(TestUpstream, HeadGetsHeadersWithoutBody) {
  TestUpstream upstream;
  TestHttpConnection connection;
  ASSERT_FALSE(connection.connect(upstream.port()));
  const auto head = connection.request("HEAD", "/h");
  ASSERT_TRUE(head.ok()) << head.error.message();
  EXPECT_TRUE(head.body.empty());
  EXPECT_NE(head.header("Content-Length"), "0");
  EXPECT_EQ(connection.request("GET", "/h").status, 200u);  // framing intact after HEAD
}

TEST(TestUpstream, StallHoldsTheRequestUntilStop) {
  TestUpstream upstream;
  upstream.script("/stall", {Step::stall()});
  const auto result = http_request(upstream.port(), "GET", "/stall", {}, {}, 200ms);
  EXPECT_EQ(result.error, ClientError::kTimeout);
  TestHttpConnection held;
  ASSERT_FALSE(held.connect(upstream.port()));
  ASSERT_FALSE(held.send("GET", "/stall"));
  ASSERT_TRUE(upstream.wait_for_hits("/stall", 2, 5s));
  upstream.stop();  // returns although a request is stalled
  EXPECT_TRUE(held.read_until_close(2s).peer_closed);
}

TEST(TestUpstream, DelayedStepAnswersAfterTheDelay) {
  TestUpstream upstream;
  upstream.script("/slow", {Step::respond(200, "late").after(150ms)});
  const auto start = std::chrono::steady_clock::now();
  const auto result = http_request(upstream.port(), "GET", "/slow");
  EXPECT_EQ(result.body, "late");
  EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms);
}

TEST(TestUpstream, CloseAfterResponseClosesWithoutAnnouncingIt) {
  TestUpstream upstream({.close_after_response = true});
  TestHttpConnection connection;
  ASSERT_FALSE(connection.connect(upstream.port()));
  const auto result = connection.request("GET", "/x");
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result.keep_alive);
  EXPECT_TRUE(connection.read_until_close(2s).peer_closed);
}

TEST(TestUpstream, IdleCloseClosesQuietKeepAliveConnections) {
  TestUpstream upstream({.idle_close = 100ms});
  TestHttpConnection connection;
  ASSERT_FALSE(connection.connect(upstream.port()));
  ASSERT_TRUE(connection.request("GET", "/x").ok());
  const auto rest = connection.read_until_close(3s);
  EXPECT_TRUE(rest.peer_closed);
  EXPECT_TRUE(wait_until([&] { return upstream.open_connections() == 0; }, 2s));
}

TEST(TestUpstream, OversizedBodyGets413) {
  TestUpstream upstream({.body_limit = 1024});
  const auto result = http_request(upstream.port(), "POST", "/big", {}, std::string(4096, 'x'));
  ASSERT_TRUE(result.ok()) << result.error.message();
  EXPECT_EQ(result.status, 413u);
  EXPECT_EQ(upstream.request_count(), 0u);
}

TEST(TestUpstream, MalformedRequestGets400) {
  TestUpstream upstream;
  const auto raw = raw_exchange(upstream.port(), "GET / HTTP/1.1\r\nBad Header\r\n\r\n");
  EXPECT_TRUE(raw.peer_closed);
  EXPECT_EQ(raw.data.rfind("HTTP/1.1 400", 0), 0u) << raw.data;
}

TEST(TestUpstream, WaitForHitsSeesRequestsFromAnotherThread) {
  TestUpstream upstream;
  std::thread client([&] {
    for (int i = 0; i < 5; ++i) http_request(upstream.port(), "GET", "/w");
  });
  EXPECT_TRUE(upstream.wait_for_hits("/w", 5, 5s));
  client.join();
  EXPECT_FALSE(upstream.wait_for_hits("/w", 6, 50ms));
}

}  // namespace
}  // namespace courier::testing
