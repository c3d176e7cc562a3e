// One request through the broker as a coroutine, against a scripted broker: the reply comes back
// on the caller's executor; with no broker the client's own 503; past its patience, a timeout and
// a cancelled request whose late reply is counted, not delivered; a client that closes its
// connection while waiting is noticed and its request cancelled at the broker; a stream's parts
// follow its HEAD through the same call.
#include "gateway/broker_call.hpp"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <future>
#include <thread>

#include "tests/unit/gateway/scripted_broker.hpp"

namespace courier::gateway {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class BrokerCallTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { spdlog::set_level(spdlog::level::warn); }

  zmq::context_t context_{1};

  static BrokerClientOptions options(const ScriptedBroker& broker) {
    BrokerClientOptions o;
    o.endpoints = {broker.endpoint()};
    o.heartbeat_interval = 20ms;
    o.stats_interval = 20ms;
    o.liveness = 50;
    return o;
  }

  // Pumps the broker until `done` holds or 5 s pass.
  static bool pump_until(ScriptedBroker& broker, const std::function<bool()>& done) {
    const auto until = Clock::now() + 5s;
    while (!done()) {
      if (Clock::now() > until) return false;
      broker.pump();
    }
    return true;
  }

  static protocol::RequestHeader header() {
    protocol::RequestHeader h;
    h.service = "svc";
    h.id = {9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 1};
    h.deadline_ms = protocol::unix_ms_now() + 60'000;
    h.flags = protocol::kFlagRetrySafe;
    return h;
  }

  static zmq::message_t envelope(const protocol::RequestHeader& h) {
    RequestEnvelope e;
    e.id = h.id;
    e.service = "svc";
    e.method = "GET";
    e.target = "/x";
    e.deadline_ms = h.deadline_ms;
    return encode(e);
  }

  // What call_broker woke for, and the first part when it came.
  struct CallOutcome {
    BrokerCall::Wake wake = BrokerCall::Wake::kPart;
    std::optional<BrokerResult> result;
  };
  // Runs call_broker on its own io_context thread, so the test thread can drive the broker. With
  // `watch`, the call watches the server side of a loopback connection whose client end the
  // test holds.
  struct Call {
    asio::io_context io;
    std::promise<CallOutcome> promise;
    std::future<CallOutcome> future = promise.get_future();
    std::optional<tcp::socket> server_side;
    std::optional<tcp::socket> client_side;
    std::unique_ptr<BrokerCall> call;
    std::promise<std::vector<BrokerResult>> rest;  // parts after a HEAD, up to the final one
    std::thread thread;
    ~Call() {
      if (thread.joinable()) thread.join();
    }
  };
  static void connect(Call& call) {
    tcp::acceptor acceptor(call.io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    call.client_side.emplace(call.io);
    call.client_side->connect(acceptor.local_endpoint());
    call.server_side.emplace(acceptor.accept());
  }
  static void start(Call& call, BrokerClient& client, std::chrono::milliseconds patience,
                    bool watch = false) {
    if (watch) connect(call);
    call.call = std::make_unique<BrokerCall>(client, call.io.get_executor(),
                                             watch ? &*call.server_side : nullptr);
    asio::co_spawn(
        call.io,
        [&call, patience]() -> asio::awaitable<void> {
          const auto h = header();
          const auto wake = co_await call_broker(*call.call, h, envelope(h), patience);
          CallOutcome outcome{wake, std::nullopt};
          if (wake == BrokerCall::Wake::kPart) outcome.result = call.call->pop();
          const bool head = outcome.result && outcome.result->kind == BrokerResult::Kind::kHead;
          call.promise.set_value(std::move(outcome));
          if (!head) co_return;
          std::vector<BrokerResult> rest;
          while (rest.empty() || !rest.back().final()) {
            const auto wake = co_await call.call->wait(Clock::now() + 5s);
            if (wake != BrokerCall::Wake::kPart) break;
            rest.push_back(call.call->pop());
          }
          call.rest.set_value(std::move(rest));
        },
        [](std::exception_ptr e) {
          if (e) std::rethrow_exception(e);
        });
    call.thread = std::thread([&call] { call.io.run(); });
  }
  static bool ready(const Call& call) {
    return call.future.wait_for(0s) == std::future_status::ready;
  }
};

TEST_F(BrokerCallTest, WithNoBrokerConnectedTheClientsOwn503ComesBack) {
  BrokerClientOptions o;
  o.endpoints = {"tcp://127.0.0.1:1"};
  BrokerClient client(context_, o);
  client.start();
  Call call;
  start(call, client, 5s);
  ASSERT_EQ(call.future.wait_for(5s), std::future_status::ready);
  auto outcome = call.future.get();
  ASSERT_TRUE(outcome.result);
  ASSERT_TRUE(outcome.result->local);
  EXPECT_EQ(outcome.result->local->status, 503);
}

TEST_F(BrokerCallTest, TheReplyComesBackToTheCaller) {
  ScriptedBroker broker(context_, kServes);
  BrokerClient client(context_, options(broker));
  client.start();
  ASSERT_TRUE(pump_until(broker, [&] { return client.connected(); }));
  Call call;
  start(call, client, 5s);
  ASSERT_TRUE(pump_until(broker, [&] { return broker.requests.size() == 1; }));
  broker.reply(broker.requests[0], "ok");
  ASSERT_TRUE(pump_until(broker, [&] { return ready(call); }));
  auto outcome = call.future.get();
  ASSERT_TRUE(outcome.result);
  auto& result = outcome.result;
  ASSERT_FALSE(result->local);
  ReplyEnvelope reply;
  ASSERT_FALSE(decode(protocol::view(result->envelope), reply));
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "ok");
}

TEST_F(BrokerCallTest, PastItsPatienceTheRequestIsCancelledAndALateReplyOnlyCounted) {
  ScriptedBroker broker(context_, kServes);
  BrokerClient client(context_, options(broker));
  client.start();
  ASSERT_TRUE(pump_until(broker, [&] { return client.connected(); }));
  Call call;
  start(call, client, 50ms);
  ASSERT_TRUE(pump_until(broker, [&] { return ready(call) && broker.requests.size() == 1; }));
  const auto outcome = call.future.get();
  EXPECT_EQ(outcome.wake, BrokerCall::Wake::kTimeout);
  EXPECT_FALSE(outcome.result);
  EXPECT_EQ(client.pending(), 0u);
  ASSERT_TRUE(pump_until(broker, [&] { return broker.cancels.size() == 1; }));
  ASSERT_EQ(broker.requests.size(), 1u);
  broker.reply(broker.requests[0], "too late");
  EXPECT_TRUE(pump_until(broker, [&] { return client.late_replies() == 1; }));
}

TEST_F(BrokerCallTest, AClientThatClosesWhileWaitingIsGoneAndTheRequestCancelled) {
  ScriptedBroker broker(context_, kServes);
  BrokerClient client(context_, options(broker));
  client.start();
  ASSERT_TRUE(pump_until(broker, [&] { return client.connected(); }));
  Call call;
  start(call, client, 10s, /*watch=*/true);
  ASSERT_TRUE(pump_until(broker, [&] { return broker.requests.size() == 1; }));
  EXPECT_FALSE(ready(call));
  // Closed from the io thread: the sockets belong to it.
  asio::post(call.io, [&call] { call.client_side->close(); });
  ASSERT_TRUE(pump_until(broker, [&] { return ready(call); }));
  const auto outcome = call.future.get();
  EXPECT_EQ(outcome.wake, BrokerCall::Wake::kClientGone);
  ASSERT_TRUE(pump_until(broker, [&] { return broker.cancels.size() == 1; }));
  EXPECT_EQ(broker.cancels[0].id, broker.requests[0].id);
  EXPECT_EQ(client.pending(), 0u);
}

TEST_F(BrokerCallTest, BytesFromTheClientWhileWaitingAreNotADisconnect) {
  ScriptedBroker broker(context_, kServes);
  BrokerClient client(context_, options(broker));
  client.start();
  ASSERT_TRUE(pump_until(broker, [&] { return client.connected(); }));
  Call call;
  start(call, client, 10s, /*watch=*/true);
  ASSERT_TRUE(pump_until(broker, [&] { return broker.requests.size() == 1; }));
  asio::post(call.io, [&call] {
    beast::error_code ec;
    call.client_side->write_some(asio::buffer(std::string_view("GET /next HTTP/1.1\r\n")), ec);
  });
  broker.pump(100ms);
  EXPECT_FALSE(ready(call));
  broker.reply(broker.requests[0], "ok");
  ASSERT_TRUE(pump_until(broker, [&] { return ready(call); }));
  const auto outcome = call.future.get();
  EXPECT_EQ(outcome.wake, BrokerCall::Wake::kPart);
  EXPECT_TRUE(broker.cancels.empty());
}

TEST_F(BrokerCallTest, AStreamsPartsFollowItsHeadThroughTheSameCall) {
  ScriptedBroker broker(context_, kServes);
  BrokerClient client(context_, options(broker));
  client.start();
  ASSERT_TRUE(pump_until(broker, [&] { return client.connected(); }));
  Call call;
  auto rest = call.rest.get_future();
  start(call, client, 5s);
  ASSERT_TRUE(pump_until(broker, [&] { return broker.requests.size() == 1; }));
  const auto r = broker.requests[0];
  broker.head(r);
  broker.stream(r, protocol::StreamPart::kData, "a");
  broker.stream(r, protocol::StreamPart::kEnd, "b");
  ASSERT_TRUE(pump_until(broker, [&] { return rest.wait_for(0s) == std::future_status::ready; }));
  EXPECT_EQ(call.future.get().result->kind, BrokerResult::Kind::kHead);
  const auto parts = rest.get();
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].kind, BrokerResult::Kind::kData);
  EXPECT_EQ(protocol::view(parts[0].envelope), "a");
  EXPECT_EQ(parts[1].kind, BrokerResult::Kind::kEnd);
  EXPECT_EQ(protocol::view(parts[1].envelope), "b");
  EXPECT_EQ(client.pending(), 0u);
}

}  // namespace
}  // namespace courier::gateway
