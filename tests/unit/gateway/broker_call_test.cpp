// One request through the broker as a coroutine, against a scripted broker: the reply comes back
// on the caller's executor; with no broker the client's own 503; past its patience, nullopt and a
// cancelled request whose late reply is counted, not delivered.
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

  // Runs call_broker on its own io_context thread, so the test thread can drive the broker.
  struct Call {
    asio::io_context io;
    std::promise<std::optional<BrokerResult>> promise;
    std::future<std::optional<BrokerResult>> future = promise.get_future();
    std::thread thread;
    ~Call() {
      if (thread.joinable()) thread.join();
    }
  };
  static void start(Call& call, BrokerClient& client, std::chrono::milliseconds patience) {
    asio::co_spawn(
        call.io,
        [&call, &client, patience]() -> asio::awaitable<void> {
          const auto h = header();
          call.promise.set_value(co_await call_broker(client, h, envelope(h), patience));
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
  auto result = call.future.get();
  ASSERT_TRUE(result);
  ASSERT_TRUE(result->local);
  EXPECT_EQ(result->local->status, 503);
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
  auto result = call.future.get();
  ASSERT_TRUE(result);
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
  EXPECT_FALSE(call.future.get());
  EXPECT_EQ(client.pending(), 0u);
  ASSERT_EQ(broker.requests.size(), 1u);
  broker.reply(broker.requests[0], "too late");
  EXPECT_TRUE(pump_until(broker, [&] { return client.late_replies() == 1; }));
}

}  // namespace
}  // namespace courier::gateway
