// The pure pieces of relaying a stream: the head's checks and framing, chunk lines, SSE event
// boundaries and keep-alive decisions, flow-control accounting, and abort reasons for the log.
#include "gateway/stream_relay.hpp"

#include <gtest/gtest.h>

namespace courier::gateway {
namespace {

using namespace std::chrono_literals;

HttpRequest get(unsigned version = 11) {
  HttpRequest r{http::verb::get, "/svc/x", version};
  r.keep_alive(true);
  return r;
}

ReplyEnvelope head(unsigned status, Headers headers) {
  ReplyEnvelope e;
  e.status = status;
  e.headers = std::move(headers);
  e.attempts = 2;
  return e;
}

TEST(StreamHead, AnHttp11ClientGetsChunkedWithOurRequestId) {
  auto h = stream_head(head(200, {{"Content-Type", "text/plain"}, {"X-Request-ID", "theirs"}}),
                       get(), "svc", "ours");
  ASSERT_EQ(h.problem, "");
  EXPECT_EQ(h.framing, StreamFraming::kChunked);
  EXPECT_TRUE(h.response.chunked());
  EXPECT_EQ(h.response["X-Request-ID"], "ours");
  EXPECT_EQ(h.response.count(http::field::content_length), 0u);
  EXPECT_FALSE(h.event_stream);
  EXPECT_EQ(h.response.count("X-Accel-Buffering"), 0u);
  EXPECT_EQ(h.attempts, 2u);
  EXPECT_TRUE(h.response.keep_alive());
}

TEST(StreamHead, AnUpstreamContentLengthIsKeptAndFramesTheBody) {
  auto h = stream_head(head(200, {{"Content-Length", "12345"}}), get(), "svc", "id");
  ASSERT_EQ(h.problem, "");
  EXPECT_EQ(h.framing, StreamFraming::kLength);
  EXPECT_EQ(h.length, 12345u);
  EXPECT_EQ(h.response[http::field::content_length], "12345");
  EXPECT_FALSE(h.response.chunked());
}

TEST(StreamHead, AnHttp10ClientGetsACloseDelimitedBody) {
  auto h = stream_head(head(200, {}), get(10), "svc", "id");
  ASSERT_EQ(h.problem, "");
  EXPECT_EQ(h.framing, StreamFraming::kClose);
  EXPECT_FALSE(h.response.keep_alive());
  EXPECT_FALSE(h.response.chunked());
}

TEST(StreamHead, EventStreamsAskProxiesInFrontNotToBuffer) {
  auto h = stream_head(head(200, {{"content-type", "Text/Event-Stream; charset=utf-8"}}), get(),
                       "svc", "id");
  ASSERT_EQ(h.problem, "");
  EXPECT_TRUE(h.event_stream);
  EXPECT_EQ(h.response["X-Accel-Buffering"], "no");
}

TEST(StreamHead, AnInvalidHeadBecomesA502WithNothingOfIt) {
  for (auto bad : {head(101, {}), head(200, {{"Bad Name", "x"}}), head(200, {{"X", "a\r\nb"}}),
                   head(204, {}), head(200, {{"Content-Length", "12x"}}),
                   head(200, {{"Content-Length", "1"}, {"Content-Length", "2"}})}) {
    auto h = stream_head(std::move(bad), get(), "svc", "id");
    EXPECT_NE(h.problem, "");
    EXPECT_EQ(h.response.result_int(), 502u);
    EXPECT_EQ(h.response["X-Request-ID"], "id");
  }
  auto req = get();
  req.method(http::verb::head);
  EXPECT_NE(stream_head(head(200, {}), req, "svc", "id").problem, "");
}

TEST(ChunkHeader, IsTheSizeInHexAndCrlf) {
  EXPECT_EQ(chunk_header(1), "1\r\n");
  EXPECT_EQ(chunk_header(255), "ff\r\n");
  EXPECT_EQ(chunk_header(65536), "10000\r\n");
  EXPECT_EQ(kLastChunk, "0\r\n\r\n");
}

TEST(EventBoundary, HoldsBeforeAnythingAndAfterABlankLine) {
  EventBoundary b;
  EXPECT_TRUE(b.at_boundary());
  b.wrote("data: x\n");
  EXPECT_FALSE(b.at_boundary());
  b.wrote("\n");
  EXPECT_TRUE(b.at_boundary());
  b.wrote("data: y\r\n\r");
  EXPECT_FALSE(b.at_boundary());
  b.wrote("\n");
  EXPECT_TRUE(b.at_boundary());
  b.wrote("");
  EXPECT_TRUE(b.at_boundary());
  b.wrote("data: a very long event that ends mid-line");
  EXPECT_FALSE(b.at_boundary());
  b.wrote("\n\ndata: next\n\n");
  EXPECT_TRUE(b.at_boundary());
}

TEST(KeepAlive, OnlyForIdleEventStreamsAtABoundaryAndNotLengthFramed) {
  StreamHead sse;
  sse.event_stream = true;
  sse.framing = StreamFraming::kChunked;
  EXPECT_TRUE(keepalive_due(sse, 15ms, 20ms, true));
  EXPECT_FALSE(keepalive_due(sse, 15ms, 10ms, true));   // not idle long enough
  EXPECT_FALSE(keepalive_due(sse, 15ms, 20ms, false));  // mid-event
  EXPECT_FALSE(keepalive_due(sse, 0ms, 20ms, true));    // off
  auto plain = sse;
  plain.event_stream = false;
  EXPECT_FALSE(keepalive_due(plain, 15ms, 20ms, true));
  auto sized = sse;
  sized.framing = StreamFraming::kLength;
  EXPECT_FALSE(keepalive_due(sized, 15ms, 20ms, true));
  auto closing = sse;
  closing.framing = StreamFraming::kClose;
  EXPECT_TRUE(keepalive_due(closing, 15ms, 20ms, true));
}

TEST(StreamWindow, MoreThanGrantedIsAProtocolError) {
  StreamWindow w(100);
  EXPECT_TRUE(w.receive(60));
  EXPECT_TRUE(w.receive(40));
  w.grant(10);
  EXPECT_TRUE(w.receive(10));
  EXPECT_FALSE(w.receive(1));
}

TEST(CreditDue, BatchesUnlessNothingElseIsQueued) {
  EXPECT_EQ(credit_due(0, kCreditBatch, true), 0u);
  EXPECT_EQ(credit_due(100, kCreditBatch, false), 0u);
  EXPECT_EQ(credit_due(100, kCreditBatch, true), 100u);
  EXPECT_EQ(credit_due(kCreditBatch, kCreditBatch, false), kCreditBatch);
}

TEST(SanitizeReason, KeepsPrintableAsciiEscapesQuotesAndBoundsTheLength) {
  EXPECT_EQ(sanitize_reason("worker lost"), "worker lost");
  EXPECT_EQ(sanitize_reason("a\"b\\c"), "a\\\"b\\\\c");
  EXPECT_EQ(sanitize_reason(std::string("x\ny\0z\x80", 6)), "x?y?z?");
  EXPECT_EQ(sanitize_reason(std::string(1000, 'a')).size(), 256u);
}

}  // namespace
}  // namespace courier::gateway
