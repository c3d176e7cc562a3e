// The Broker on real loopback sockets: raw DEALER sockets play gateway and worker, so what is
// checked is exactly the bytes on the wire. Every wait is a poll bounded by a deadline.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "broker/broker.hpp"
#include "common/envelope.hpp"

namespace courier::broker {
namespace {

using namespace std::chrono_literals;
using protocol::Command;
using protocol::CorrelationId;
using protocol::Frames;
using SteadyClock = std::chrono::steady_clock;

// A Broker on ephemeral ports, running on its own thread for the lifetime of the object.
class RunningBroker {
 public:
  RunningBroker() : broker_(options()) {
    frontend_ = broker_.frontend_endpoint();  // read before run() owns the sockets
    backend_ = broker_.backend_endpoint();
    thread_ = std::thread([this] {
      exit_code_ = broker_.run(false);
      exited_.store(true);
    });
  }
  ~RunningBroker() { stop_and_join(); }
  // run() returns within drain_timeout plus one tick once stopped.
  void stop_and_join() {
    broker_.stop();
    if (thread_.joinable()) thread_.join();
  }
  int exit_code() const { return exit_code_; }
  const std::string& frontend() const { return frontend_; }
  const std::string& backend() const { return backend_; }
  bool exited() const { return exited_.load(); }

 private:
  static BrokerOptions options() {
    BrokerOptions o;
    o.frontend = "tcp://127.0.0.1:*";
    o.backend = "tcp://127.0.0.1:*";
    o.drain_timeout = 1'000ms;
    o.dispatcher.broker_id = "socket-test";
    o.dispatcher.heartbeat_interval = 100ms;
    o.dispatcher.liveness = 100;  // the raw test peers do not heartbeat
    return o;
  }

  Broker broker_;
  std::string frontend_;
  std::string backend_;
  std::atomic<bool> exited_{false};
  int exit_code_ = -1;
  std::thread thread_;
};

zmq::socket_t dealer(zmq::context_t& context, const std::string& endpoint) {
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.connect(endpoint);
  return socket;
}

void send(zmq::socket_t& socket, Frames frames) {
  ASSERT_TRUE(zmq::send_multipart(socket, frames, zmq::send_flags::none));
}

// Receives the next message on `socket` whose command is `want`, skipping others (heartbeats).
std::optional<Frames> receive(zmq::socket_t& socket, Command want,
                              std::chrono::milliseconds within = 5'000ms) {
  const auto deadline = SteadyClock::now() + within;
  while (SteadyClock::now() < deadline) {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    zmq::poll(&item, 1, std::max(left, 1ms));
    if (!(item.revents & ZMQ_POLLIN)) continue;
    Frames frames;
    if (!zmq::recv_multipart(socket, std::back_inserter(frames))) continue;
    Command command{};
    if (!protocol::parse_command(frames, 0, command) && command == want) return frames;
  }
  return std::nullopt;
}

CorrelationId make_id(std::uint32_t n) {
  CorrelationId id{};
  id[0] = 0x5e;
  for (int i = 0; i < 4; ++i) id[15 - i] = static_cast<std::uint8_t>(n >> (8 * i));
  return id;
}

std::uint64_t wall_ms_from_now(std::chrono::milliseconds d) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch() + d)
                                        .count());
}

Frames request_frames(const CorrelationId& id, zmq::message_t envelope,
                      std::optional<protocol::Stamps> stamps = std::nullopt) {
  protocol::RequestHeader header;
  header.service = "echo";
  header.id = id;
  header.deadline_ms = wall_ms_from_now(10'000ms);
  header.flags = protocol::kFlagRetrySafe;
  header.stamps = stamps;
  Frames frames;
  protocol::add_request(frames, header, std::move(envelope));
  return frames;
}

void register_worker(zmq::socket_t& worker, std::uint32_t capacity) {
  Frames ready;
  protocol::add_ready(ready, "echo", capacity, "raw-worker");
  send(worker, std::move(ready));
  // The broker greets a new worker with a heartbeat: registration is done when it arrives.
  ASSERT_TRUE(receive(worker, Command::kHeartbeat)) << "broker did not acknowledge READY";
}

// Asks for STATS until `done(stats)` holds or the deadline passes; returns the last snapshot.
nlohmann::json stats_until(zmq::socket_t& gateway,
                           const std::function<bool(const nlohmann::json&)>& done) {
  const auto deadline = SteadyClock::now() + 5'000ms;
  nlohmann::json stats;
  while (SteadyClock::now() < deadline) {
    Frames ask;
    protocol::add_header(ask, Command::kStats);
    ask.push_back(protocol::id_frame(make_id(0xffffffff)));
    send(gateway, std::move(ask));
    auto got = receive(gateway, Command::kStats, 1'000ms);
    if (!got || got->size() != 4) continue;
    stats = nlohmann::json::parse(protocol::view((*got)[3]));
    if (done(stats)) break;
  }
  return stats;
}

TEST(BrokerSocket, RequestAndReplyTravelThroughRealSockets) {
  RunningBroker broker;
  zmq::context_t context;
  auto worker = dealer(context, broker.backend());
  auto gateway = dealer(context, broker.frontend());
  register_worker(worker, 4);

  RequestEnvelope request;
  request.id = make_id(1);
  request.service = "echo";
  request.method = "GET";
  request.target = "/hello?x=1";
  request.headers = {{"Accept", "text/plain"}};
  send(gateway, request_frames(request.id, encode(request)));

  auto at_worker = receive(worker, Command::kRequest);
  ASSERT_TRUE(at_worker);
  protocol::RequestHeader header;
  ASSERT_FALSE(protocol::parse_request(*at_worker, 0, header));
  EXPECT_EQ(header.service, "echo");
  EXPECT_EQ(header.id, request.id);
  EXPECT_EQ(header.flags, protocol::kFlagRetrySafe);
  RequestEnvelope forwarded;
  ASSERT_FALSE(decode(protocol::view((*at_worker)[protocol::kEnvelopeIndex]), forwarded));
  EXPECT_EQ(forwarded, request);

  ReplyEnvelope reply;
  reply.id = request.id;
  reply.status = 200;
  reply.body = "hello back";
  reply.worker_id = "raw-worker";
  Frames out;
  protocol::add_reply(out, reply.id, encode(reply));
  send(worker, std::move(out));

  auto at_gateway = receive(gateway, Command::kReply);
  ASSERT_TRUE(at_gateway);
  CorrelationId id{};
  ASSERT_FALSE(protocol::parse_reply(*at_gateway, 0, id));
  EXPECT_EQ(id, request.id);
  ReplyEnvelope received;
  ASSERT_FALSE(decode(protocol::view((*at_gateway)[3]), received));
  EXPECT_EQ(received, reply);
  EXPECT_FALSE(broker.exited());
}

TEST(BrokerSocket, StampedRequestAndReplyCarryTheBrokersInstants) {
  RunningBroker broker;
  zmq::context_t context;
  auto worker = dealer(context, broker.backend());
  auto gateway = dealer(context, broker.frontend());
  register_worker(worker, 4);

  RequestEnvelope request;
  request.id = make_id(2);
  request.service = "echo";
  request.method = "GET";
  request.target = "/stamped";
  protocol::Stamps stamps;
  const auto before = protocol::unix_us_now();
  stamps[protocol::Stamp::kGatewayIn] = before - 2;
  stamps[protocol::Stamp::kGatewaySent] = before - 1;
  send(gateway, request_frames(request.id, encode(request), stamps));

  auto at_worker = receive(worker, Command::kRequest);
  ASSERT_TRUE(at_worker);
  protocol::RequestHeader header;
  ASSERT_FALSE(protocol::parse_request(*at_worker, 0, header));
  ASSERT_TRUE(header.stamps.has_value());
  auto got = *header.stamps;
  EXPECT_EQ(got[protocol::Stamp::kGatewayIn], before - 2);  // the gateway's, untouched
  EXPECT_EQ(got[protocol::Stamp::kGatewaySent], before - 1);
  EXPECT_GE(got[protocol::Stamp::kBrokerIn], before);
  EXPECT_GE(got[protocol::Stamp::kBrokerOut], got[protocol::Stamp::kBrokerIn]);
  EXPECT_EQ(got[protocol::Stamp::kWorkerIn], 0u);  // not the broker's to write

  // The worker adds its own and sends the frame back with the REPLY.
  got[protocol::Stamp::kWorkerIn] = got[protocol::Stamp::kBrokerOut] + 1;
  got[protocol::Stamp::kWorkerOut] = got[protocol::Stamp::kBrokerOut] + 2;
  ReplyEnvelope reply;
  reply.id = request.id;
  reply.status = 200;
  Frames out;
  protocol::add_reply(out, reply.id, encode(reply), &got);
  send(worker, std::move(out));

  auto at_gateway = receive(gateway, Command::kReply);
  ASSERT_TRUE(at_gateway);
  CorrelationId id{};
  ASSERT_FALSE(protocol::parse_reply(*at_gateway, 0, id));
  ASSERT_TRUE(protocol::reply_has_stamps(*at_gateway, 0));
  const auto back = protocol::read_stamps((*at_gateway)[protocol::kReplyStampsIndex]);
  for (auto s :
       {protocol::Stamp::kGatewayIn, protocol::Stamp::kBrokerIn, protocol::Stamp::kBrokerOut,
        protocol::Stamp::kWorkerIn, protocol::Stamp::kWorkerOut}) {
    EXPECT_EQ(back[s], got[s]);
  }
  EXPECT_GE(back[protocol::Stamp::kBrokerReplyIn], got[protocol::Stamp::kWorkerIn]);
  EXPECT_GE(back[protocol::Stamp::kBrokerReplyOut], back[protocol::Stamp::kBrokerReplyIn]);
  EXPECT_EQ(back[protocol::Stamp::kGatewayReplyIn], 0u);

  // An unstamped request stays unstamped: an old worker would refuse the extra frame.
  send(gateway, request_frames(make_id(3), encode(request)));
  auto plain = receive(worker, Command::kRequest);
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->size(), protocol::kRequestFrames);
  EXPECT_FALSE(broker.exited());
}

// Random frames: random count and sizes, never starting with the protocol tag, plus a few with
// the right tag and wrong fields, so both the tag check and the field parsers see garbage.
Frames garbage(std::mt19937& rng, bool front) {
  Frames frames;
  const int shape = std::uniform_int_distribution<int>(0, 4)(rng);
  if (shape == 0) {
    frames.emplace_back(protocol::kTag.data(), protocol::kTag.size());
    const std::uint8_t command = front ? 0x01 : 0x02;  // REQUEST / REPLY with bad fields
    frames.emplace_back(&command, 1);
    const int extra = std::uniform_int_distribution<int>(0, 9)(rng);
    for (int i = 0; i < extra; ++i) frames.emplace_back(std::string(i == 1 ? 15 : 3, 'x'));
    if (extra == (front ? 5 : 2)) frames.emplace_back("one too many", 12);
    return frames;
  }
  const int count = std::uniform_int_distribution<int>(1, 12)(rng);
  for (int i = 0; i < count; ++i) {
    std::string bytes(std::uniform_int_distribution<int>(0, 96)(rng), '\0');
    for (auto& b : bytes) b = static_cast<char>(rng());
    if (i == 0 && bytes.rfind("COURIER", 0) == 0) bytes[0] = 'X';
    frames.emplace_back(bytes.data(), bytes.size());
  }
  return frames;
}

TEST(BrokerSocket, GarbageOnBothSocketsIsCountedWhileNormalTrafficIsServed) {
  RunningBroker broker;
  zmq::context_t context;
  auto worker = dealer(context, broker.backend());
  auto gateway = dealer(context, broker.frontend());
  auto front_junk = dealer(context, broker.frontend());
  auto back_junk = dealer(context, broker.backend());
  register_worker(worker, 16);

  constexpr std::uint32_t kRequests = 400;
  constexpr int kGarbagePerSocket = 300;
  constexpr std::uint32_t kWindow = 32;
  std::mt19937 rng(20240601);
  std::uint32_t sent = 0;
  std::set<std::uint32_t> answered;
  int junk_sent = 0;
  const auto deadline = SteadyClock::now() + 20'000ms;

  while ((answered.size() < kRequests || junk_sent < kGarbagePerSocket) &&
         SteadyClock::now() < deadline) {
    for (int i = 0; i < 4 && junk_sent < kGarbagePerSocket; ++i, ++junk_sent) {
      send(front_junk, garbage(rng, true));
      send(back_junk, garbage(rng, false));
    }
    while (sent < kRequests && sent - answered.size() < kWindow) {
      ++sent;
      send(gateway, request_frames(make_id(sent), zmq::message_t("e", 1)));
    }
    zmq::pollitem_t items[] = {{worker.handle(), 0, ZMQ_POLLIN, 0},
                               {gateway.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 2, 20ms);
    Frames frames;
    while (zmq::recv_multipart(worker, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
      protocol::RequestHeader header;
      if (!protocol::parse_request(frames, 0, header)) {
        Frames out;
        protocol::add_reply(out, header.id, zmq::message_t("r", 1));
        send(worker, std::move(out));
      }
      frames.clear();
    }
    while (zmq::recv_multipart(gateway, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
      CorrelationId id{};
      Command command{};
      if (!protocol::parse_command(frames, 0, command) && command == Command::kReply &&
          !protocol::parse_reply(frames, 0, id)) {
        const std::uint32_t n = (std::uint32_t{id[12]} << 24) | (std::uint32_t{id[13]} << 16) |
                                (std::uint32_t{id[14]} << 8) | id[15];
        EXPECT_TRUE(answered.insert(n).second) << "second reply for request " << n;
      }
      frames.clear();
    }
  }
  EXPECT_EQ(answered.size(), kRequests);
  EXPECT_EQ(junk_sent, kGarbagePerSocket);

  const auto expected = std::uint64_t{2} * kGarbagePerSocket;
  const auto stats = stats_until(gateway, [&](const nlohmann::json& s) {
    return s["counters"]["malformed"].get<std::uint64_t>() >= expected;
  });
  ASSERT_FALSE(stats.is_null());
  EXPECT_EQ(stats["counters"]["malformed"].get<std::uint64_t>(), expected);
  EXPECT_EQ(stats["counters"]["replies"].get<std::uint64_t>(), kRequests);
  EXPECT_EQ(stats["counters"]["late_replies"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(stats["services"]["echo"]["workers"].get<int>(), 1);

  // Still serving.
  send(gateway, request_frames(make_id(kRequests + 1), zmq::message_t("e", 1)));
  auto last = receive(worker, Command::kRequest);
  ASSERT_TRUE(last);
  Frames out;
  protocol::add_reply(out, make_id(kRequests + 1), zmq::message_t("r", 1));
  send(worker, std::move(out));
  EXPECT_TRUE(receive(gateway, Command::kReply));
  EXPECT_FALSE(broker.exited());
}

TEST(BrokerSocket, StopAnswersQueuedRequestsWithBrokerUnavailableAndReturns) {
  zmq::context_t context;
  RunningBroker broker;
  auto gateway = dealer(context, broker.frontend());
  send(gateway, request_frames(make_id(1), zmq::message_t("e", 1)));
  // No worker: the request waits in the queue (the no-worker grace is a second).
  const auto stats = stats_until(gateway, [](const nlohmann::json& s) {
    return s["services"].contains("echo") && s["services"]["echo"]["queue_depth"].get<int>() == 1;
  });
  ASSERT_EQ(stats["services"]["echo"]["queue_depth"].get<int>(), 1);

  broker.stop_and_join();
  EXPECT_TRUE(broker.exited());
  EXPECT_EQ(broker.exit_code(), 0);
  auto answer = receive(gateway, Command::kReply);
  ASSERT_TRUE(answer);
  ReplyEnvelope envelope;
  ASSERT_FALSE(decode(protocol::view((*answer)[3]), envelope));
  EXPECT_EQ(envelope.status, 503);
  ASSERT_TRUE(envelope.error);
  EXPECT_EQ(envelope.error->code, "BROKER_UNAVAILABLE");
}

// The loop waits for its next tick, rounded up to a whole millisecond: truncated, the last
// fraction of a millisecond before each tick became a zero-timeout wait, repeated until the tick
// (hundreds of wake-ups per tick, most of an idle broker's system calls). Ticks are 25 ms here
// (heartbeat 100 ms / 4): half a second is ~20 ticks, ~5 heartbeats to the gateway and the
// STATS exchanges themselves.
TEST(BrokerSocket, AnIdleBrokerWakesAboutOncePerTickWithoutSpinning) {
  zmq::context_t context;
  RunningBroker broker;
  auto gateway = dealer(context, broker.frontend());
  const auto wakeups = [](const nlohmann::json& s) {
    return s["counters"]["loop_wakeups"].get<std::uint64_t>();
  };
  const auto before = stats_until(gateway, [](const nlohmann::json& s) {
    return s.contains("counters") && s["counters"].contains("loop_wakeups");
  });
  ASSERT_TRUE(before.contains("counters"));
  const auto start = SteadyClock::now();
  std::this_thread::sleep_for(500ms);  // the idle interval measured, not a wait for readiness
  const auto after = stats_until(gateway, [](const nlohmann::json&) { return true; });
  ASSERT_TRUE(after.contains("counters"));
  const auto elapsed = SteadyClock::now() - start;
  const auto ticks = static_cast<std::uint64_t>(elapsed / 25ms) + 1;
  EXPECT_LE(wakeups(after) - wakeups(before), 4 * ticks + 20)
      << "over " << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
      << " ms idle";
  EXPECT_GE(wakeups(after) - wakeups(before), ticks / 2) << "the loop must still tick";
}

}  // namespace
}  // namespace courier::broker
