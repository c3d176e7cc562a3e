// The worker process's request controls, in process: a ROUTER played by the test stands in for
// the broker, and a real upstream on loopback answers (or does not). What it checks is what only
// the Worker does: STREAM framing, CREDIT and CANCEL routed by id and by the link that sent the
// request, and a cancel while a request waits for a slot.
#include "workers/worker.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "common/frames.hpp"

namespace courier::workers {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using protocol::Command;

// Answers on its own thread: every request on a path starting "/stream" gets a chunked body of
// `stream_bytes` bytes; any other request gets nothing, as an upstream that thinks for ever.
// Either way it then waits for the worker to close the connection, and counts that.
class ThreadedUpstream {
 public:
  explicit ThreadedUpstream(std::size_t stream_bytes = 11)
      : acceptor_(ioc_, {asio::ip::make_address("127.0.0.1"), 0}), stream_bytes_(stream_bytes) {
    asio::co_spawn(ioc_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~ThreadedUpstream() {
    ioc_.stop();
    thread_.join();
  }
  UpstreamUrl url() const {
    const auto port = acceptor_.local_endpoint().port();
    return {"127.0.0.1", port, "", "http://127.0.0.1:" + std::to_string(port)};
  }
  std::atomic<int> requests{0};
  std::atomic<int> closed{0};

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      beast::error_code ec;
      auto socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      asio::co_spawn(ioc_, serve(std::move(socket)), asio::detached);
    }
  }
  asio::awaitable<void> serve(tcp::socket socket) {
    beast::flat_buffer buffer;
    http::request<http::string_body> request;
    beast::error_code ec;
    co_await http::async_read(socket, buffer, request,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    ++requests;
    if (request.target().starts_with("/stream")) {
      std::string body(stream_bytes_, 's');
      std::ostringstream out;
      out << "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
          << std::hex << body.size() << "\r\n"
          << body << "\r\n0\r\n\r\n";
      co_await asio::async_write(socket, asio::buffer(out.str()),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    char byte;
    while (!ec) {
      co_await socket.async_read_some(asio::buffer(&byte, 1),
                                      asio::redirect_error(asio::use_awaitable, ec));
    }
    ++closed;
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  std::size_t stream_bytes_;
  std::thread thread_;
};

// A broker played by the test: binds a ROUTER, learns the worker's routing id from its READY,
// and sends it REQUEST, CREDIT and CANCEL by hand.
class HandBroker {
 public:
  explicit HandBroker(zmq::context_t& context) : socket_(context, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
  }
  std::string endpoint() const { return socket_.get(zmq::sockopt::last_endpoint); }

  // The next message of `command` from the worker (frames after the routing id), or nullopt.
  std::optional<protocol::Frames> next(Command wanted, std::chrono::milliseconds limit = 5s) {
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, 20ms);
      protocol::Frames in;
      while (zmq::recv_multipart(socket_, std::back_inserter(in), zmq::recv_flags::dontwait)) {
        Command command{};
        if (in.size() >= 3 && !protocol::parse_command(in, 1, command)) {
          if (command == Command::kReady) worker_ = std::string(protocol::view(in[0]));
          if (command == wanted) {
            in.erase(in.begin());
            return in;
          }
        }
        in.clear();
      }
    }
    return std::nullopt;
  }
  bool wait_ready() { return !worker_.empty() || next(Command::kReady).has_value(); }

  void request(const RequestEnvelope& request) {
    protocol::Frames out = routed();
    protocol::add_request(out, protocol::request_header(request), encode(request));
    send(out);
  }
  void cancel(const protocol::CorrelationId& id) {
    protocol::Frames out = routed();
    protocol::add_cancel(out, id);
    send(out);
  }
  // What a broker that does not know the worker sends it.
  void disconnect() {
    protocol::Frames out = routed();
    protocol::add_header(out, Command::kDisconnect);
    send(out);
  }
  void credit(const protocol::CorrelationId& id, std::uint32_t bytes) {
    protocol::Frames out = routed();
    protocol::add_credit(out, id, bytes);
    send(out);
  }

 private:
  protocol::Frames routed() const {
    protocol::Frames out;
    out.emplace_back(worker_.data(), worker_.size());
    return out;
  }
  void send(protocol::Frames& out) { ASSERT_TRUE(zmq::send_multipart(socket_, out)); }

  zmq::socket_t socket_;
  std::string worker_;
};

RequestEnvelope get(std::uint8_t id_byte, std::string target) {
  RequestEnvelope r;
  r.id.fill(id_byte);
  r.service = "rule-engine";
  r.method = "GET";
  r.target = std::move(target);
  r.deadline_ms = protocol::unix_ms_now() + 20'000;
  r.request_id = "hand-" + std::to_string(id_byte);
  return r;
}

ServiceConfig service(const UpstreamUrl& upstream) {
  ServiceConfig s;
  s.name = "rule-engine";
  s.upstream = upstream;
  s.timeout = 15s;
  s.worker_concurrency = 1;
  return s;
}

WorkerOptions options(std::vector<std::string> brokers) {
  WorkerOptions o;
  o.brokers = std::move(brokers);
  o.worker_id = "w-1";
  o.heartbeat_interval = 100ms;
  return o;
}

std::optional<ReplyEnvelope> reply_envelope(const protocol::Frames& frames) {
  ReplyEnvelope reply;
  if (frames.size() != protocol::kReplyFrames || decode(protocol::view(frames[3]), reply)) {
    return std::nullopt;
  }
  return reply;
}

template <class Predicate>
bool eventually(Predicate done, std::chrono::milliseconds limit = 3s) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

class WorkerTest : public ::testing::Test {
 protected:
  zmq::context_t context_;
};

TEST_F(WorkerTest, StreamsAChunkedReplyAsHeadDataEndWithItsUntil) {
  ThreadedUpstream upstream(200 * 1024);  // beyond the 64 KiB initial window
  HandBroker broker(context_);
  auto config = service(upstream.url());
  config.stream_max_duration = 60s;
  Worker worker(context_, options({broker.endpoint()}), config);
  worker.start();
  ASSERT_TRUE(broker.wait_ready());

  const auto request = get(1, "/stream");
  broker.request(request);
  const auto head = broker.next(Command::kStream);
  ASSERT_TRUE(head);
  protocol::StreamHeader header;
  ASSERT_FALSE(protocol::parse_stream(*head, 0, header));
  EXPECT_EQ(header.id, request.id);
  EXPECT_EQ(header.part, protocol::StreamPart::kHead);
  const auto now = protocol::unix_ms_now();
  EXPECT_GT(header.until_ms, now + 50'000);
  EXPECT_LE(header.until_ms, now + 60'000);
  ReplyEnvelope envelope;
  ASSERT_FALSE(decode(protocol::view((*head)[protocol::kStreamPayloadIndex]), envelope));
  EXPECT_EQ(envelope.status, 200);
  EXPECT_EQ(envelope.attempts, 1u);
  EXPECT_EQ(envelope.worker_id, "w-1");

  // Without credit the worker stops at the window.
  const auto until = header.until_ms;
  std::size_t received = 0;
  while (auto part = broker.next(Command::kStream, 300ms)) {
    ASSERT_FALSE(protocol::parse_stream(*part, 0, header));
    ASSERT_EQ(header.part, protocol::StreamPart::kData);
    EXPECT_EQ(header.until_ms, until) << "every part carries the HEAD's until";
    received += (*part)[protocol::kStreamPayloadIndex].size();
  }
  EXPECT_LE(received, protocol::kInitialStreamWindow);
  EXPECT_GT(received, 0u);

  broker.credit(request.id, 1 << 20);
  bool ended = false;
  while (auto part = broker.next(Command::kStream, 2s)) {
    ASSERT_FALSE(protocol::parse_stream(*part, 0, header));
    received += (*part)[protocol::kStreamPayloadIndex].size();
    if (header.part == protocol::StreamPart::kEnd) {
      ended = true;
      break;
    }
    ASSERT_EQ(header.part, protocol::StreamPart::kData);
  }
  EXPECT_TRUE(ended);
  EXPECT_EQ(received, 200u * 1024);
  EXPECT_FALSE(broker.next(Command::kReply, 100ms)) << "a streamed request gets no REPLY";
}

TEST_F(WorkerTest, CancelWhileWaitingForASlotNeverRunsItAndCancelInFlightClosesTheUpstream) {
  ThreadedUpstream upstream;
  HandBroker broker(context_);
  Worker worker(context_, options({broker.endpoint()}), service(upstream.url()));
  worker.start();
  ASSERT_TRUE(broker.wait_ready());

  const auto running = get(1, "/think");
  const auto queued = get(2, "/think");
  broker.request(running);
  ASSERT_TRUE(eventually([&] { return upstream.requests.load() == 1; }));
  broker.request(queued);  // capacity 1: it waits for the slot
  broker.cancel(queued.id);
  auto frames = broker.next(Command::kReply);
  ASSERT_TRUE(frames);
  auto reply = reply_envelope(*frames);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->id, queued.id);
  EXPECT_EQ(reply->status, 499);

  const auto cancelled_at = Clock::now();
  broker.cancel(running.id);
  frames = broker.next(Command::kReply);
  ASSERT_TRUE(frames);
  reply = reply_envelope(*frames);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->id, running.id);
  EXPECT_EQ(reply->status, 499);
  ASSERT_TRUE(reply->error);
  EXPECT_EQ(reply->error->code, "CLIENT_CLOSED_REQUEST");
  EXPECT_TRUE(eventually([&] { return upstream.closed.load() == 1; }, 1s));
  EXPECT_LT(Clock::now() - cancelled_at, 1s);
  EXPECT_EQ(upstream.requests.load(), 1) << "the queued request never reached the upstream";
  EXPECT_TRUE(eventually([&] { return worker.in_flight() == 0; }));
}

TEST_F(WorkerTest, CancelFromAnotherBrokerIsIgnored) {
  ThreadedUpstream upstream;
  HandBroker first(context_);
  HandBroker second(context_);
  Worker worker(context_, options({first.endpoint(), second.endpoint()}), service(upstream.url()));
  worker.start();
  ASSERT_TRUE(first.wait_ready());
  ASSERT_TRUE(second.wait_ready());

  const auto request = get(3, "/think");
  first.request(request);
  ASSERT_TRUE(eventually([&] { return upstream.requests.load() == 1; }));
  second.cancel(request.id);
  second.credit(request.id, 1000);
  EXPECT_TRUE(eventually([&] { return worker.ignored_controls() == 2; }));
  EXPECT_EQ(upstream.closed.load(), 0);

  first.cancel(request.id);
  const auto frames = first.next(Command::kReply);
  ASSERT_TRUE(frames);
  const auto reply = reply_envelope(*frames);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 499);
}

TEST_F(WorkerTest, DisconnectFromABrokerCancelsEveryRequestItSentAndOnlyThose) {
  ThreadedUpstream upstream;
  HandBroker first(context_);
  HandBroker second(context_);
  auto config = service(upstream.url());
  config.worker_concurrency = 4;
  Worker worker(context_, options({first.endpoint(), second.endpoint()}), config);
  worker.start();
  ASSERT_TRUE(first.wait_ready());
  ASSERT_TRUE(second.wait_ready());

  first.request(get(1, "/think"));
  first.request(get(2, "/think"));
  second.request(get(3, "/think"));
  ASSERT_TRUE(eventually([&] { return upstream.requests.load() == 3; }));
  first.disconnect();
  EXPECT_TRUE(eventually([&] { return upstream.closed.load() == 2; }, 1s));
  EXPECT_TRUE(eventually([&] { return worker.in_flight() == 1; }));
  EXPECT_TRUE(first.next(Command::kReady)) << "it registers again";
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(upstream.closed.load(), 2) << "the other broker's request runs on";
}

TEST_F(WorkerTest, CreditBeyondTheLargestStreamWindowIsIgnoredAndCounted) {
  ThreadedUpstream upstream;
  HandBroker broker(context_);
  Worker worker(context_, options({broker.endpoint()}), service(upstream.url()));
  worker.start();
  ASSERT_TRUE(broker.wait_ready());

  const auto request = get(4, "/think");
  broker.request(request);
  ASSERT_TRUE(eventually([&] { return upstream.requests.load() == 1; }));
  broker.credit(request.id, kMaxStreamCredit - protocol::kInitialStreamWindow);
  broker.credit(request.id, 1);
  broker.credit(request.id, protocol::kMaxCredit);
  EXPECT_TRUE(eventually([&] { return worker.excess_credits() == 2; }));
  EXPECT_EQ(worker.ignored_controls(), 0u);
}

}  // namespace
}  // namespace courier::workers
