// Streamed replies, flow control, stream timeouts and cancellation in the forwarder and its
// connection pool, against real upstream sockets on loopback that write on a schedule.
#include <gtest/gtest.h>

#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "common/http_headers.hpp"
#include "tests/unit/workers/scripted_upstream.hpp"
#include "workers/forwarder.hpp"

namespace courier::workers {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using protocol::StreamPart;

TEST(ShouldStream, StreamsChunkedCloseDelimitedEventStreamsAndLongBodies) {
  constexpr std::uint64_t kThreshold = 1000;
  EXPECT_TRUE(should_stream(false, 200, true, std::nullopt, "application/json", kThreshold));
  EXPECT_TRUE(should_stream(false, 200, false, std::nullopt, "", kThreshold));
  EXPECT_TRUE(should_stream(false, 200, false, 10, "text/event-stream", kThreshold));
  EXPECT_TRUE(
      should_stream(false, 200, false, 10, " Text/Event-Stream ; charset=utf-8", kThreshold));
  EXPECT_TRUE(should_stream(false, 500, false, 1001, "text/plain", kThreshold));
  EXPECT_FALSE(should_stream(false, 200, false, 1000, "text/plain", kThreshold));
  EXPECT_FALSE(should_stream(false, 200, false, 10, "text/event-streamx", kThreshold));
  EXPECT_FALSE(should_stream(false, 200, false, 0, "text/event-stream", kThreshold))
      << "no body, nothing to stream";
}

TEST(ShouldStream, NeverForResponsesWithoutABody) {
  EXPECT_FALSE(should_stream(true, 200, true, std::nullopt, "text/event-stream", 0));
  EXPECT_FALSE(should_stream(false, 103, false, std::nullopt, "", 0));
  EXPECT_FALSE(should_stream(false, 204, false, std::nullopt, "", 0));
  EXPECT_FALSE(should_stream(false, 304, true, std::nullopt, "", 0));
}

// What the worker would send as STREAM frames, with the time each part arrived.
class RecordingStream final : public ReplyStream {
 public:
  struct Part {
    StreamPart part;
    std::string payload;
    Clock::time_point at;
  };
  explicit RecordingStream(asio::io_context& ioc) : ReplyStream(ioc.get_executor()) {}

  std::vector<Part> parts;
  std::optional<ReplyEnvelope> head_envelope;
  // Grants credit back for every byte received, as a gateway writing to a fast client would.
  bool auto_credit = false;
  // Refuses the send of this part (0 is the HEAD), as a link whose queue is full would.
  std::optional<std::size_t> refuse_part;
  int send_failures_reported = 0;  // on_send_failed() calls

  std::string body() const {
    std::string out;
    for (const auto& p : parts) {
      if (p.part == StreamPart::kData || p.part == StreamPart::kEnd) out += p.payload;
    }
    return out;
  }
  std::size_t body_bytes() const { return body().size(); }
  const Part& last() const { return parts.back(); }

 protected:
  bool send_head(const ReplyEnvelope& head) override {
    if (refused()) return false;
    head_envelope = head;
    parts.push_back({StreamPart::kHead, "", Clock::now()});
    return true;
  }
  bool send(StreamPart part, std::string_view payload) override {
    if (refused()) return false;
    parts.push_back({part, std::string(payload), Clock::now()});
    if (auto_credit && !payload.empty() && part == StreamPart::kData) {
      add_credit(static_cast<std::uint32_t>(payload.size()));
    }
    return true;
  }
  void on_send_failed() override { ++send_failures_reported; }

 private:
  bool refused() { return refuse_part && sends_++ == *refuse_part; }
  std::size_t sends_ = 0;
};

TEST(ReplyStream, AfterARefusedPartOnlyOneAbortGoesOutAndNeverAnEnd) {
  asio::io_context ioc;
  RecordingStream stream(ioc);
  stream.refuse_part = 2;  // the second DATA
  stream.head(ReplyEnvelope{});
  stream.data("one");
  stream.data("two");
  EXPECT_TRUE(stream.broken());
  EXPECT_TRUE(stream.finished());
  stream.data("three");
  stream.end("four");
  stream.abort("later");
  ASSERT_EQ(stream.parts.size(), 3u);
  EXPECT_EQ(stream.parts[1].payload, "one");
  EXPECT_EQ(stream.last().part, StreamPart::kAbort);
  EXPECT_EQ(stream.last().payload, kSendFailedReason);
  EXPECT_EQ(stream.send_failures_reported, 1);
}

TEST(ReplyStream, ARefusedEndIsFollowedByAnAbort) {
  asio::io_context ioc;
  RecordingStream stream(ioc);
  stream.refuse_part = 1;
  stream.head(ReplyEnvelope{});
  stream.end("all");
  ASSERT_EQ(stream.parts.size(), 2u);
  EXPECT_EQ(stream.last().part, StreamPart::kAbort);
  EXPECT_EQ(stream.send_failures_reported, 1);
}

TEST(ReplyStream, CreditBeyondTheLargestWindowIsIgnored) {
  asio::io_context ioc;
  RecordingStream stream(ioc);
  EXPECT_TRUE(stream.add_credit(kMaxStreamCredit - stream.credit()));
  EXPECT_EQ(stream.credit(), kMaxStreamCredit);
  EXPECT_FALSE(stream.add_credit(1));
  EXPECT_FALSE(stream.add_credit(protocol::kMaxCredit));
  EXPECT_EQ(stream.credit(), kMaxStreamCredit);
  stream.data("x");
  EXPECT_TRUE(stream.add_credit(1));
}

// One connection at a time: reads a request, then runs the test's script on the socket. Counts
// requests and notes when the client closed the connection (a read ends in EOF or a reset).
class LiveUpstream {
 public:
  using Script = std::function<asio::awaitable<void>(tcp::socket&)>;
  LiveUpstream(asio::io_context& ioc, Script script)
      : acceptor_(ioc, {asio::ip::make_address("127.0.0.1"), 0}), script_(std::move(script)) {
    asio::co_spawn(ioc, accept_loop(), asio::detached);
  }
  UpstreamUrl url() const {
    const auto port = acceptor_.local_endpoint().port();
    return {"127.0.0.1", port, "", "http://127.0.0.1:" + std::to_string(port)};
  }
  int requests() const { return requests_; }
  std::optional<Clock::time_point> client_closed_at;
  std::uint64_t written = 0;  // body bytes the script got into the socket

  // For scripts: waits until the client closes the connection, and notes when.
  asio::awaitable<void> until_closed(tcp::socket& socket) {
    char byte;
    beast::error_code ec;
    while (!ec) {
      co_await socket.async_read_some(asio::buffer(&byte, 1),
                                      asio::redirect_error(asio::use_awaitable, ec));
    }
    client_closed_at = Clock::now();
  }
  asio::awaitable<bool> write(tcp::socket& socket, std::string_view bytes) {
    beast::error_code ec;
    const auto n = co_await asio::async_write(socket, asio::buffer(bytes),
                                              asio::redirect_error(asio::use_awaitable, ec));
    written += n;
    co_return !ec;
  }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      beast::error_code ec;
      auto socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      asio::co_spawn(acceptor_.get_executor(), serve(std::move(socket)), asio::detached);
    }
  }
  asio::awaitable<void> serve(tcp::socket socket) {
    beast::flat_buffer buffer;
    http::request<http::string_body> request;
    beast::error_code ec;
    co_await http::async_read(socket, buffer, request,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    ++requests_;
    co_await script_(socket);
  }

  tcp::acceptor acceptor_;
  Script script_;
  int requests_ = 0;
};

asio::awaitable<void> pause(std::chrono::milliseconds how_long) {
  asio::steady_timer timer(co_await asio::this_coro::executor, how_long);
  beast::error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

std::string chunk(std::string_view data) {
  std::ostringstream out;
  out << std::hex << data.size() << "\r\n" << data << "\r\n";
  return out.str();
}

constexpr std::string_view kChunkedHead =
    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    "Transfer-Encoding: chunked\r\n\r\n";

class StreamingTest : public ::testing::Test {
 protected:
  ServiceConfig service(const UpstreamUrl& upstream) {
    ServiceConfig s;
    s.name = "rule-engine";
    s.upstream = upstream;
    s.timeout = 2s;
    s.retry_min_wait = 1ms;
    s.retry_max_wait = 5ms;
    s.stream_idle_timeout = 2s;
    return s;
  }
  static RequestEnvelope get(std::string method = "GET") {
    RequestEnvelope request;
    request.service = "rule-engine";
    request.method = std::move(method);
    request.target = "/play/riddle/1";
    request.request_id = "req-s";
    return request;
  }
  // Runs forward() with `stream` and `cancel_`; nullopt inside: it streamed.
  std::optional<ReplyEnvelope> forward(Forwarder& forwarder, RecordingStream& stream,
                                       RequestEnvelope request = get()) {
    std::optional<ReplyEnvelope> reply;
    const auto done = testing::run_for(ioc_, [&]() -> asio::awaitable<bool> {
      co_await forwarder.forward(request, stream, cancel_, reply);
      co_return true;
    }());
    EXPECT_TRUE(done.has_value()) << "forward did not complete";
    return reply;
  }
  // Calls cancel_.cancel() once `ready` holds (polled every 5 ms), and notes when.
  void cancel_when(std::function<bool()> ready) {
    asio::co_spawn(
        ioc_,
        [this, ready]() -> asio::awaitable<void> {
          const auto give_up = Clock::now() + 10s;
          while (!ready() && Clock::now() < give_up) co_await pause(5ms);
          cancelled_at_ = Clock::now();
          cancel_.cancel();
        },
        asio::detached);
  }

  asio::io_context ioc_;
  Cancellation cancel_;
  Clock::time_point cancelled_at_{};
};

TEST_F(StreamingTest, ChunkedUpstreamYieldsHeadDataThenEndWithTheExactBytes) {
  LiveUpstream upstream(ioc_, [&](tcp::socket& s) -> asio::awaitable<void> {
    co_await upstream.write(s, kChunkedHead);
    co_await upstream.write(s, chunk("hello "));
    co_await pause(30ms);
    co_await upstream.write(s, chunk(std::string(100'000, 'x')));
    co_await pause(30ms);
    co_await upstream.write(s, chunk("bye") + "0\r\n\r\n");
    co_await upstream.until_closed(s);
  });
  Forwarder forwarder(ioc_.get_executor(), service(upstream.url()), "worker-1", 1);
  RecordingStream stream(ioc_);
  stream.auto_credit = true;

  EXPECT_FALSE(forward(forwarder, stream).has_value()) << "streamed, so no reply";
  ASSERT_GE(stream.parts.size(), 3u);
  EXPECT_EQ(stream.parts.front().part, StreamPart::kHead);
  EXPECT_EQ(stream.last().part, StreamPart::kEnd);
  for (std::size_t i = 1; i + 1 < stream.parts.size(); ++i) {
    EXPECT_EQ(stream.parts[i].part, StreamPart::kData);
    EXPECT_LE(stream.parts[i].payload.size(), 64u * 1024);
  }
  EXPECT_EQ(stream.body(), "hello " + std::string(100'000, 'x') + "bye");
  ASSERT_TRUE(stream.head_envelope);
  const auto& head = *stream.head_envelope;
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty());
  EXPECT_EQ(head.attempts, 1u);
  EXPECT_EQ(head.worker_id, "worker-1");
  ASSERT_NE(find_header(head.headers, "X-Courier-Attempts"), nullptr);
  EXPECT_EQ(find_header(head.headers, "Transfer-Encoding"), nullptr);
  ASSERT_NE(find_header(head.headers, "Content-Type"), nullptr);
  EXPECT_EQ(forwarder.stats().streams, 1u);
  EXPECT_EQ(forwarder.stats().stream_aborts, 0u);
}

TEST_F(StreamingTest, SseEventsArriveOneByOneAsTheyAreSent) {
  std::vector<Clock::time_point> sent;
  const std::vector<std::string> events = {"data: a\n\n", "data: bb\n\n", "data: ccc\n\n"};
  LiveUpstream upstream(ioc_, [&](tcp::socket& s) -> asio::awaitable<void> {
    // Close-delimited, as many SSE servers send it.
    co_await upstream.write(s, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n");
    for (const auto& event : events) {
      co_await pause(200ms);
      sent.push_back(Clock::now());
      co_await upstream.write(s, event);
    }
    s.close();
  });
  Forwarder forwarder(ioc_.get_executor(), service(upstream.url()), "worker-1", 1);
  RecordingStream stream(ioc_);
  stream.auto_credit = true;

  EXPECT_FALSE(forward(forwarder, stream).has_value());
  std::vector<RecordingStream::Part> data;
  for (const auto& p : stream.parts) {
    if (p.part == StreamPart::kData) data.push_back(p);
  }
  ASSERT_EQ(data.size(), events.size());
  ASSERT_EQ(sent.size(), events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(data[i].payload, events[i]);
    EXPECT_LT(data[i].at - sent[i], 100ms) << "event " << i << " was held back";
  }
  EXPECT_EQ(stream.last().part, StreamPart::kEnd) << "the upstream's close ends the body";
}

TEST_F(StreamingTest, WithoutCreditTheUpstreamIsNotReadAndTheStreamAborts) {
  constexpr std::uint64_t kBody = 64ull << 20;  // far beyond what loopback socket buffers hold
  bool writes_done = false;
  LiveUpstream upstream(ioc_, [&](tcp::socket& s) -> asio::awaitable<void> {
    co_await upstream.write(
        s, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(kBody) + "\r\n\r\n");
    const std::string block(1 << 20, 'z');
    for (std::uint64_t sent = 0; sent < kBody; sent += block.size()) {
      if (!co_await upstream.write(s, block)) break;
    }
    writes_done = true;
  });
  auto config = service(upstream.url());
  config.stream_idle_timeout = 300ms;
  Forwarder forwarder(ioc_.get_executor(), config, "worker-1", 1);
  RecordingStream stream(ioc_);  // never grants credit

  EXPECT_FALSE(forward(forwarder, stream).has_value());
  EXPECT_LE(stream.body_bytes(), protocol::kInitialStreamWindow);
  EXPECT_EQ(stream.last().part, StreamPart::kAbort);
  EXPECT_EQ(stream.last().payload, "client not reading");
  EXPECT_FALSE(writes_done) << "the upstream's writes should have blocked";
  EXPECT_LT(upstream.written, kBody);
  EXPECT_EQ(forwarder.stats().stream_aborts, 1u);
}

TEST_F(StreamingTest, CreditLetsAStreamGoOnFromWhereItStopped) {
  constexpr std::size_t kBody = 3 << 20;  // over the 1 MiB threshold: streamed
  LiveUpstream upstream(ioc_, [&](tcp::socket& s) -> asio::awaitable<void> {
    co_await upstream.write(s, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(kBody) +
                                   "\r\n\r\n" + std::string(kBody, 'q'));
    co_await upstream.until_closed(s);
  });
  Forwarder forwarder(ioc_.get_executor(), service(upstream.url()), "worker-1", 1);
  RecordingStream stream(ioc_);
  // Credit in 64 KiB steps, each some time after the window ran dry, like a slow client.
  asio::co_spawn(
      ioc_,
      [&]() -> asio::awaitable<void> {
        while (!stream.finished()) {
          co_await pause(2ms);
          if (stream.credit() == 0) stream.add_credit(64 * 1024);
        }
      },
      asio::detached);

  EXPECT_FALSE(forward(forwarder, stream).has_value());
  EXPECT_EQ(stream.last().part, StreamPart::kEnd);
  EXPECT_EQ(stream.body_bytes(), kBody);
  ASSERT_NE(find_header(stream.head_envelope->headers, "Content-Length"), nullptr);
  EXPECT_EQ(find_header(stream.head_envelope->headers, "Content-Length")->value,
            std::to_string(kBody));
}

TEST_F(StreamingTest, ContentLengthUnderTheThresholdIsOneReply) {
  testing::ScriptedUpstream upstream(ioc_, {{testing::ok_response(std::string(5000, 'k'))}});
  auto config = service(upstream.url());
  config.stream_threshold = 5000;
  Forwarder forwarder(ioc_.get_executor(), config, "worker-1", 1);
  RecordingStream stream(ioc_);

  const auto reply = forward(forwarder, stream);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->body, std::string(5000, 'k'));
  EXPECT_TRUE(stream.parts.empty());
  EXPECT_EQ(forwarder.stats().streams, 0u);
}

TEST_F(StreamingTest, AChunkedRetryableStatusIsReadWholeAndRetried) {
  const std::string chunked_503 =
      "HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk("later") + "0\r\n\r\n";
  testing::ScriptedUpstream upstream(ioc_, {{chunked_503}, {testing::ok_response("now")}});
  Forwarder forwarder(ioc_.get_executor(), service(upstream.url()), "worker-1", 1);
  RecordingStream stream(ioc_);

  const auto reply = forward(forwarder, stream);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->attempts, 2u);
  EXPECT_TRUE(stream.parts.empty());
}

TEST_F(StreamingTest, CancelDuringTheExchangeClosesTheUpstreamConnectionAndIsNotRetried) {
  LiveUpstream upstream(ioc_, [&](tcp::socket& s) -> asio::awaitable<void> {
    co_await upstream.until_closed(s);  // an LLM thinking for a long time
  });
  Forwarder forwarder(ioc_.get_executor(), service(upstream.url()), "worker-1", 1);
  RecordingStream stream(ioc_);
  cancel_when([&] { return upstream.requests() == 1; });

  const auto reply = forward(forwarder, stream);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 499);
  ASSERT_TRUE(reply->error);
  EXPECT_EQ(reply->error->code, "CLIENT_CLOSED_REQUEST");
  // The forward ends as the connection closes; let the upstream's read see it.
  ioc_.restart();
  ioc_.run_for(200ms);
  ASSERT_TRUE(upstream.client_closed_at) << "the upstream never saw its connection close";
  EXPECT_LT(*upstream.client_closed_at - cancelled_at_, 100ms);
  EXPECT_EQ(upstream.requests(), 1);
  EXPECT_EQ(forwarder.stats().retries, 0u);
  EXPECT_EQ(forwarder.stats().cancelled, 1u);
  EXPECT_EQ(forwarder.stats().circuit_failures, 0u);
}

TEST_F(StreamingTest, CancelDuringBackoffStopsTheRetries) {
  testing::ScriptedUpstream upstream(
      ioc_, {{testing::status_response(503)}, {testing::ok_response("too late")}});
  auto config = service(upstream.url());
  config.retry_min_wait = 5s;
  config.retry_max_wait = 5s;
  config.timeout = 10s;
  Forwarder forwarder(ioc_.get_executor(), config, "worker-1", 1);
  RecordingStream stream(ioc_);
  cancel_when([&] { return forwarder.stats().retries == 1; });

  const auto start = Clock::now();
  const auto reply = forward(forwarder, stream);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 499);
  EXPECT_LT(Clock::now() - start, 3s) << "the backoff ran its course";
  EXPECT_EQ(upstream.requests().size(), 1u);
  EXPECT_EQ(forwarder.stats().cancelled, 1u);
}

TEST_F(StreamingTest, CancelWhileStreamingAbortsAndClosesTheUpstream) {
  LiveUpstream upstream(ioc_, [&](tcp::socket& s) -> asio::awaitable<void> {
    co_await upstream.write(s, std::string(kChunkedHead) + chunk("first"));
    co_await upstream.until_closed(s);
  });
  Forwarder forwarder(ioc_.get_executor(), service(upstream.url()), "worker-1", 1);
  RecordingStream stream(ioc_);
  cancel_when([&] { return stream.body_bytes() > 0; });

  EXPECT_FALSE(forward(forwarder, stream).has_value());
  EXPECT_EQ(stream.body(), "first");
  EXPECT_EQ(stream.last().part, StreamPart::kAbort);
  EXPECT_EQ(stream.last().payload, "cancelled");
  ioc_.restart();
  ioc_.run_for(200ms);
  ASSERT_TRUE(upstream.client_closed_at);
  EXPECT_LT(*upstream.client_closed_at - cancelled_at_, 100ms);
  EXPECT_EQ(forwarder.stats().cancelled, 1u);
  EXPECT_EQ(forwarder.stats().stream_aborts, 1u);
}

TEST_F(StreamingTest, APartTheSinkCannotSendStopsTheStreamAndClosesTheUpstream) {
  LiveUpstream upstream(ioc_, [&](tcp::socket& s) -> asio::awaitable<void> {
    co_await upstream.write(s, std::string(kChunkedHead) + chunk("first"));
    co_await pause(20ms);
    co_await upstream.write(s, chunk("second"));
    co_await pause(20ms);
    co_await upstream.write(s, chunk("third") + "0\r\n\r\n");
    co_await upstream.until_closed(s);
  });
  Forwarder forwarder(ioc_.get_executor(), service(upstream.url()), "worker-1", 1);
  RecordingStream stream(ioc_);
  stream.refuse_part = 2;  // "second"

  EXPECT_FALSE(forward(forwarder, stream).has_value());
  EXPECT_EQ(stream.body(), "first");
  ASSERT_EQ(stream.parts.size(), 3u);
  EXPECT_EQ(stream.last().part, StreamPart::kAbort);
  EXPECT_EQ(stream.last().payload, kSendFailedReason);
  EXPECT_EQ(stream.send_failures_reported, 1);
  ioc_.restart();
  ioc_.run_for(200ms);
  EXPECT_TRUE(upstream.client_closed_at) << "the upstream is not read for nobody";
  EXPECT_EQ(forwarder.stats().stream_aborts, 1u);
  EXPECT_EQ(forwarder.stats().cancelled, 0u);
  EXPECT_EQ(upstream.requests(), 1) << "never sent again";
}

TEST_F(StreamingTest, CancelBeforeTheFirstAttemptSendsNothing) {
  testing::ScriptedUpstream upstream(ioc_, {{testing::ok_response()}});
  Forwarder forwarder(ioc_.get_executor(), service(upstream.url()), "worker-1", 1);
  RecordingStream stream(ioc_);
  cancel_.cancel();

  const auto reply = forward(forwarder, stream);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 499);
  EXPECT_TRUE(upstream.requests().empty());
}

TEST_F(StreamingTest, SilenceMidBodyAbortsWithIdleTimeout) {
  LiveUpstream upstream(ioc_, [&](tcp::socket& s) -> asio::awaitable<void> {
    co_await upstream.write(s, std::string(kChunkedHead) + chunk("tick"));
    co_await upstream.until_closed(s);
  });
  auto config = service(upstream.url());
  config.stream_idle_timeout = 200ms;
  Forwarder forwarder(ioc_.get_executor(), config, "worker-1", 1);
  RecordingStream stream(ioc_);

  EXPECT_FALSE(forward(forwarder, stream).has_value());
  EXPECT_EQ(stream.body(), "tick");
  EXPECT_EQ(stream.last().part, StreamPart::kAbort);
  EXPECT_EQ(stream.last().payload, "idle timeout");
  ioc_.restart();
  ioc_.run_for(200ms);
  EXPECT_TRUE(upstream.client_closed_at) << "the upstream connection is closed";
  EXPECT_EQ(upstream.requests(), 1);
}

TEST_F(StreamingTest, AStreamThatNeverEndsIsCutAtItsDurationCap) {
  LiveUpstream upstream(ioc_, [&](tcp::socket& s) -> asio::awaitable<void> {
    co_await upstream.write(s, kChunkedHead);
    while (co_await upstream.write(s, chunk("."))) co_await pause(20ms);
  });
  auto config = service(upstream.url());
  config.stream_max_duration = 300ms;
  Forwarder forwarder(ioc_.get_executor(), config, "worker-1", 1);
  RecordingStream stream(ioc_);
  stream.auto_credit = true;

  EXPECT_FALSE(forward(forwarder, stream).has_value());
  EXPECT_EQ(stream.last().part, StreamPart::kAbort);
  EXPECT_EQ(stream.last().payload, "stream duration cap");
  EXPECT_GT(stream.body_bytes(), 0u);
}

TEST_F(StreamingTest, UpstreamResetMidBodyAbortsAndIsNotRetriedEvenForGet) {
  LiveUpstream upstream(ioc_, [&](tcp::socket& s) -> asio::awaitable<void> {
    co_await upstream.write(s, std::string(kChunkedHead) + chunk("partial"));
    co_await pause(20ms);
    s.set_option(asio::socket_base::linger(true, 0));  // close with RST
    s.close();
  });
  Forwarder forwarder(ioc_.get_executor(), service(upstream.url()), "worker-1", 1);
  RecordingStream stream(ioc_);

  EXPECT_FALSE(forward(forwarder, stream).has_value());
  EXPECT_EQ(stream.body(), "partial");
  EXPECT_EQ(stream.last().part, StreamPart::kAbort);
  EXPECT_EQ(stream.last().payload.rfind("upstream failed mid-body", 0), 0u)
      << stream.last().payload;
  EXPECT_EQ(upstream.requests(), 1);
  EXPECT_EQ(forwarder.stats().retries, 0u);
  EXPECT_EQ(forwarder.stats().stream_aborts, 1u);
}

TEST_F(StreamingTest, ACompleteStreamLeavesItsKeepAliveConnectionForTheNextRequest) {
  testing::ScriptedUpstream upstream(
      ioc_, {{std::string(kChunkedHead) + chunk("one") + "0\r\n\r\n"}, {testing::ok_response()}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);
  RecordingStream stream(ioc_);
  StreamOptions options;
  options.sink = &stream;
  options.on_head = [&](const UpstreamHead& head) { stream.head(make_upstream_head(head)); };
  UpstreamRequest request{http::verb::get, "/", 11};
  request.set(http::field::host, "upstream");

  const auto first =
      testing::run_for(ioc_, pool.fetch(request, Clock::now() + 5s, {&options, &cancel_}));
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->streamed);
  EXPECT_EQ(first->stream_end, FetchResult::StreamEnd::kComplete);
  EXPECT_EQ(stream.body(), "one");
  EXPECT_EQ(pool.idle_connections(), 1u);
  const auto second = testing::run_for(ioc_, pool.fetch(request, Clock::now() + 5s));
  ASSERT_TRUE(second);
  EXPECT_EQ(second->response.body(), "ok");
  EXPECT_EQ(upstream.connections(), 1);
}

}  // namespace
}  // namespace courier::workers
