// The Dispatcher driven message by message: a recording Outbox stands in for the ROUTER sockets and
// time is advanced by hand, so every liveness, grace and deadline rule is exercised without
// sleeping.
#include "broker/dispatcher.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/envelope.hpp"

namespace courier::broker {
namespace {

using namespace std::chrono_literals;
using protocol::Command;
using protocol::CorrelationId;
using protocol::Frames;

using Message = std::vector<std::string>;  // frames as bytes, routing id first

Message to_strings(const Frames& frames) {
  Message m;
  for (const auto& f : frames) m.emplace_back(protocol::view(f));
  return m;
}

Frames to_frames(const Message& m) {
  Frames frames;
  for (const auto& s : m) frames.emplace_back(s.data(), s.size());
  return frames;
}

// Records what the dispatcher sends; peers listed as unreachable refuse, as ROUTER_MANDATORY would.
class RecordingOutbox : public Outbox {
 public:
  bool to_gateway(Frames& frames) override {
    if (refuse_gateway_sends > 0) {
      --refuse_gateway_sends;
      return false;
    }
    return record(frames, gateway, dead_gateways);
  }
  bool to_worker(Frames& frames) override { return record(frames, worker, dead_workers); }

  std::vector<Message> gateway;
  std::vector<Message> worker;
  std::set<std::string> dead_gateways;
  std::set<std::string> dead_workers;
  int refuse_gateway_sends = 0;  // the next this many to_gateway calls fail (a full queue)

 private:
  static bool record(const Frames& frames, std::vector<Message>& log,
                     const std::set<std::string>& dead) {
    if (dead.count(std::string(protocol::view(frames.at(0))))) return false;
    log.push_back(to_strings(frames));
    return true;
  }
};

std::string cmd(Command c) { return std::string(1, static_cast<char>(c)); }

CorrelationId make_id(int n) {
  CorrelationId id{};
  id[0] = 0xc0;
  id[14] = static_cast<std::uint8_t>(n >> 8);
  id[15] = static_cast<std::uint8_t>(n);
  return id;
}

std::string id_bytes(int n) {
  const auto id = make_id(n);
  return std::string(reinterpret_cast<const char*>(id.data()), id.size());
}

std::string u64_bytes(std::uint64_t v) {
  return std::string(protocol::view(protocol::u64_frame(v)));
}
std::string u32_bytes(std::uint32_t v) {
  return std::string(protocol::view(protocol::u32_frame(v)));
}

constexpr std::uint8_t kSafe = protocol::kFlagRetrySafe;
constexpr std::uint8_t kUnsafe = 0;

class DispatcherTest : public ::testing::Test {
 protected:
  DispatcherTest() { make_dispatcher(); }

  // The STATS reply as a gateway reads it off the wire.
  nlohmann::json stats_json() { return nlohmann::json::parse(encode(dispatcher_->stats(now_))); }

  void make_dispatcher() {
    dispatcher_.reset();
    dispatcher_ = std::make_unique<Dispatcher>(options_, out_);
  }

  void advance(std::chrono::milliseconds d) {
    now_.steady += d;
    now_.wall_ms += static_cast<std::uint64_t>(d.count());
  }

  std::uint64_t in_ms(std::int64_t ms) const {
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(now_.wall_ms) + ms);
  }

  void from_gateway(const Message& m) {
    auto frames = to_frames(m);
    dispatcher_->on_gateway_message(frames, now_);
  }
  void from_worker(const Message& m) {
    auto frames = to_frames(m);
    dispatcher_->on_worker_message(frames, now_);
  }
  // A REQUEST from a gateway authenticated as `principal` (the ZAP user id under CURVE).
  void request_as(const std::string& gateway, const std::string& principal, int id) {
    auto frames =
        to_frames({gateway, std::string(protocol::kTag), cmd(Command::kRequest), "echo",
                   id_bytes(id), u64_bytes(in_ms(5'000)), std::string(1, static_cast<char>(kSafe)),
                   "envelope-" + std::to_string(id)});
    dispatcher_->on_gateway_message(frames, now_, principal);
  }
  void heartbeat_with_status(const std::string& worker, const std::string& status) {
    from_worker({worker, std::string(protocol::kTag), cmd(Command::kHeartbeat), status});
  }

  void request(const std::string& gateway, int id, std::uint8_t flags = kSafe,
               std::int64_t deadline_in_ms = 5'000, const std::string& service = "echo") {
    request_at(gateway, id, flags, in_ms(deadline_in_ms), service);
  }
  void request_at(const std::string& gateway, int id, std::uint8_t flags, std::uint64_t deadline,
                  const std::string& service = "echo") {
    from_gateway({gateway, std::string(protocol::kTag), cmd(Command::kRequest), service,
                  id_bytes(id), u64_bytes(deadline), std::string(1, static_cast<char>(flags)),
                  "envelope-" + std::to_string(id)});
  }
  void ready(const std::string& worker, std::uint32_t capacity,
             const std::string& service = "echo") {
    from_worker({worker, std::string(protocol::kTag), cmd(Command::kReady), service,
                 u32_bytes(capacity), worker + "-name"});
  }
  void reply(const std::string& worker, int id, const std::string& body = "reply") {
    from_worker({worker, std::string(protocol::kTag), cmd(Command::kReply), id_bytes(id), body});
  }
  void stream(const std::string& worker, int id, protocol::StreamPart part,
              const std::string& payload = "", std::int64_t until_in_ms = 60'000) {
    from_worker({worker, std::string(protocol::kTag), cmd(Command::kStream), id_bytes(id),
                 std::string(1, static_cast<char>(part)), u64_bytes(in_ms(until_in_ms)), payload});
  }
  void credit(const std::string& gateway, int id, std::uint32_t bytes,
              const std::string& principal = "") {
    auto frames = to_frames({gateway, std::string(protocol::kTag), cmd(Command::kCredit),
                             id_bytes(id), u32_bytes(bytes)});
    dispatcher_->on_gateway_message(frames, now_, principal);
  }
  void cancel(const std::string& gateway, int id, const std::string& principal = "") {
    auto frames =
        to_frames({gateway, std::string(protocol::kTag), cmd(Command::kCancel), id_bytes(id)});
    dispatcher_->on_gateway_message(frames, now_, principal);
  }
  // STREAM messages sent to one gateway, in order.
  std::vector<Message> streams_to(const std::string& gateway) const {
    std::vector<Message> found;
    for (const auto& m : out_.gateway) {
      if (m.size() == 7 && m[0] == gateway && m[2] == cmd(Command::kStream)) found.push_back(m);
    }
    return found;
  }
  static std::string part(protocol::StreamPart p) { return std::string(1, static_cast<char>(p)); }
  void worker_control(const std::string& worker, Command c) {
    from_worker({worker, std::string(protocol::kTag), cmd(c)});
  }
  void gateway_heartbeat(const std::string& gateway) {
    from_gateway({gateway, std::string(protocol::kTag), cmd(Command::kHeartbeat)});
  }
  void tick() { dispatcher_->on_tick(now_); }

  // Advances time in heartbeat-sized steps, keeping the listed peers alive.
  void pass(std::chrono::milliseconds total, const std::vector<std::string>& live_workers,
            const std::vector<std::string>& live_gateways) {
    for (auto done = 0ms; done < total; done += options_.heartbeat_interval) {
      advance(std::min(options_.heartbeat_interval, total - done));
      for (const auto& w : live_workers) worker_control(w, Command::kHeartbeat);
      for (const auto& g : live_gateways) gateway_heartbeat(g);
      tick();
    }
  }

  // Ids (the trailing counter) of the REQUESTs sent to one worker, in order.
  std::vector<int> dispatched_to(const std::string& worker) const {
    std::vector<int> ids;
    for (const auto& m : out_.worker) {
      if (m.size() == 8 && m[0] == worker && m[2] == cmd(Command::kRequest)) {
        ids.push_back(static_cast<std::uint8_t>(m[4][14]) << 8 |
                      static_cast<std::uint8_t>(m[4][15]));
      }
    }
    return ids;
  }
  std::vector<Message> controls_to_worker(const std::string& worker, Command c) const {
    std::vector<Message> found;
    for (const auto& m : out_.worker) {
      if (m.size() >= 3 && m[0] == worker && m[2] == cmd(c)) found.push_back(m);
    }
    return found;
  }
  std::vector<Message> replies_to(const std::string& gateway) const {
    std::vector<Message> found;
    for (const auto& m : out_.gateway) {
      if (m.size() == 5 && m[0] == gateway && m[2] == cmd(Command::kReply)) found.push_back(m);
    }
    return found;
  }
  static ReplyEnvelope decode_reply(const Message& m) {
    ReplyEnvelope envelope;
    const auto ec = decode(m.at(4), envelope);
    EXPECT_FALSE(ec) << ec.message();
    return envelope;
  }
  static std::string header(const ReplyEnvelope& e, const std::string& name) {
    for (const auto& h : e.headers) {
      if (h.name == name) return h.value;
    }
    return {};
  }
  const Counters& counters() const { return dispatcher_->counters(); }

  DispatcherOptions options_ = [] {
    DispatcherOptions o;
    o.broker_id = "test-broker";
    o.heartbeat_interval = 250ms;
    o.liveness = 4;
    o.no_worker_grace = 1'000ms;
    o.max_dispatches = 3;
    return o;
  }();
  RecordingOutbox out_;
  Now now_{Clock::time_point{} + std::chrono::hours(1), 1'700'000'000'000};
  std::unique_ptr<Dispatcher> dispatcher_;
};

TEST_F(DispatcherTest, RegisteredWorkerIsGreetedWithHeartbeatCarryingBrokerId) {
  ready("w1", 4);
  const auto hb = controls_to_worker("w1", Command::kHeartbeat);
  ASSERT_EQ(hb.size(), 1u);
  ASSERT_EQ(hb[0].size(), 4u);
  EXPECT_EQ(hb[0][1], protocol::kTag);
  EXPECT_EQ(hb[0][3], "test-broker");
  const auto stats = stats_json();
  EXPECT_EQ(stats["services"]["echo"]["workers"], 1);
  EXPECT_EQ(stats["services"]["echo"]["capacity"], 4);
}

TEST_F(DispatcherTest, RequestIsForwardedToWorkerWithFieldsAndEnvelopeUntouched) {
  ready("w1", 1);
  request("g1", 7, kSafe, 3'000);
  ASSERT_EQ(dispatched_to("w1"), std::vector<int>{7});
  const auto& m = out_.worker.back();
  EXPECT_EQ(m[1], protocol::kTag);
  EXPECT_EQ(m[3], "echo");
  EXPECT_EQ(m[5], u64_bytes(in_ms(3'000)));
  EXPECT_EQ(m[6], std::string(1, static_cast<char>(kSafe)));
  EXPECT_EQ(m[7], "envelope-7");
}

TEST_F(DispatcherTest, DispatchesToLeastLoadedWorkerByShareOfCapacity) {
  ready("small", 2);
  ready("big", 4);
  for (int i = 1; i <= 3; ++i) request("g1", i);
  // small 0/2 wins the tie, then big (0/4 < 1/2), then big again (1/4 < 1/2).
  EXPECT_EQ(dispatched_to("small"), std::vector<int>{1});
  EXPECT_EQ(dispatched_to("big"), (std::vector<int>{2, 3}));
  for (int i = 4; i <= 6; ++i) request("g1", i);
  EXPECT_EQ(dispatched_to("small").size(), 2u);
  EXPECT_EQ(dispatched_to("big").size(), 4u);
}

TEST_F(DispatcherTest, NoWorkerGetsMoreThanItsCapacityInFlightAndTheRestQueue) {
  ready("w1", 2);
  ready("w2", 1);
  for (int i = 1; i <= 6; ++i) request("g1", i);
  EXPECT_EQ(dispatched_to("w1").size(), 2u);
  EXPECT_EQ(dispatched_to("w2").size(), 1u);
  EXPECT_EQ(dispatcher_->in_flight(), 3u);
  const auto stats = stats_json();
  EXPECT_EQ(stats["services"]["echo"]["queue_depth"], 3);
  EXPECT_EQ(stats["services"]["echo"]["in_flight"], 3);
}

TEST_F(DispatcherTest, ReplyGoesToOriginatingGatewayAndFreedCreditTakesNextQueued) {
  ready("w1", 1);
  request("g1", 1);
  request("g2", 2);
  ASSERT_EQ(dispatched_to("w1"), std::vector<int>{1});

  reply("w1", 1, "answer-1");
  ASSERT_EQ(replies_to("g1").size(), 1u);
  EXPECT_EQ(replies_to("g1")[0][3], id_bytes(1));
  EXPECT_EQ(replies_to("g1")[0][4], "answer-1");  // forwarded byte for byte
  EXPECT_TRUE(replies_to("g2").empty());
  EXPECT_EQ(dispatched_to("w1"), (std::vector<int>{1, 2}));

  reply("w1", 2, "answer-2");
  ASSERT_EQ(replies_to("g2").size(), 1u);
  EXPECT_EQ(replies_to("g2")[0][4], "answer-2");
  EXPECT_EQ(counters().replies, 2u);
  EXPECT_EQ(dispatcher_->in_flight(), 0u);
}

TEST_F(DispatcherTest, SecondReplyForSameRequestIsDroppedAndCounted) {
  ready("w1", 2);
  request("g1", 1);
  reply("w1", 1);
  reply("w1", 1);
  EXPECT_EQ(replies_to("g1").size(), 1u);
  EXPECT_EQ(counters().late_replies, 1u);
  // The duplicate did not free a second credit: two more requests still fit, a third queues.
  for (int i = 2; i <= 4; ++i) request("g1", i);
  EXPECT_EQ(dispatched_to("w1").size(), 3u);
}

TEST_F(DispatcherTest, ReplyFromWorkerThatDidNotHoldTheRequestIsDropped) {
  ready("w1", 1);
  ready("w2", 1);
  request("g1", 1);
  ASSERT_EQ(dispatched_to("w1"), std::vector<int>{1});
  reply("w2", 1);
  EXPECT_TRUE(out_.gateway.empty());
  EXPECT_EQ(counters().late_replies, 1u);
  reply("w1", 1);
  EXPECT_EQ(replies_to("g1").size(), 1u);
}

TEST_F(DispatcherTest, WorkerMissingHeartbeatsIsRemovedAndRetrySafeRequestsGoElsewhere) {
  ready("w1", 2);
  request("g1", 1, kSafe);
  request("g1", 2, kUnsafe);
  ASSERT_EQ(dispatched_to("w1"), (std::vector<int>{1, 2}));
  ready("w2", 2);

  pass(1'250ms, {"w2"}, {"g1"});  // w1 silent for more than liveness * interval

  EXPECT_EQ(counters().workers_lost, 1u);
  EXPECT_EQ(dispatched_to("w2"), std::vector<int>{1});
  EXPECT_EQ(counters().requeued, 1u);
  const auto replies = replies_to("g1");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0][3], id_bytes(2));
  const auto envelope = decode_reply(replies[0]);
  EXPECT_EQ(envelope.status, 502);
  ASSERT_TRUE(envelope.error);
  EXPECT_EQ(envelope.error->code, "WORKER_LOST");
  EXPECT_EQ(envelope.id, make_id(2));
  EXPECT_EQ(counters().worker_lost_replies, 1u);

  // The lost worker comes back with an answer: it is not forwarded, and the worker is told to
  // register again.
  reply("w1", 1, "stale");
  EXPECT_EQ(replies_to("g1").size(), 1u);
  EXPECT_EQ(counters().late_replies, 1u);
  EXPECT_EQ(controls_to_worker("w1", Command::kDisconnect).size(), 1u);
  reply("w2", 1, "fresh");
  ASSERT_EQ(replies_to("g1").size(), 2u);
  EXPECT_EQ(replies_to("g1")[1][4], "fresh");
}

TEST_F(DispatcherTest, RetrySafeRequestIsAnsweredWorkerLostAfterMaxDispatches) {
  options_.max_dispatches = 2;
  make_dispatcher();
  ready("w1", 1);
  request("g1", 1, kSafe);
  ready("w2", 1);
  worker_control("w1", Command::kDisconnect);
  ASSERT_EQ(dispatched_to("w2"), std::vector<int>{1});
  EXPECT_TRUE(replies_to("g1").empty());
  ready("w3", 1);
  worker_control("w2", Command::kDisconnect);  // second dispatch lost: no third
  EXPECT_TRUE(dispatched_to("w3").empty());
  ASSERT_EQ(replies_to("g1").size(), 1u);
  EXPECT_EQ(decode_reply(replies_to("g1")[0]).error->code, "WORKER_LOST");
  EXPECT_EQ(counters().dispatched, 2u);
}

TEST_F(DispatcherTest, DrainingWorkerGetsNoNewWorkButItsRepliesAreForwarded) {
  ready("w1", 4);
  request("g1", 1);
  worker_control("w1", Command::kDrain);
  request("g1", 2);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
  reply("w1", 1);
  EXPECT_EQ(replies_to("g1").size(), 1u);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});  // a freed credit is not reused
  ready("w2", 1);
  EXPECT_EQ(dispatched_to("w2"), std::vector<int>{2});
  EXPECT_EQ(stats_json()["services"]["echo"]["workers"], 1);
}

TEST_F(DispatcherTest, FullQueueIsRefusedWithOverloadedAndRetryAfter) {
  options_.max_queue["echo"] = 2;
  make_dispatcher();
  ready("w1", 1);
  for (int i = 1; i <= 4; ++i) request("g1", i);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
  const auto replies = replies_to("g1");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0][3], id_bytes(4));
  const auto envelope = decode_reply(replies[0]);
  EXPECT_EQ(envelope.status, 503);
  EXPECT_EQ(envelope.error->code, "ECHO_OVERLOADED");
  EXPECT_FALSE(header(envelope, "Retry-After").empty());
  EXPECT_EQ(counters().rejected_overloaded, 1u);
}

TEST_F(DispatcherTest, RequestWithoutWorkersIsAnsweredUnavailableAfterGrace) {
  request("g1", 1);
  pass(750ms, {}, {"g1"});
  EXPECT_TRUE(replies_to("g1").empty());
  pass(500ms, {}, {"g1"});
  const auto replies = replies_to("g1");
  ASSERT_EQ(replies.size(), 1u);
  const auto envelope = decode_reply(replies[0]);
  EXPECT_EQ(envelope.status, 503);
  EXPECT_EQ(envelope.error->code, "ECHO_UNAVAILABLE");
  EXPECT_EQ(envelope.error->detail, "no workers");
  EXPECT_EQ(counters().rejected_no_workers, 1u);
}

TEST_F(DispatcherTest, WorkerRegisteringWithinGraceGetsTheWaitingRequest) {
  request("g1", 1);
  pass(750ms, {}, {"g1"});
  ready("w1", 1);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
  pass(1'000ms, {"w1"}, {"g1"});
  EXPECT_TRUE(replies_to("g1").empty());
  reply("w1", 1);
  EXPECT_EQ(replies_to("g1").size(), 1u);
}

TEST_F(DispatcherTest, QueuedRequestPastDeadlineTimesOutAndIsNeverDispatched) {
  ready("w1", 1);
  request("g1", 1, kSafe, 5'000);
  request("g1", 2, kSafe, 300);
  pass(500ms, {"w1"}, {"g1"});
  const auto replies = replies_to("g1");
  ASSERT_EQ(replies.size(), 1u);
  const auto envelope = decode_reply(replies[0]);
  EXPECT_EQ(envelope.id, make_id(2));
  EXPECT_EQ(envelope.status, 504);
  EXPECT_EQ(envelope.error->code, "ECHO_TIMEOUT");
  reply("w1", 1);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
  EXPECT_EQ(counters().expired, 1u);
}

TEST_F(DispatcherTest, QueuedRequestDueWhenCreditFreesIsAnsweredTimeoutNotDispatched) {
  ready("w1", 1);
  request("g1", 1, kSafe, 5'000);
  request("g1", 2, kSafe, 100);
  advance(150ms);  // no tick: the deadline is found when the credit frees
  reply("w1", 1);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
  ASSERT_EQ(replies_to("g1").size(), 2u);
  EXPECT_EQ(decode_reply(replies_to("g1")[1]).status, 504);
}

TEST_F(DispatcherTest, RequestAlreadyPastDeadlineIsAnsweredTimeoutAtOnce) {
  ready("w1", 1);
  request("g1", 1, kSafe, -1);
  request_at("g1", 2, kSafe, 0);
  EXPECT_TRUE(dispatched_to("w1").empty());
  const auto replies = replies_to("g1");
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(decode_reply(replies[0]).error->code, "ECHO_TIMEOUT");
  EXPECT_EQ(decode_reply(replies[1]).status, 504);
}

TEST_F(DispatcherTest, FarFutureDeadlineDoesNotOverflowIntoThePast) {
  ready("w1", 2);
  request_at("g1", 1, kSafe, std::numeric_limits<std::uint64_t>::max());
  request_at("g1", 2, kSafe, std::uint64_t{1} << 63);
  EXPECT_EQ(dispatched_to("w1"), (std::vector<int>{1, 2}));
  EXPECT_TRUE(replies_to("g1").empty());
  pass(2'000ms, {"w1"}, {"g1"});
  EXPECT_EQ(counters().orphans, 0u);
  EXPECT_TRUE(replies_to("g1").empty());
}

TEST_F(DispatcherTest, GatewayMissingHeartbeatsHasItsQueuedRequestsDroppedAndOthersCancelled) {
  ready("w1", 1);
  request("g1", 1, kSafe, 60'000);
  request("g1", 2, kSafe, 60'000);
  request("g1", 3, kSafe, 60'000);
  pass(1'250ms, {"w1"}, {});
  // The two queued ones are dropped; the one at the worker is cancelled there.
  EXPECT_EQ(counters().gateway_gone_drops, 3u);
  EXPECT_EQ(controls_to_worker("w1", Command::kCancel).size(), 1u);
  EXPECT_EQ(stats_json()["services"]["echo"]["queue_depth"], 0);
  EXPECT_EQ(stats_json()["gateways"], 0);
  reply("w1", 1);  // the in-flight one finishes, but there is nobody to tell
  EXPECT_TRUE(replies_to("g1").empty());
  EXPECT_EQ(counters().gateway_gone_drops, 3u);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
  EXPECT_EQ(dispatcher_->in_flight(), 0u);
}

TEST_F(DispatcherTest, UnknownWorkerSendingHeartbeatIsToldToDisconnect) {
  worker_control("ghost", Command::kHeartbeat);
  const auto sent = controls_to_worker("ghost", Command::kDisconnect);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].size(), 3u);
  EXPECT_EQ(counters().malformed, 0u);
}

TEST_F(DispatcherTest, UnknownGatewayHeartbeatIsAnsweredAndGatewayRecorded) {
  gateway_heartbeat("g1");
  ASSERT_EQ(out_.gateway.size(), 1u);
  EXPECT_EQ(out_.gateway[0][2], cmd(Command::kHeartbeat));
  EXPECT_EQ(stats_json()["gateways"], 1);
}

TEST_F(DispatcherTest, MalformedMessagesAreCountedAndDroppedOnBothSides) {
  ready("w1", 1);
  const std::string tag(protocol::kTag);
  const std::string ok_deadline = u64_bytes(in_ms(5'000));
  const std::string safe(1, static_cast<char>(kSafe));
  const std::vector<Message> gateway_garbage = {
      {"g1"},
      {"g1", tag},
      {"g1", "COURIER/2", cmd(Command::kRequest)},
      {"g1", tag, std::string(1, '\x00')},
      {"g1", tag, std::string(1, '\x7f')},
      {"g1", tag, "\x01\x01"},
      {"g1", tag, cmd(Command::kRequest), "echo", id_bytes(1), ok_deadline, safe},  // no envelope
      {"g1", tag, cmd(Command::kRequest), "echo", id_bytes(1), ok_deadline, safe, "e", "extra"},
      {"g1", tag, cmd(Command::kRequest), "echo", id_bytes(1).substr(1), ok_deadline, safe, "e"},
      {"g1", tag, cmd(Command::kRequest), "echo", id_bytes(1), "1234567", safe, "e"},
      {"g1", tag, cmd(Command::kRequest), "echo", id_bytes(1), ok_deadline, "\x01\x01", "e"},
      {"g1", tag, cmd(Command::kRequest), "Echo!", id_bytes(1), ok_deadline, safe, "e"},
      {"g1", tag, cmd(Command::kRequest), "", id_bytes(1), ok_deadline, safe, "e"},
      {"g1", tag, cmd(Command::kHeartbeat), "a", "b"},
      {"g1", tag, cmd(Command::kStats)},
      {"g1", tag, cmd(Command::kStats), "short"},
      {"g1", tag, cmd(Command::kReply), id_bytes(1), "e"},
      {"g1", tag, cmd(Command::kReady), "echo", u32_bytes(1), "w"},
      {"g1", tag, cmd(Command::kDisconnect), "extra"},
  };
  for (const auto& m : gateway_garbage) from_gateway(m);
  EXPECT_EQ(counters().malformed, gateway_garbage.size());

  const std::vector<Message> worker_garbage = {
      {"w1", "COURIER/1 ", cmd(Command::kReply), id_bytes(1), "e"},
      {"w1", tag, cmd(Command::kReply), id_bytes(1)},
      {"w1", tag, cmd(Command::kReply), id_bytes(1), "e", "extra"},
      {"w1", tag, cmd(Command::kReply), "0123456789abcdef0", "e"},
      {"w1", tag, cmd(Command::kReady), "echo", u32_bytes(0), "w"},
      {"w1", tag, cmd(Command::kReady), "echo", "\x00\x01", "w"},
      {"w1", tag, cmd(Command::kReady), "echo", u32_bytes(1), std::string(200, 'w')},
      {"w1", tag, cmd(Command::kReady), "ECHO", u32_bytes(1), "w"},
      {"w1", tag, cmd(Command::kHeartbeat), "a", "b"},
      {"w1", tag, cmd(Command::kDrain), "x"},
      {"w1", tag, cmd(Command::kRequest), "echo", id_bytes(1), ok_deadline, safe, "e"},
      {"stranger", tag, cmd(Command::kReply), "short", "e"},
      {"stranger", tag, cmd(Command::kStats), id_bytes(1)},
  };
  for (const auto& m : worker_garbage) from_worker(m);
  EXPECT_EQ(counters().malformed, gateway_garbage.size() + worker_garbage.size());

  // Random bytes in random shapes, from a fixed seed.
  std::mt19937 rng(12345);
  std::size_t random_sent = 0;
  for (int i = 0; i < 500; ++i) {
    Message m{i % 2 ? "g9" : "w9"};
    const int count = std::uniform_int_distribution<int>(0, 10)(rng);
    for (int f = 0; f < count; ++f) {
      std::string bytes(std::uniform_int_distribution<int>(0, 40)(rng), '\0');
      for (auto& b : bytes) b = static_cast<char>(rng());
      m.push_back(std::move(bytes));
    }
    (i % 2 ? from_gateway(m) : from_worker(m));
    ++random_sent;
  }
  EXPECT_EQ(counters().malformed, gateway_garbage.size() + worker_garbage.size() + random_sent);

  // None of it reached anyone, changed the worker's state, or entered the request table.
  EXPECT_TRUE(out_.gateway.empty());
  EXPECT_TRUE(dispatched_to("w1").empty());
  EXPECT_EQ(counters().requests, 0u);
  EXPECT_EQ(stats_json()["services"]["echo"]["capacity"], 1);
  request("g1", 1);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
}

TEST_F(DispatcherTest, RequestReusingACorrelationIdInFlightIsDropped) {
  ready("w1", 2);
  request("g1", 1);
  request("g1", 1);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
  EXPECT_TRUE(out_.gateway.empty());
  EXPECT_EQ(counters().duplicate_requests, 1u);
  reply("w1", 1);
  EXPECT_EQ(replies_to("g1").size(), 1u);
}

TEST_F(DispatcherTest, AnIdResentByTheSameAuthenticatedGatewayOverANewConnectionTakesTheReply) {
  // The gateway lost its connection (new routing id) and sent the request again: it is not run
  // twice, and its one reply goes where the gateway now listens. Its CURVE key proves it is the
  // same gateway.
  ready("w1", 2);
  request_as("g1", "gateway-key-1", 1);
  request_as("g1-reconnected", "gateway-key-1", 1);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
  EXPECT_EQ(counters().rerouted_requests, 1u);
  EXPECT_EQ(counters().foreign_ids, 0u);
  EXPECT_TRUE(out_.gateway.empty());
  reply("w1", 1);
  EXPECT_TRUE(replies_to("g1").empty());
  EXPECT_EQ(replies_to("g1-reconnected").size(), 1u);
}

TEST_F(DispatcherTest, ARequestReusingAnIdHeldForAnotherGatewayIsRefusedAndNeverTakesTheRoute) {
  // Ids are shown to clients (X-Request-ID): a peer that re-sends a victim's id from another
  // connection must not receive the victim's reply.
  ready("w1", 2);
  request("victim", 1);
  request("thief", 1);
  ASSERT_EQ(replies_to("thief").size(), 1u);
  const auto refusal = decode_reply(replies_to("thief")[0]);
  EXPECT_EQ(refusal.status, 503);
  EXPECT_EQ(counters().foreign_ids, 1u);
  EXPECT_EQ(counters().rerouted_requests, 0u);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
  // Another authenticated principal, or an authenticated one against an unauthenticated owner,
  // proves nothing either.
  request_as("thief-2", "other-key", 1);
  EXPECT_EQ(counters().foreign_ids, 2u);
  reply("w1", 1, "the-victims-answer");
  ASSERT_EQ(replies_to("victim").size(), 1u);
  EXPECT_EQ(replies_to("victim")[0][4], "the-victims-answer");
  EXPECT_EQ(replies_to("thief").size(), 1u) << "only the refusal";
  EXPECT_TRUE(replies_to("thief-2").size() == 1u);
  EXPECT_EQ(dispatcher_->in_flight(), 0u);
}

TEST_F(DispatcherTest, ARequestFromAnotherPrincipalCannotTakeAnAuthenticatedGatewaysRoute) {
  ready("w1", 2);
  request_as("g1", "gateway-key-1", 1);
  request_as("g2", "gateway-key-2", 1);
  EXPECT_EQ(counters().foreign_ids, 1u);
  reply("w1", 1);
  EXPECT_EQ(replies_to("g1").size(), 1u);
  ASSERT_EQ(replies_to("g2").size(), 1u);
  EXPECT_EQ(decode_reply(replies_to("g2")[0]).status, 503);
}

TEST_F(DispatcherTest, AReplyFromAWorkerThatDoesNotHoldTheIdIsDroppedAndCounted) {
  ready("w1", 1);
  ready("w2", 1);
  request("g1", 1);
  ASSERT_EQ(dispatched_to("w1"), std::vector<int>{1});
  reply("w2", 1, "forged");
  EXPECT_TRUE(replies_to("g1").empty());
  EXPECT_EQ(counters().late_replies, 1u);
  EXPECT_EQ(dispatcher_->in_flight(), 1u);
  reply("w1", 1, "real");
  ASSERT_EQ(replies_to("g1").size(), 1u);
  EXPECT_EQ(replies_to("g1")[0][4], "real");
}

TEST_F(DispatcherTest, HeartbeatStatusOfWrongTypesIsReadLenientlyAndNeverThrows) {
  // {"circuit":1} used to escape as json.exception.type_error.302 and kill the broker.
  ready("w1", 1);
  for (const std::string& status : std::vector<std::string>{
           R"({"circuit":1})", R"({"circuit":{"a":[1,2]},"circuit_accepting":"no"})",
           R"({"circuit_failure_rate":"NaN","requests":-1,"attempts":1.5,"retries":1e300})",
           R"({"circuit":null,"circuit_opened":18446744073709551615})"}) {
    heartbeat_with_status("w1", status);
    EXPECT_EQ(counters().malformed, 0u) << status;
  }
  const auto listed = stats_json()["services"]["echo"]["worker_list"][0];
  EXPECT_FALSE(listed["status"].contains("circuit"));
  EXPECT_EQ(listed["status"]["requests"], 0);
  // Not objects at all, or too long: counted, the worker keeps serving.
  for (const std::string& status : {std::string("[1]"), std::string("not json"),
                                    std::string("\xff\xfe"), std::string(5000, ' ')}) {
    heartbeat_with_status("w1", status);
  }
  EXPECT_EQ(counters().malformed_status, 4u);
  EXPECT_EQ(counters().malformed, 4u);
  request("g1", 1);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
}

TEST_F(DispatcherTest, ReadyForAServiceTheDeploymentDoesNotDeclareIsRefused) {
  options_.services = {"echo"};
  make_dispatcher();
  ready("w1", 1);
  ready("rogue", 1000, "other");
  EXPECT_EQ(counters().refused_services, 1u);
  EXPECT_TRUE(controls_to_worker("rogue", Command::kHeartbeat).empty()) << "never greeted";
  EXPECT_FALSE(stats_json()["services"].contains("other"));
  // A request for it is answered at once, as for any service without workers, and creates
  // nothing either.
  request("g1", 1, kSafe, 5'000, "other");
  ASSERT_EQ(replies_to("g1").size(), 1u);
  EXPECT_EQ(decode_reply(replies_to("g1")[0]).status, 503);
  EXPECT_FALSE(stats_json()["services"].contains("other"));
  // A registered worker that asks to switch to it is forgotten, not moved.
  ready("w1", 1, "other");
  EXPECT_EQ(counters().refused_services, 2u);
  EXPECT_EQ(stats_json()["services"]["echo"]["workers"], 0);
}

TEST_F(DispatcherTest, TwentyThousandReadysForDistinctServicesCreateAtMostMaxServices) {
  options_.max_services = 8;
  make_dispatcher();
  ready("w1", 1);
  for (int i = 0; i < 20'000; ++i)
    ready("flood-" + std::to_string(i), 1, "svc-" + std::to_string(i));
  const auto stats = stats_json();
  EXPECT_EQ(stats["services"].size(), 8u);
  EXPECT_EQ(counters().refused_services, 20'000u - 7u);
  EXPECT_LT(encode(dispatcher_->stats(now_)).size(), 16u * 1024);
  request("g1", 1);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
}

TEST_F(DispatcherTest, WorkersPerServiceAreCapped) {
  options_.max_workers_per_service = 3;
  make_dispatcher();
  for (int i = 0; i < 10; ++i) ready("w" + std::to_string(i), 1);
  EXPECT_EQ(stats_json()["services"]["echo"]["workers"], 3);
  EXPECT_EQ(counters().refused_workers, 7u);
  ready("w0", 2);  // a registered worker renews its credit as before
  EXPECT_EQ(stats_json()["services"]["echo"]["capacity"], 4);
}

TEST_F(DispatcherTest, GatewaysAreCappedAndARefusedOneIsAnsweredAtOnce) {
  options_.max_gateways = 2;
  make_dispatcher();
  ready("w1", 4);
  gateway_heartbeat("g1");
  request("g2", 1);
  request("g3", 2);
  gateway_heartbeat("g4");
  from_gateway({"g5", std::string(protocol::kTag), cmd(Command::kStats), id_bytes(9)});
  EXPECT_EQ(stats_json()["gateways"], 2);
  EXPECT_EQ(counters().refused_gateways, 3u);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
  ASSERT_EQ(replies_to("g3").size(), 1u);
  EXPECT_EQ(decode_reply(replies_to("g3")[0]).error->code, "BROKER_UNAVAILABLE");
  EXPECT_TRUE(out_.gateway.size() == 2u) << "g1's greeting and g3's refusal only";
  // A known gateway leaving makes room.
  from_gateway({"g1", std::string(protocol::kTag), cmd(Command::kDisconnect)});
  request("g3", 3);
  EXPECT_EQ(dispatched_to("w1"), (std::vector<int>{1, 3}));
}

TEST_F(DispatcherTest, AWorkerSendingRepeatedGarbageIsForgottenAndItsRequestsSettledAsOnLoss) {
  options_.max_worker_strikes = 5;
  make_dispatcher();
  ready("bad", 2);
  ready("good", 2);
  request("g1", 1, kSafe);
  request("g1", 2, kSafe);
  request("g1", 3, kUnsafe);
  request("g1", 4, kUnsafe);
  ASSERT_EQ(dispatched_to("bad"), (std::vector<int>{1, 3}));
  for (int i = 0; i < 5; ++i) {
    from_worker({"bad", std::string(protocol::kTag), cmd(Command::kReply), "short", "e"});
  }
  EXPECT_EQ(counters().peers_disconnected, 1u);
  EXPECT_EQ(controls_to_worker("bad", Command::kDisconnect).size(), 1u);
  EXPECT_EQ(stats_json()["services"]["echo"]["workers"], 1);
  // Exactly as on a worker loss: the retry-safe one requeued, the other answered WORKER_LOST.
  EXPECT_EQ(counters().workers_lost, 1u);
  EXPECT_EQ(counters().requeued, 1u);
  EXPECT_EQ(counters().worker_lost_replies, 1u);
  ASSERT_EQ(replies_to("g1").size(), 1u);
  EXPECT_EQ(decode_reply(replies_to("g1")[0]).error->code, "WORKER_LOST");
}

TEST_F(DispatcherTest, AStatsFloodIsAnsweredFromOneRenderingPerInterval) {
  ready("w1", 1);
  const auto stats_request = [&](int n) {
    from_gateway({"g1", std::string(protocol::kTag), cmd(Command::kStats), id_bytes(n)});
    return nlohmann::json::parse(out_.gateway.back().at(4));
  };
  EXPECT_EQ(stats_request(1)["services"]["echo"]["workers"], 1);
  ready("w2", 1);
  // Within the interval: the same rendering (a flood costs one rendering, not one each).
  for (int i = 2; i < 100; ++i) EXPECT_EQ(stats_request(i)["services"]["echo"]["workers"], 1);
  advance(options_.stats_cache);
  EXPECT_EQ(stats_request(100)["services"]["echo"]["workers"], 2);
}

TEST_F(DispatcherTest, AnErrorCaughtOutsideIsCountedAndTheDispatcherGoesOn) {
  ready("w1", 1);
  dispatcher_->on_handler_error("std::bad_alloc", now_);
  EXPECT_EQ(counters().handler_errors, 1u);
  EXPECT_EQ(stats_json()["counters"]["handler_errors"], 1);
  request("g1", 1);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
}

TEST_F(DispatcherTest, ShutdownAnswersQueuedWithBrokerUnavailableAndRefusesNewRequests) {
  ready("w1", 1);
  request("g1", 1);
  request("g1", 2);
  request("g2", 3);
  dispatcher_->begin_shutdown(now_);
  ASSERT_EQ(replies_to("g1").size(), 1u);
  ASSERT_EQ(replies_to("g2").size(), 1u);
  for (const auto& m : {replies_to("g1")[0], replies_to("g2")[0]}) {
    const auto envelope = decode_reply(m);
    EXPECT_EQ(envelope.status, 503);
    EXPECT_EQ(envelope.error->code, "BROKER_UNAVAILABLE");
  }
  request("g1", 4);
  ASSERT_EQ(replies_to("g1").size(), 2u);
  EXPECT_EQ(decode_reply(replies_to("g1")[1]).error->code, "BROKER_UNAVAILABLE");
  EXPECT_EQ(dispatcher_->in_flight(), 1u);
  reply("w1", 1);  // in-flight work still completes
  EXPECT_EQ(replies_to("g1").size(), 3u);
  EXPECT_EQ(dispatcher_->in_flight(), 0u);
}

TEST_F(DispatcherTest, AStallAnswersWhatWasQueuedAndNeverDispatchesIt) {
  ready("w1", 1);
  request("g1", 1);  // at the worker
  request("g1", 2);  // queued behind it
  ASSERT_EQ(dispatched_to("w1"), std::vector<int>{1});
  // The broker was frozen past its gateways' patience: they answered request 2 themselves.
  advance(2'000ms);
  dispatcher_->on_stall(2'000ms);
  ASSERT_EQ(replies_to("g1").size(), 1u);
  const auto envelope = decode_reply(replies_to("g1")[0]);
  EXPECT_EQ(envelope.status, 503);
  EXPECT_EQ(envelope.error->code, "BROKER_UNAVAILABLE");
  EXPECT_EQ(counters().stall_drops, 1u);
  // The worker's reply frees it; what was queued before the stall must not run now.
  reply("w1", 1);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
  EXPECT_EQ(replies_to("g1").size(), 2u);
  EXPECT_EQ(dispatcher_->in_flight(), 0u);
  // A request sent after the stall is served as usual.
  request("g1", 3);
  EXPECT_EQ(dispatched_to("w1"), (std::vector<int>{1, 3}));
}

TEST_F(DispatcherTest, WorkerLostDuringShutdownLeavesNoRequestUnanswered) {
  ready("w1", 1);
  request("g1", 1, kSafe);
  dispatcher_->begin_shutdown(now_);
  worker_control("w1", Command::kDisconnect);
  // Requeued with no worker to take it; the broker would exit now that nothing is in flight.
  EXPECT_EQ(dispatcher_->in_flight(), 0u);
  ASSERT_EQ(replies_to("g1").size(), 1u);
  EXPECT_EQ(decode_reply(replies_to("g1")[0]).error->code, "BROKER_UNAVAILABLE");
}

TEST_F(DispatcherTest, DrainTimeoutAnswersRequestsStillInFlight) {
  ready("w1", 1);
  request("g1", 1);
  dispatcher_->begin_shutdown(now_);
  dispatcher_->fail_in_flight("broker stopped");
  EXPECT_EQ(dispatcher_->in_flight(), 0u);
  ASSERT_EQ(replies_to("g1").size(), 1u);
  EXPECT_EQ(decode_reply(replies_to("g1")[0]).status, 503);
  reply("w1", 1);
  EXPECT_EQ(replies_to("g1").size(), 1u);
  EXPECT_EQ(counters().late_replies, 1u);
}

TEST_F(DispatcherTest, StatsReportServicesWorkersAndCounters) {
  ready("w1", 3);
  for (int i = 1; i <= 4; ++i) request("g1", i);
  reply("w1", 1);
  from_gateway({"g1", std::string(protocol::kTag), cmd(Command::kStats), id_bytes(99)});
  ASSERT_FALSE(out_.gateway.empty());
  const auto& m = out_.gateway.back();
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(m[2], cmd(Command::kStats));
  EXPECT_EQ(m[3], id_bytes(99));
  const auto stats = nlohmann::json::parse(m[4]);
  EXPECT_EQ(stats["broker_id"], "test-broker");
  EXPECT_EQ(stats["gateways"], 1);
  EXPECT_EQ(stats["counters"]["requests"], 4);
  EXPECT_EQ(stats["counters"]["dispatched"], 4);
  EXPECT_EQ(stats["counters"]["replies"], 1);
  for (const char* k :
       {"requeued", "worker_lost", "expired", "rejected_overloaded", "rejected_no_workers",
        "malformed", "late_replies", "duplicate_requests", "rerouted_requests", "unroutable",
        "gateway_gone_drops", "orphans", "workers_lost"}) {
    EXPECT_TRUE(stats["counters"].contains(k)) << k;
  }
  const auto& echo = stats["services"]["echo"];
  EXPECT_EQ(echo["workers"], 1);
  EXPECT_EQ(echo["capacity"], 3);
  EXPECT_EQ(echo["in_flight"], 3);
  EXPECT_EQ(echo["queue_depth"], 0);
  EXPECT_EQ(echo["max_queue"], options_.default_max_queue);
  ASSERT_EQ(echo["worker_list"].size(), 1u);
  EXPECT_EQ(echo["worker_list"][0]["id"], "w1-name");
  EXPECT_EQ(echo["worker_list"][0]["completed"], 1);
  EXPECT_EQ(echo["counters"]["dispatched"], 4);
  EXPECT_EQ(echo["counters"]["replies"], 1);
}

TEST_F(DispatcherTest, UnreachableWorkerIsRemovedAndRequestGoesToAnotherWorker) {
  ready("w1", 1);
  ready("w2", 1);
  out_.dead_workers.insert("w1");
  request("g1", 1, kUnsafe);  // never delivered, so safe to hand on whatever its method
  EXPECT_EQ(dispatched_to("w2"), std::vector<int>{1});
  EXPECT_EQ(counters().unroutable, 1u);
  EXPECT_EQ(counters().workers_lost, 1u);
  EXPECT_TRUE(replies_to("g1").empty());
  reply("w2", 1);
  EXPECT_EQ(replies_to("g1").size(), 1u);
}

TEST_F(DispatcherTest, RequestForUnreachableLastWorkerWaitsForTheNextOne) {
  ready("w1", 1);
  out_.dead_workers.insert("w1");
  request("g1", 1, kUnsafe);
  EXPECT_TRUE(replies_to("g1").empty());
  ready("w2", 1);
  EXPECT_EQ(dispatched_to("w2"), std::vector<int>{1});
}

TEST_F(DispatcherTest, ReadyAgainRenewsCreditWithoutLosingInFlight) {
  ready("w1", 1);
  request("g1", 1);
  request("g1", 2);
  ready("w1", 2);
  EXPECT_EQ(dispatched_to("w1"), (std::vector<int>{1, 2}));
  reply("w1", 1);
  reply("w1", 2);
  EXPECT_EQ(replies_to("g1").size(), 2u);
}

TEST_F(DispatcherTest, RequestsOfOneServiceNeverReachWorkersOfAnother) {
  ready("echo-w", 4, "echo");
  ready("slow-w", 4, "slow");
  request("g1", 1, kSafe, 5'000, "slow");
  request("g1", 2, kSafe, 5'000, "echo");
  EXPECT_EQ(dispatched_to("slow-w"), std::vector<int>{1});
  EXPECT_EQ(dispatched_to("echo-w"), std::vector<int>{2});
}

TEST_F(DispatcherTest, WorkerStatusFromHeartbeatShowsInStats) {
  ready("w1", 4);
  ready("w2", 4);
  from_worker({"w1", std::string(protocol::kTag), cmd(Command::kHeartbeat),
               R"({"circuit":"open","attempts":7})"});
  auto stats = stats_json()["services"]["echo"];
  EXPECT_EQ(stats["circuit"], "open");
  EXPECT_EQ(stats["worker_list"][0]["status"]["attempts"], 7);
  from_worker(
      {"w2", std::string(protocol::kTag), cmd(Command::kHeartbeat), R"({"circuit":"closed"})"});
  EXPECT_EQ(stats_json()["services"]["echo"]["circuit"], "mixed");
  // Garbage in the status frame is counted, not fatal: the worker stays, without a status.
  from_worker({"w2", std::string(protocol::kTag), cmd(Command::kHeartbeat), "{not json"});
  EXPECT_EQ(dispatcher_->counters().malformed_status, 1u);
  EXPECT_EQ(stats_json()["services"]["echo"]["workers"], 2);
  EXPECT_EQ(stats_json()["services"]["echo"]["circuit"], "open");
}

TEST_F(DispatcherTest, WorkerWithOpenCircuitGetsNothingWhileOthersCanServe) {
  ready("w1", 1);
  ready("w2", 8);
  from_worker(
      {"w2", std::string(protocol::kTag), cmd(Command::kHeartbeat), R"({"circuit":"open"})"});
  request("g1", 1);
  request("g1", 2);  // w1 is full: this one waits for it rather than fail fast on w2
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
  EXPECT_TRUE(dispatched_to("w2").empty());
  EXPECT_EQ(stats_json()["services"]["echo"]["ejected"], 1);
  reply("w1", 1);
  EXPECT_EQ(dispatched_to("w1"), (std::vector<int>{1, 2}));

  // Its cool-down over, the worker reports half-open: back in the rotation for the probes, and
  // what was waiting goes to it at once.
  request("g1", 3);
  EXPECT_EQ(dispatched_to("w2"), std::vector<int>{});
  from_worker({"w2", std::string(protocol::kTag), cmd(Command::kHeartbeat),
               R"({"circuit":"half-open","circuit_accepting":false})"});
  EXPECT_EQ(dispatched_to("w2"), std::vector<int>{}) << "every probe is out";
  from_worker(
      {"w2", std::string(protocol::kTag), cmd(Command::kHeartbeat), R"({"circuit":"half-open"})"});
  EXPECT_EQ(dispatched_to("w2"), std::vector<int>{3});
  EXPECT_EQ(stats_json()["services"]["echo"]["ejected"], 0);
}

TEST_F(DispatcherTest, WhenMostCircuitsAreOpenEveryWorkerServesAgain) {
  ready("w1", 4);
  ready("w2", 4);
  ready("w3", 4);
  for (const char* w : {"w1", "w2"}) {
    from_worker(
        {w, std::string(protocol::kTag), cmd(Command::kHeartbeat), R"({"circuit":"open"})"});
  }
  for (int i = 1; i <= 9; ++i) request("g1", i);
  // Two of three open: the upstream is likely down for all, and one worker must not take it all.
  EXPECT_FALSE(dispatched_to("w1").empty());
  EXPECT_FALSE(dispatched_to("w2").empty());
  EXPECT_FALSE(dispatched_to("w3").empty());
  EXPECT_EQ(stats_json()["services"]["echo"]["ejected"], 0);
}

TEST_F(DispatcherTest, StatusFieldsOfTheWrongTypeAreIgnored) {
  ready("w1", 4);
  for (const char* status : {R"({"circuit":1})", R"({"circuit":["open"]})", R"(["open"])",
                             R"("open")", R"({"circuit":null})"}) {
    from_worker({"w1", std::string(protocol::kTag), cmd(Command::kHeartbeat), status});
    const auto stats = stats_json()["services"]["echo"];
    EXPECT_EQ(stats["circuit"], "unknown") << status;
    EXPECT_EQ(stats["ejected"], 0) << status;
  }
  request("g1", 1);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
}

TEST_F(DispatcherTest, ServiceTableIsBounded) {
  for (int i = 0; i < 1100; ++i) request("g1", i, kSafe, 5'000, "svc-" + std::to_string(i));
  EXPECT_LE(stats_json()["services"].size(), 1024u);
}

TEST_F(DispatcherTest, StatsSurviveAWorkerNameThatIsNotUtf8) {
  // Found by the frames fuzzer: json::dump threw on the name, and the exception killed the broker.
  from_worker({"w1", std::string(protocol::kTag), cmd(Command::kReady), "echo", u32_bytes(4),
               std::string("\xff\xfe bad", 6)});
  from_gateway({"g1", std::string(protocol::kTag), cmd(Command::kStats), id_bytes(1)});
  ASSERT_FALSE(out_.gateway.empty());
  EXPECT_NE(out_.gateway.back().back().find("echo"), std::string::npos);
}

// --- Streams, credit and cancellation ---

using protocol::StreamPart;

TEST_F(DispatcherTest, StreamPartsAreForwardedInOrderUntouchedAndCreditIsFreedAtEndNotAtHead) {
  ready("w1", 1);
  request("g1", 1);
  request("g1", 2);  // waits for w1's only slot
  stream("w1", 1, StreamPart::kHead, "head-envelope");
  stream("w1", 1, StreamPart::kData, "chunk-1");
  stream("w1", 1, StreamPart::kData, "chunk-2");
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1}) << "a HEAD does not free the slot";
  EXPECT_EQ(counters().streams, 1u) << "counted once per request";
  stream("w1", 1, StreamPart::kEnd, "last", 30'000);

  const auto parts = streams_to("g1");
  ASSERT_EQ(parts.size(), 4u);
  const std::vector<std::pair<StreamPart, std::string>> expected = {
      {StreamPart::kHead, "head-envelope"},
      {StreamPart::kData, "chunk-1"},
      {StreamPart::kData, "chunk-2"},
      {StreamPart::kEnd, "last"}};
  for (std::size_t i = 0; i < parts.size(); ++i) {
    EXPECT_EQ(parts[i][1], protocol::kTag);
    EXPECT_EQ(parts[i][3], id_bytes(1));
    EXPECT_EQ(parts[i][4], part(expected[i].first)) << i;
    EXPECT_EQ(parts[i][6], expected[i].second) << i;
  }
  EXPECT_EQ(parts[3][5], u64_bytes(in_ms(30'000))) << "`until` is forwarded as sent";
  EXPECT_EQ(dispatched_to("w1"), (std::vector<int>{1, 2})) << "END freed the slot";
  EXPECT_EQ(counters().replies, 1u);
  EXPECT_EQ(counters().stream_aborts, 0u);
  const auto svc = stats_json()["services"]["echo"]["counters"];
  EXPECT_EQ(svc["streams"], 1);
  EXPECT_EQ(svc["replies"], 1);
}

TEST_F(DispatcherTest, AnAbortEndsTheStreamFreesTheSlotAndIsCounted) {
  ready("w1", 1);
  request("g1", 1);
  request("g1", 2);
  stream("w1", 1, StreamPart::kHead, "h");
  stream("w1", 1, StreamPart::kAbort, "upstream reset");
  const auto parts = streams_to("g1");
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1][4], part(StreamPart::kAbort));
  EXPECT_EQ(parts[1][6], "upstream reset");
  EXPECT_EQ(dispatched_to("w1"), (std::vector<int>{1, 2}));
  EXPECT_EQ(counters().stream_aborts, 1u);
  EXPECT_EQ(stats_json()["services"]["echo"]["counters"]["stream_aborts"], 1);
  stream("w1", 1, StreamPart::kData, "after the end");
  EXPECT_EQ(streams_to("g1").size(), 2u);
  EXPECT_EQ(counters().late_replies, 1u);
}

TEST_F(DispatcherTest, AStreamFromAWorkerNotHoldingTheIdIsDropped) {
  ready("w1", 1);
  ready("w2", 1);
  request("g1", 1);
  ASSERT_EQ(dispatched_to("w1"), std::vector<int>{1});
  stream("w2", 1, StreamPart::kHead, "forged");
  stream("w2", 1, StreamPart::kEnd);
  stream("w1", 9, StreamPart::kHead, "no such request");
  stream("stranger", 1, StreamPart::kHead, "unregistered");
  EXPECT_TRUE(streams_to("g1").empty());
  EXPECT_EQ(counters().late_replies, 4u);
  EXPECT_EQ(counters().streams, 0u);
  EXPECT_EQ(controls_to_worker("stranger", Command::kDisconnect).size(), 1u);
  EXPECT_EQ(dispatcher_->in_flight(), 1u) << "w2's END freed nothing";
  stream("w1", 1, StreamPart::kEnd, "real");
  ASSERT_EQ(streams_to("g1").size(), 1u);
  EXPECT_EQ(streams_to("g1")[0][6], "real");
}

TEST_F(DispatcherTest, AStreamOfALostWorkerEndsInAbortAndIsNeverRequeuedEvenIfRetrySafe) {
  ready("w1", 1);
  ready("w2", 1);
  request("g1", 1, kSafe);
  ASSERT_EQ(dispatched_to("w1"), std::vector<int>{1});
  stream("w1", 1, StreamPart::kHead, "h");
  worker_control("w1", Command::kDisconnect);

  EXPECT_TRUE(dispatched_to("w2").empty()) << "the client may have read the head already";
  EXPECT_TRUE(replies_to("g1").empty()) << "no WORKER_LOST reply after a head";
  const auto parts = streams_to("g1");
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1][3], id_bytes(1));
  EXPECT_EQ(parts[1][4], part(StreamPart::kAbort));
  EXPECT_EQ(parts[1][5], u64_bytes(0));
  EXPECT_NE(parts[1][6].find("w1-name"), std::string::npos) << parts[1][6];
  EXPECT_LE(parts[1][6].size(), protocol::kMaxAbortReason);
  EXPECT_EQ(counters().stream_aborts, 1u);
  EXPECT_EQ(counters().requeued, 0u);
  EXPECT_EQ(counters().worker_lost_replies, 0u);
  EXPECT_EQ(dispatcher_->in_flight(), 0u);
}

TEST_F(DispatcherTest, ALongWorkerNameStillGivesAnAbortReasonWithinTheLimit) {
  from_worker({"w1", std::string(protocol::kTag), cmd(Command::kReady), "echo", u32_bytes(1),
               std::string(protocol::kMaxWorkerIdSize, 'n')});
  request("g1", 1);
  stream("w1", 1, StreamPart::kHead, "h");
  for (int i = 0; i < 16; ++i) from_worker({"w1", "garbage"});  // forgotten for garbage
  const auto parts = streams_to("g1");
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1][4], part(StreamPart::kAbort));
  EXPECT_LE(parts[1][6].size(), protocol::kMaxAbortReason);
}

TEST_F(DispatcherTest, ACancelledQueuedRequestIsNeverDispatchedWhenAWorkerFreesUp) {
  ready("w1", 1);
  request("g1", 1);
  request("g1", 2);
  cancel("g1", 2);
  EXPECT_EQ(counters().cancelled_queued, 1u);
  EXPECT_EQ(stats_json()["services"]["echo"]["queue_depth"], 0);
  reply("w1", 1);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1});
  EXPECT_EQ(dispatcher_->in_flight(), 0u);
  cancel("g1", 2);  // gone already: ignored
  cancel("g1", 1);
  EXPECT_EQ(counters().cancelled_queued, 1u);
  EXPECT_EQ(counters().cancelled_in_flight, 0u);
  EXPECT_EQ(stats_json()["services"]["echo"]["counters"]["cancelled_queued"], 1);
  request("g1", 3);
  EXPECT_EQ(dispatched_to("w1"), (std::vector<int>{1, 3}));
}

TEST_F(DispatcherTest, ACancelInFlightReachesTheWorkerItsReplyIsDroppedAndTheSlotFreed) {
  ready("w1", 1);
  request("g1", 1);
  request("g1", 2);
  cancel("g1", 1);
  const auto cancels = controls_to_worker("w1", Command::kCancel);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0],
            (Message{"w1", std::string(protocol::kTag), cmd(Command::kCancel), id_bytes(1)}));
  cancel("g1", 1);  // a second one changes nothing
  EXPECT_EQ(controls_to_worker("w1", Command::kCancel).size(), 1u);
  EXPECT_EQ(counters().cancelled_in_flight, 1u);
  EXPECT_EQ(stats_json()["services"]["echo"]["counters"]["cancelled_in_flight"], 1);
  EXPECT_EQ(dispatched_to("w1"), std::vector<int>{1}) << "the worker may still be running it";

  reply("w1", 1, "too late");
  EXPECT_TRUE(replies_to("g1").empty());
  EXPECT_EQ(counters().replies, 0u);
  EXPECT_EQ(dispatched_to("w1"), (std::vector<int>{1, 2})) << "the final reply freed the slot";
}

TEST_F(DispatcherTest, ACancelledStreamForwardsNothingMoreAndItsAbortFreesTheSlot) {
  ready("w1", 1);
  request("g1", 1);
  request("g1", 2);
  stream("w1", 1, StreamPart::kHead, "h");
  cancel("g1", 1);
  credit("g1", 1, 4096);  // credit for a cancelled stream goes nowhere
  stream("w1", 1, StreamPart::kData, "more");
  stream("w1", 1, StreamPart::kAbort, "cancelled");
  EXPECT_EQ(streams_to("g1").size(), 1u) << "only the head, sent before the CANCEL";
  EXPECT_TRUE(controls_to_worker("w1", Command::kCredit).empty());
  EXPECT_EQ(counters().stream_aborts, 0u) << "nobody saw this one truncated";
  EXPECT_EQ(dispatched_to("w1"), (std::vector<int>{1, 2}));
}

TEST_F(DispatcherTest, CreditGoesToTheWorkerHoldingTheStreamOnlyFromItsGateway) {
  ready("w1", 1);
  request("g1", 1);
  request("g1", 2);  // queued
  stream("w1", 1, StreamPart::kHead, "h");
  credit("g1", 1, 65'536);
  const auto credits = controls_to_worker("w1", Command::kCredit);
  ASSERT_EQ(credits.size(), 1u);
  EXPECT_EQ(credits[0], (Message{"w1", std::string(protocol::kTag), cmd(Command::kCredit),
                                 id_bytes(1), u32_bytes(65'536)}));

  credit("g2", 1, 1'000);
  EXPECT_EQ(counters().foreign_ids, 1u);
  cancel("g2", 1);
  EXPECT_EQ(counters().foreign_cancels, 1u);
  cancel("g2", 2);  // a queued one is no stranger's to cancel either
  EXPECT_EQ(counters().foreign_cancels, 2u);
  EXPECT_EQ(controls_to_worker("w1", Command::kCredit).size(), 1u);
  EXPECT_TRUE(controls_to_worker("w1", Command::kCancel).empty());

  credit("g1", 2, 1'000);  // queued: nobody to credit
  credit("g1", 9, 1'000);  // unknown
  EXPECT_EQ(controls_to_worker("w1", Command::kCredit).size(), 1u);
  EXPECT_EQ(counters().foreign_ids, 1u);
  EXPECT_EQ(counters().malformed, 0u);

  stream("w1", 1, StreamPart::kEnd);
  EXPECT_EQ(dispatched_to("w1"), (std::vector<int>{1, 2})) << "the stranger cancelled nothing";
}

TEST_F(DispatcherTest, TheSameAuthenticatedGatewayOverAnotherConnectionMayCreditAndCancel) {
  ready("w1", 1);
  request_as("g1", "key-a", 1);
  credit("g2", 1, 100, "key-a");
  EXPECT_EQ(controls_to_worker("w1", Command::kCredit).size(), 1u);
  credit("g3", 1, 100, "key-b");
  cancel("g3", 1, "key-b");
  EXPECT_EQ(counters().foreign_ids, 1u);
  EXPECT_EQ(counters().foreign_cancels, 1u);
  cancel("g2", 1, "key-a");
  EXPECT_EQ(controls_to_worker("w1", Command::kCancel).size(), 1u);
}

TEST_F(DispatcherTest, ALostGatewaysRequestsAtWorkersAreCancelled) {
  ready("w1", 2);
  request("g1", 1, kSafe, 60'000);
  request("g2", 2, kSafe, 60'000);
  request("g1", 3, kSafe, 60'000);  // queued
  stream("w1", 1, StreamPart::kHead, "h");
  pass(1'250ms, {"w1"}, {"g2"});  // g1 silent past its liveness
  const auto cancels = controls_to_worker("w1", Command::kCancel);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0][3], id_bytes(1));
  EXPECT_EQ(counters().gateway_gone_drops, 2u) << "the streaming one and the queued one";
  stream("w1", 1, StreamPart::kData, "for nobody");
  EXPECT_EQ(streams_to("g1").size(), 1u);
  stream("w1", 1, StreamPart::kAbort, "cancelled");
  EXPECT_EQ(dispatcher_->in_flight(), 1u);
  EXPECT_TRUE(dispatched_to("w1") == (std::vector<int>{1, 2})) << "g1's queued one never runs";
}

TEST_F(DispatcherTest, AGatewaySayingDisconnectHasItsRequestsAtWorkersCancelled) {
  ready("w1", 2);
  request("g1", 1);
  request("g2", 2);
  from_gateway({"g1", std::string(protocol::kTag), cmd(Command::kDisconnect)});
  const auto cancels = controls_to_worker("w1", Command::kCancel);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0][3], id_bytes(1));
  reply("w1", 1);
  reply("w1", 2);
  EXPECT_TRUE(replies_to("g1").empty());
  EXPECT_EQ(replies_to("g2").size(), 1u);
  EXPECT_EQ(dispatcher_->in_flight(), 0u);
}

TEST_F(DispatcherTest, ARequestCancelledForItsLostGatewayIsRefusedWhenThatGatewayResendsIt) {
  ready("w1", 1);
  request_as("g1", "key-a", 1);
  from_gateway({"g1", std::string(protocol::kTag), cmd(Command::kDisconnect)});
  request_as("g1-again", "key-a", 1);
  ASSERT_EQ(replies_to("g1-again").size(), 1u);
  EXPECT_EQ(decode_reply(replies_to("g1-again")[0]).error->code, "BROKER_UNAVAILABLE");
  reply("w1", 1, "cancelled work");
  EXPECT_EQ(replies_to("g1-again").size(), 1u) << "the cancelled reply is not forwarded";
}

TEST_F(DispatcherTest, APartThatCannotReachTheGatewayEndsTheStreamAndStopsTheWorker) {
  ready("w1", 1);
  request("g1", 1);
  stream("w1", 1, StreamPart::kHead, "h");
  out_.dead_gateways.insert("g1");
  stream("w1", 1, StreamPart::kData, "lost");
  EXPECT_EQ(controls_to_worker("w1", Command::kCancel).size(), 1u);
  EXPECT_EQ(counters().stream_aborts, 0u) << "the ABORT did not reach the gateway either";
  EXPECT_EQ(counters().unroutable, 2u) << "the part and the ABORT";
  out_.dead_gateways.clear();
  stream("w1", 1, StreamPart::kData, "after the hole");
  stream("w1", 1, StreamPart::kEnd, "looks complete");
  EXPECT_EQ(streams_to("g1").size(), 1u) << "nothing after the hole may make it look complete";
  EXPECT_EQ(dispatcher_->in_flight(), 0u);
}

TEST_F(DispatcherTest, MalformedStreamCreditAndCancelAreCountedAndChangeNothing) {
  ready("w1", 1);
  request("g1", 1);
  const std::string tag(protocol::kTag);
  const std::string until = u64_bytes(in_ms(60'000));
  const std::string head = part(StreamPart::kHead);
  const std::vector<Message> worker_fields = {
      {"w1", tag, cmd(Command::kStream), id_bytes(1), std::string(1, '\0'), until, "p"},
      {"w1", tag, cmd(Command::kStream), id_bytes(1), std::string(1, '\5'), until, "p"},
      {"w1", tag, cmd(Command::kStream), id_bytes(1), "\x01\x01", until, "p"},
      {"w1", tag, cmd(Command::kStream), id_bytes(1), head, "1234567", "p"},
      {"w1", tag, cmd(Command::kStream), id_bytes(1).substr(1), head, until, "p"},
      {"w1", tag, cmd(Command::kStream), id_bytes(1), part(StreamPart::kAbort), until,
       std::string(protocol::kMaxAbortReason + 1, 'x')},
  };
  const std::vector<Message> worker_shapes = {
      {"w1", tag, cmd(Command::kStream), id_bytes(1), head, until},
      {"w1", tag, cmd(Command::kStream), id_bytes(1), head, until, "p", "extra"},
  };
  const std::vector<Message> worker_misrouted = {
      {"w1", tag, cmd(Command::kCredit), id_bytes(1), u32_bytes(10)},
      {"w1", tag, cmd(Command::kCancel), id_bytes(1)},
      {"stranger", tag, cmd(Command::kCancel), id_bytes(1)},
  };
  const std::vector<Message> gateway_fields = {
      {"g1", tag, cmd(Command::kCredit), id_bytes(1), u32_bytes(0)},
      {"g1", tag, cmd(Command::kCredit), id_bytes(1), u32_bytes(protocol::kMaxCredit + 1)},
      {"g1", tag, cmd(Command::kCredit), id_bytes(1), "\x00\x01"},
      {"g1", tag, cmd(Command::kCredit), id_bytes(1).substr(2), u32_bytes(10)},
      {"g1", tag, cmd(Command::kCancel), "short"},
  };
  const std::vector<Message> gateway_shapes = {
      {"g1", tag, cmd(Command::kCredit), id_bytes(1)},
      {"g1", tag, cmd(Command::kCancel), id_bytes(1), "extra"},
      {"g1", tag, cmd(Command::kCancel)},
  };
  const std::vector<Message> gateway_misrouted = {
      {"g1", tag, cmd(Command::kStream), id_bytes(1), head, until, "p"},
  };
  for (const auto* list : {&worker_fields, &worker_shapes, &worker_misrouted}) {
    for (const auto& m : *list) from_worker(m);
  }
  for (const auto* list : {&gateway_fields, &gateway_shapes, &gateway_misrouted}) {
    for (const auto& m : *list) from_gateway(m);
  }
  EXPECT_EQ(counters().malformed_field, worker_fields.size() + gateway_fields.size());
  EXPECT_EQ(counters().malformed_shape, worker_shapes.size() + gateway_shapes.size());
  EXPECT_EQ(counters().malformed_misrouted, worker_misrouted.size() + gateway_misrouted.size());
  EXPECT_EQ(counters().malformed, worker_fields.size() + gateway_fields.size() +
                                      worker_shapes.size() + gateway_shapes.size() +
                                      worker_misrouted.size() + gateway_misrouted.size());
  EXPECT_TRUE(streams_to("g1").empty());
  EXPECT_TRUE(controls_to_worker("w1", Command::kCredit).empty());
  EXPECT_TRUE(controls_to_worker("w1", Command::kCancel).empty());
  EXPECT_EQ(counters().streams, 0u);
  EXPECT_EQ(dispatcher_->in_flight(), 1u);
  // Each of w1's 10 malformed messages was a strike; 6 more and it is forgotten.
  for (int i = 0; i < 5; ++i) from_worker(worker_shapes[0]);
  EXPECT_EQ(counters().peers_disconnected, 0u);
  from_worker(worker_shapes[0]);
  EXPECT_EQ(counters().peers_disconnected, 1u);
}

TEST_F(DispatcherTest, AStreamIsHeldUntilItsUntilNotTheHeadsDeadline) {
  ready("w1", 1);
  request("g1", 1, kUnsafe, 1'000);
  stream("w1", 1, StreamPart::kHead, "h", 60'000);
  pass(1'000ms + options_.orphan_grace + 1'000ms, {"w1"}, {"g1"});
  EXPECT_EQ(counters().orphans, 0u) << "the stream is within its `until`";
  EXPECT_EQ(dispatcher_->in_flight(), 1u);
  pass(60'000ms, {"w1"}, {"g1"});
  EXPECT_EQ(counters().orphans, 1u) << "past `until` + grace it is forgotten";
  EXPECT_EQ(dispatcher_->in_flight(), 0u);
}

TEST_F(DispatcherTest, DrainTimeoutEndsAStreamWithAbortNotAReply) {
  ready("w1", 2);
  request("g1", 1);
  request("g1", 2);
  request("g1", 3);  // queued
  stream("w1", 1, StreamPart::kHead, "h");
  cancel("g1", 2);
  dispatcher_->begin_shutdown(now_);
  dispatcher_->fail_in_flight("broker stopped");
  const auto parts = streams_to("g1");
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1][4], part(StreamPart::kAbort));
  EXPECT_EQ(parts[1][6].rfind("broker shutting down", 0), 0u) << parts[1][6];
  ASSERT_EQ(replies_to("g1").size(), 1u) << "only the queued one, 503; the cancelled one: none";
  EXPECT_EQ(replies_to("g1")[0][3], id_bytes(3));
  EXPECT_EQ(counters().stream_aborts, 1u);
  EXPECT_EQ(dispatcher_->in_flight(), 0u);
}

TEST_F(DispatcherTest, StatsCountStreamsAndCancellationBrokerWideAndPerService) {
  const auto stats = stats_json();
  for (const char* name :
       {"streams", "stream_aborts", "cancelled_queued", "cancelled_in_flight", "foreign_cancels"}) {
    EXPECT_TRUE(stats["counters"].contains(name)) << name;
  }
  ready("w1", 1);
  const auto svc = stats_json()["services"]["echo"]["counters"];
  for (const char* name : {"streams", "stream_aborts", "cancelled_queued", "cancelled_in_flight"}) {
    EXPECT_TRUE(svc.contains(name)) << name;
  }
  EXPECT_FALSE(svc.contains("foreign_cancels"));
}

TEST_F(DispatcherTest, AStreamAbortIsCountedWhenItReachesTheGatewayAfterARefusedPart) {
  ready("w1", 1);
  request("g1", 1);
  stream("w1", 1, StreamPart::kHead, "h");
  out_.refuse_gateway_sends = 1;  // the part, not the ABORT after it
  stream("w1", 1, StreamPart::kData, "lost");
  const auto parts = streams_to("g1");
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1][4], part(StreamPart::kAbort));
  EXPECT_EQ(counters().stream_aborts, 1u);
  EXPECT_EQ(stats_json()["services"]["echo"]["counters"]["stream_aborts"], 1);
}

TEST_F(DispatcherTest, AStreamAbortForALostWorkerIsNotCountedWhenTheGatewayRefusesIt) {
  ready("w1", 1);
  request("g1", 1);
  stream("w1", 1, StreamPart::kHead, "h");
  out_.dead_gateways.insert("g1");
  worker_control("w1", Command::kDisconnect);
  EXPECT_EQ(counters().stream_aborts, 0u);
  EXPECT_EQ(counters().unroutable, 1u);
  EXPECT_EQ(dispatcher_->in_flight(), 0u);
}

TEST_F(DispatcherTest, AStreamPartForAnIdTheWorkerDoesNotHoldIsAnsweredWithCancelUnlessFinal) {
  ready("w1", 1);
  ready("w2", 1);
  request("g1", 1);
  ASSERT_EQ(dispatched_to("w1"), std::vector<int>{1});
  stream("w2", 1, StreamPart::kHead, "zombie");
  stream("w2", 7, StreamPart::kData, "zombie");
  stream("w2", 8, StreamPart::kEnd);
  stream("w2", 9, StreamPart::kAbort, "done");
  const auto cancels = controls_to_worker("w2", Command::kCancel);
  ASSERT_EQ(cancels.size(), 2u) << "END and ABORT need no answer";
  EXPECT_EQ(cancels[0][3], id_bytes(1));
  EXPECT_EQ(cancels[1][3], id_bytes(7));
  EXPECT_TRUE(controls_to_worker("w1", Command::kCancel).empty()) << "w1 holds 1: it goes on";
  EXPECT_EQ(counters().late_replies, 4u);
  EXPECT_TRUE(streams_to("g1").empty());
}

TEST_F(DispatcherTest, AStreamFromAnUnknownWorkerIsCancelledAndItIsToldToRegisterAgain) {
  stream("stranger", 1, StreamPart::kHead, "h");
  stream("stranger", 2, StreamPart::kData, "d");
  stream("stranger", 3, StreamPart::kEnd);
  reply("stranger", 4);
  const auto cancels = controls_to_worker("stranger", Command::kCancel);
  ASSERT_EQ(cancels.size(), 2u) << "a final END or REPLY needs no CANCEL";
  EXPECT_EQ(cancels[0][3], id_bytes(1));
  EXPECT_EQ(cancels[1][3], id_bytes(2));
  EXPECT_EQ(controls_to_worker("stranger", Command::kDisconnect).size(), 4u);
  EXPECT_EQ(counters().late_replies, 4u);
}

TEST_F(DispatcherTest, AnOrphanForgottenPastItsDeadlineIsCancelledAtItsWorker) {
  ready("w1", 2);
  request("g1", 1, kUnsafe, 1'000);
  request("g1", 2, kUnsafe, 60'000);
  pass(1'000ms + options_.orphan_grace + 250ms, {"w1"}, {"g1"});
  ASSERT_EQ(counters().orphans, 1u);
  const auto cancels = controls_to_worker("w1", Command::kCancel);
  ASSERT_EQ(cancels.size(), 1u) << "it may still be streaming for nobody";
  EXPECT_EQ(cancels[0][3], id_bytes(1));
}

TEST_F(DispatcherTest, DrainTimeoutCancelsEveryRequestStillAtAWorker) {
  ready("w1", 2);
  request("g1", 1);
  request("g1", 2);
  request("g1", 3);  // queued: never at a worker
  stream("w1", 1, StreamPart::kHead, "h");
  dispatcher_->begin_shutdown(now_);
  dispatcher_->fail_in_flight("broker stopped");
  std::set<std::string> cancelled;
  for (const auto& m : controls_to_worker("w1", Command::kCancel)) cancelled.insert(m[3]);
  EXPECT_EQ(cancelled, (std::set<std::string>{id_bytes(1), id_bytes(2)}));
}

TEST_F(DispatcherTest, AGatewaySayingDisconnectHasItsQueuedRequestsDroppedAtOnce) {
  ready("w1", 1);
  request("g1", 1);
  request("g1", 2);  // queued
  request("g2", 3);  // queued
  from_gateway({"g1", std::string(protocol::kTag), cmd(Command::kDisconnect)});
  EXPECT_EQ(counters().gateway_gone_drops, 2u) << "the one at w1 and the queued one";
  reply("w1", 1);  // frees the credit before any tick
  EXPECT_EQ(dispatched_to("w1"), (std::vector<int>{1, 3})) << "g1's queued one never runs";
  EXPECT_TRUE(replies_to("g1").empty());
}

}  // namespace
}  // namespace courier::broker
