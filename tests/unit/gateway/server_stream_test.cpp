// The gateway's HTTP server relaying streamed replies from a scripted broker to a real client on
// loopback: chunks written as they come, the window raised at the head, a truncated stream closed
// without its last chunk, SSE keep-alives, and a client that leaves cancelled at the broker.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <array>
#include <functional>
#include <thread>

#include "gateway/server.hpp"
#include "tests/unit/gateway/scripted_broker.hpp"

namespace courier::gateway {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using protocol::StreamPart;

class ServerStreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { spdlog::set_level(spdlog::level::warn); }

  void SetUp() override {
    BrokerClientOptions o;
    o.endpoints = {broker_.endpoint()};
    o.heartbeat_interval = 20ms;
    o.stats_interval = 20ms;
    o.liveness = 50;
    client_ = std::make_unique<BrokerClient>(context_, o);
    client_->start();
    ASSERT_TRUE(pump_until([&] { return client_->connected(); }));
  }
  void TearDown() override {
    if (server_) server_->stop(0ms);
    server_.reset();
    client_->stop();
  }

  void start_server(std::chrono::milliseconds sse_keepalive = 0ms,
                    const std::function<void(ServiceConfig&)>& tune = {}) {
    Settings settings;
    ServiceConfig svc;
    svc.name = "svc";
    svc.upstream.text = "http://svc:80";
    svc.sse_keepalive = sse_keepalive;
    if (tune) tune(svc);
    settings.services["svc"] = svc;
    ServerOptions options;
    options.listen_address = "127.0.0.1";
    options.listen_port = 0;
    options.threads = 1;
    server_ = std::make_unique<Server>(options, settings, *client_);
    port_ = server_->start();
    http_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    http_.non_blocking(true);
  }

  void send(std::string_view request) { asio::write(http_, asio::buffer(request)); }

  // Reads what the gateway sent so far into received_; true once it closed the connection.
  bool drain() {
    char buf[4096];
    for (;;) {
      beast::error_code ec;
      const auto n = http_.read_some(asio::buffer(buf), ec);
      if (ec == asio::error::would_block) return closed_;
      if (ec) {
        ended_ = ec;
        return closed_ = true;
      }
      received_.append(buf, n);
    }
  }

  bool pump_until(const std::function<bool()>& done) {
    const auto until = Clock::now() + 5s;
    while (!done()) {
      if (Clock::now() > until) return false;
      broker_.pump();
      if (server_) drain();
    }
    return true;
  }

  zmq::context_t context_{1};
  ScriptedBroker broker_{context_, kServes};
  std::unique_ptr<BrokerClient> client_;
  std::unique_ptr<Server> server_;
  std::uint16_t port_ = 0;
  asio::io_context io_;
  tcp::socket http_{io_};
  std::string received_;
  bool closed_ = false;
  beast::error_code ended_;  // how the gateway closed: eof for a FIN, connection_reset for a reset
};

constexpr std::string_view kGet = "GET /svc/events HTTP/1.1\r\nHost: x\r\n\r\n";

TEST_F(ServerStreamTest, ChunksReachTheClientAsTheyComeAndEndWithTheLastChunk) {
  start_server();
  send(kGet);
  ASSERT_TRUE(pump_until([&] { return broker_.requests.size() == 1; }));
  const auto r = broker_.requests[0];
  broker_.head(r, 200, {{"Content-Type", "text/event-stream"}});
  broker_.stream(r, StreamPart::kData, "data: a\n\n");
  ASSERT_TRUE(pump_until([&] { return received_.find("data: a\n\n") != std::string::npos; }))
      << received_;
  EXPECT_NE(received_.find("Transfer-Encoding: chunked"), std::string::npos);
  EXPECT_NE(received_.find("X-Accel-Buffering: no"), std::string::npos);
  EXPECT_NE(received_.find("\r\n\r\n9\r\ndata: a\n\n\r\n"), std::string::npos) << received_;
  // The window was raised to stream_window at the head, and the written bytes credited.
  ASSERT_TRUE(pump_until([&] { return broker_.credits.size() >= 2; }));
  EXPECT_EQ(broker_.credits[0].bytes, 256u * 1024 - protocol::kInitialStreamWindow);
  EXPECT_EQ(broker_.credits[1].bytes, 9u);
  broker_.stream(r, StreamPart::kEnd, "data: b\n\n");
  ASSERT_TRUE(pump_until([&] { return received_.ends_with("0\r\n\r\n"); })) << received_;
  EXPECT_FALSE(closed_);
  EXPECT_TRUE(broker_.cancels.empty());
  // The connection carries the next request.
  received_.clear();
  send(kGet);
  ASSERT_TRUE(pump_until([&] { return broker_.requests.size() == 2; }));
  broker_.reply(broker_.requests[1], "plain");
  ASSERT_TRUE(pump_until([&] { return received_.ends_with("plain"); })) << received_;
}

TEST_F(ServerStreamTest, AnAbortClosesTheConnectionWithoutTheLastChunk) {
  start_server();
  send(kGet);
  ASSERT_TRUE(pump_until([&] { return broker_.requests.size() == 1; }));
  const auto r = broker_.requests[0];
  broker_.head(r);
  broker_.stream(r, StreamPart::kData, "partial");
  broker_.stream(r, StreamPart::kAbort, "worker lost");
  ASSERT_TRUE(pump_until([&] { return closed_; })) << received_;
  EXPECT_NE(received_.find("partial"), std::string::npos);
  EXPECT_EQ(received_.find("0\r\n\r\n"), std::string::npos) << received_;
  // The missing last chunk shows the truncation: a FIN, so the client reads all that was written.
  EXPECT_EQ(ended_, asio::error::eof) << ended_.message();
}

TEST_F(ServerStreamTest, ATruncatedCloseDelimitedBodyEndsWithAResetNotAFin) {
  start_server();
  send("GET /svc/events HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(pump_until([&] { return broker_.requests.size() == 1; }));
  const auto r = broker_.requests[0];
  broker_.head(r);
  broker_.stream(r, StreamPart::kData, "partial");
  ASSERT_TRUE(pump_until([&] { return received_.find("partial") != std::string::npos; }));
  EXPECT_EQ(received_.find("chunked"), std::string::npos) << received_;
  broker_.stream(r, StreamPart::kAbort, "worker lost");
  ASSERT_TRUE(pump_until([&] { return closed_; })) << received_;
  // A FIN would end a close-delimited body as if it were complete.
  EXPECT_EQ(ended_, asio::error::connection_reset) << ended_.message();
}

TEST_F(ServerStreamTest, ACompleteCloseDelimitedBodyEndsWithAFin) {
  start_server();
  send("GET /svc/events HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(pump_until([&] { return broker_.requests.size() == 1; }));
  const auto r = broker_.requests[0];
  broker_.head(r);
  broker_.stream(r, StreamPart::kEnd, "whole");
  ASSERT_TRUE(pump_until([&] { return closed_; })) << received_;
  EXPECT_TRUE(received_.ends_with("\r\n\r\nwhole")) << received_;
  EXPECT_EQ(ended_, asio::error::eof) << ended_.message();
}

TEST_F(ServerStreamTest, ASlowButSteadyReaderOfALargeBatchIsNotCut) {
  constexpr std::size_t kBody = 8u << 20;
  start_server(0ms, [](ServiceConfig& svc) {
    svc.stream_idle_timeout = 500ms;
    svc.stream_window = 2 * kBody;
  });
  // A small receive window, so that the gateway's writes wait for this reader.
  http_.close();
  http_ = tcp::socket(io_);
  http_.open(tcp::v4());
  http_.set_option(asio::socket_base::receive_buffer_size(8192));
  http_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
  send(kGet);
  http_.non_blocking(true);
  ASSERT_TRUE(pump_until([&] { return broker_.requests.size() == 1; }));
  const auto r = broker_.requests[0];
  broker_.head(r);
  ASSERT_TRUE(pump_until([&] { return !broker_.credits.empty(); }));  // the window raised
  // One part far larger than the socket buffers: written as one batch that takes the reader
  // longer than stream_idle_timeout, though no piece of it stalls.
  broker_.stream(r, StreamPart::kData, std::string(kBody, 'x'));
  broker_.stream(r, StreamPart::kEnd, "");
  const auto until = Clock::now() + 30s;
  std::array<char, 16384> buf;
  beast::error_code ec;
  while (!received_.ends_with("0\r\n\r\n") && Clock::now() < until) {
    broker_.pump(0ms);
    const auto n = http_.read_some(asio::buffer(buf), ec);
    if (ec == asio::error::would_block) {
      ec = {};
      std::this_thread::sleep_for(1ms);
      continue;
    }
    if (ec) break;
    received_.append(buf.data(), n);
    std::this_thread::sleep_for(2ms);  // pacing the reader, not synchronisation
  }
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_TRUE(received_.ends_with("0\r\n\r\n")) << received_.size();
  EXPECT_TRUE(broker_.cancels.empty());
}

TEST_F(ServerStreamTest, ALengthFramedStreamKeepsTheUpstreamsContentLength) {
  start_server();
  send(kGet);
  ASSERT_TRUE(pump_until([&] { return broker_.requests.size() == 1; }));
  const auto r = broker_.requests[0];
  broker_.head(r, 200, {{"Content-Length", "10"}});
  broker_.stream(r, StreamPart::kData, "01234");
  broker_.stream(r, StreamPart::kEnd, "56789");
  ASSERT_TRUE(pump_until([&] { return received_.ends_with("\r\n\r\n0123456789"); })) << received_;
  EXPECT_NE(received_.find("Content-Length: 10"), std::string::npos);
  EXPECT_EQ(received_.find("chunked"), std::string::npos);
}

TEST_F(ServerStreamTest, MoreThanTheWindowIsAProtocolErrorThatCutsAndCancels) {
  start_server();
  send(kGet);
  ASSERT_TRUE(pump_until([&] { return broker_.requests.size() == 1; }));
  const auto r = broker_.requests[0];
  broker_.head(r);
  // 300 KiB in one part: past the 256 KiB granted, whatever the gateway credited meanwhile.
  broker_.stream(r, StreamPart::kData, std::string(300 * 1024, 'x'));
  ASSERT_TRUE(pump_until([&] { return closed_ && broker_.cancels.size() == 1; }));
  EXPECT_EQ(received_.find("0\r\n\r\n"), std::string::npos);
}

TEST_F(ServerStreamTest, AnIdleEventStreamGetsKeepAliveComments) {
  start_server(50ms);
  send(kGet);
  ASSERT_TRUE(pump_until([&] { return broker_.requests.size() == 1; }));
  const auto r = broker_.requests[0];
  broker_.head(r, 200, {{"Content-Type", "text/event-stream"}});
  ASSERT_TRUE(pump_until([&] { return received_.find(": keep-alive\n\n") != std::string::npos; }))
      << received_;
  broker_.stream(r, StreamPart::kEnd, "");
  ASSERT_TRUE(pump_until([&] { return received_.ends_with("0\r\n\r\n"); })) << received_;
}

TEST_F(ServerStreamTest, AClientLeavingMidStreamCancelsItAtTheBroker) {
  start_server();
  send(kGet);
  ASSERT_TRUE(pump_until([&] { return broker_.requests.size() == 1; }));
  const auto r = broker_.requests[0];
  broker_.head(r);
  broker_.stream(r, StreamPart::kData, "some");
  ASSERT_TRUE(pump_until([&] { return received_.find("some") != std::string::npos; }));
  http_.close();
  ASSERT_TRUE(pump_until([&] { return broker_.cancels.size() == 1; }));
  EXPECT_EQ(broker_.cancels[0].id, r.id);
}

TEST_F(ServerStreamTest, AClientLeavingBeforeTheReplyCancelsTheRequest) {
  start_server();
  send(kGet);
  ASSERT_TRUE(pump_until([&] { return broker_.requests.size() == 1; }));
  http_.close();
  // The CANCEL goes out before the access line is recorded: wait for both.
  ASSERT_TRUE(pump_until(
      [&] { return broker_.cancels.size() == 1 && server_->counters().cancelled.load() == 1; }));
  EXPECT_EQ(broker_.cancels[0].id, broker_.requests[0].id);
}

TEST_F(ServerStreamTest, AStreamStillOpenAtTheEndOfTheGraceIsCutWithoutItsLastChunk) {
  start_server();
  send(kGet);
  ASSERT_TRUE(pump_until([&] { return broker_.requests.size() == 1; }));
  const auto r = broker_.requests[0];
  broker_.head(r);
  broker_.stream(r, StreamPart::kData, "begun");
  ASSERT_TRUE(pump_until([&] { return received_.find("begun") != std::string::npos; }));
  EXPECT_EQ(server_->counters().in_flight.load(), 1);
  EXPECT_EQ(server_->counters().streams_open.load(), 1);
  server_->stop(100ms);
  server_.reset();
  const auto until = Clock::now() + 5s;
  while (!drain() && Clock::now() < until) std::this_thread::yield();
  EXPECT_TRUE(closed_);
  EXPECT_EQ(received_.find("0\r\n\r\n"), std::string::npos) << received_;
}

TEST_F(ServerStreamTest, AStreamAbortedBeforeItsHeadIsA502) {
  start_server();
  send(kGet);
  ASSERT_TRUE(pump_until([&] { return broker_.requests.size() == 1; }));
  broker_.stream(broker_.requests[0], StreamPart::kAbort, "upstream reset");
  ASSERT_TRUE(pump_until([&] { return received_.find("\r\n\r\n{") != std::string::npos; }));
  EXPECT_TRUE(received_.starts_with("HTTP/1.1 502")) << received_;
  EXPECT_NE(received_.find("upstream reset"), std::string::npos) << received_;
}

}  // namespace
}  // namespace courier::gateway
