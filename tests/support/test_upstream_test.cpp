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

// The streaming steps and StreamingClient, against each other, without Courier in between.

StreamResponse stream_get(std::uint16_t port, std::string_view target) {
  StreamingClient client;
  EXPECT_FALSE(client.connect(port));
  EXPECT_FALSE(client.send("GET", target));
  client.read_all(std::chrono::seconds(10));
  return client.response();
}

TEST(TestUpstreamStream, WritesEachPartAtItsTimeAndTheClientTimesEachRead) {
  using namespace std::chrono_literals;
  TestUpstream upstream;
  upstream.script("/s", {Step::stream(200, {{"Content-Type", "text/event-stream"}},
                                      {{0ms, "data: a\n\n"}, {150ms, "data: b\n\n"}})});
  const auto r = stream_get(upstream.port(), "/s");
  EXPECT_EQ(r.status, 200u);
  EXPECT_TRUE(r.complete);
  EXPECT_TRUE(r.chunked);
  EXPECT_EQ(r.body(), "data: a\n\ndata: b\n\n");
  const auto blocks = r.sse_blocks();
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[1].text, "data: b");
  // The upstream marks the stream finished after its last write returns, which may be a moment
  // after the client has read it: poll, with a deadline.
  auto sent = upstream.streams("/s");
  for (const auto until = std::chrono::steady_clock::now() + 2s;
       (sent.empty() || !sent[0].finished) && std::chrono::steady_clock::now() < until;
       sent = upstream.streams("/s")) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ(sent.size(), 1u);
  ASSERT_EQ(sent[0].parts_at.size(), 2u);
  EXPECT_TRUE(sent[0].finished);
  EXPECT_GE(sent[0].parts_at[1] - sent[0].parts_at[0], 150ms);
  EXPECT_LT(blocks[0].at, sent[0].parts_at[1]) << "the first event was read before the second left";
  EXPECT_EQ(sent[0].body_bytes_written, r.body().size());
}

TEST(TestUpstreamStream, ContentLengthAndCloseDelimitedBodiesComplete) {
  using namespace std::chrono_literals;
  TestUpstream upstream;
  upstream.script(
      "/cl", {Step::stream(200, {}, {{0ms, "abc"}, {10ms, "def"}}, StreamFraming::kContentLength)});
  upstream.script("/close",
                  {Step::stream(200, {}, {{0ms, "abc"}, {10ms, "def"}}, StreamFraming::kClose)});
  const auto cl = stream_get(upstream.port(), "/cl");
  EXPECT_TRUE(cl.complete);
  EXPECT_EQ(cl.header("Content-Length"), "6");
  EXPECT_EQ(cl.body(), "abcdef");
  const auto closed = stream_get(upstream.port(), "/close");
  EXPECT_TRUE(closed.complete) << "a close-delimited body ends with the close";
  EXPECT_FALSE(closed.header("Content-Length"));
  EXPECT_EQ(closed.body(), "abcdef");
}

TEST(TestUpstreamStream, ResetOrCloseMidBodyLeavesATruncatedResponse) {
  using namespace std::chrono_literals;
  TestUpstream upstream;
  upstream.script("/reset", {Step::stream(200, {}, {{0ms, "abc"}}, StreamFraming::kChunked,
                                          StreamEnd::kReset)});
  upstream.script("/short", {Step::stream(200, {}, {{0ms, "abc"}}, StreamFraming::kContentLength,
                                          StreamEnd::kClose)});
  for (const char* target : {"/reset", "/short"}) {
    SCOPED_TRACE(target);
    const auto r = stream_get(upstream.port(), target);
    EXPECT_EQ(r.status, 200u);
    EXPECT_FALSE(r.complete);
    EXPECT_TRUE(r.peer_closed);
    EXPECT_EQ(r.body(), "abc");
  }
}

TEST(TestUpstreamStream, RecordsWhenTheClientHangsUp) {
  using namespace std::chrono_literals;
  TestUpstream upstream;
  std::vector<StreamPart> parts(50, StreamPart{200ms, "x"});
  upstream.script("/long", {Step::stream(200, {}, parts)});
  // And during the head's delay, before a byte of response.
  upstream.script("/late", {Step::stream(200, {}, {{0ms, "x"}}).after(10s)});
  for (const char* target : {"/long", "/late"}) {
    SCOPED_TRACE(target);
    StreamingClient client;
    ASSERT_FALSE(client.connect(upstream.port()));
    ASSERT_FALSE(client.send("GET", target));
    ASSERT_TRUE(upstream.wait_for_hits(target, 1, 5s));
    client.close();
    const auto hung_up = SteadyClock::now();
    ASSERT_TRUE(wait_until(
        [&] {
          const auto s = upstream.streams(target);
          return !s.empty() && s[0].over;
        },
        5s));
    const auto s = upstream.streams(target)[0];
    ASSERT_TRUE(s.client_closed_at);
    EXPECT_LT(*s.client_closed_at - hung_up, 1s);
    EXPECT_FALSE(s.finished);
  }
}

TEST(TestUpstreamStream, FloodStopsWhenTheClientDoesNotRead) {
  using namespace std::chrono_literals;
  TestUpstream upstream;
  auto flood = Step::flood(200, 256ull << 20);
  flood.send_buffer = 64 * 1024;
  upstream.script("/flood", {flood});
  StreamingClient client(16 * 1024);
  ASSERT_FALSE(client.connect(upstream.port()));
  ASSERT_FALSE(client.send("GET", "/flood"));
  ASSERT_FALSE(client.read_body(5s, 100'000));
  const auto body = client.response().body();
  ASSERT_EQ(body.size(), 100'000u);
  for (std::size_t i = 0; i < body.size(); ++i) ASSERT_EQ(body[i], flood_pattern(i)) << i;
  std::uint64_t previous = 0;
  auto since = SteadyClock::now();
  ASSERT_TRUE(wait_until(
      [&] {
        const auto n = upstream.streams("/flood")[0].body_bytes_written;
        if (n != previous) {
          previous = n;
          since = SteadyClock::now();
        }
        return SteadyClock::now() - since > 300ms;
      },
      10s));
  EXPECT_LT(previous, 8u << 20) << "a client that does not read holds the flood back";
}

}  // namespace
}  // namespace courier::testing
