// The gateway's broker link against scripted brokers (ROUTER sockets on loopback, driven by the
// test thread): spreading requests over several brokers, preferring one with workers, failing
// over a lost broker's retry-safe requests and answering the others 503 at once; streamed
// replies reaching one callback in order, protocol errors and broker loss ending them with an
// ABORT, CREDIT and CANCEL going out through the broker that carries the request.
#include "gateway/broker_client.hpp"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/errors.hpp"
#include "tests/unit/gateway/scripted_broker.hpp"

namespace courier::gateway {
namespace {

using namespace std::chrono_literals;
using protocol::Command;
using Clock = std::chrono::steady_clock;

struct Outcome {
  std::promise<BrokerResult> promise;
  std::future<BrokerResult> future = promise.get_future();
};

// Every part a streamed request's callback gets, in order (the link thread appends).
struct Parts {
  std::mutex mutex;
  std::vector<std::pair<BrokerResult::Kind, std::string>> got;
  std::size_t size() {
    std::lock_guard lock(mutex);
    return got.size();
  }
  std::vector<std::pair<BrokerResult::Kind, std::string>> snapshot() {
    std::lock_guard lock(mutex);
    return got;
  }
};

class BrokerClientTest : public ::testing::Test {
 protected:
  // spdlog's registry is created on first use; create it here, before the link threads race to
  // (spdlog is not TSan-instrumented, so its lazy static looks like a race).
  static void SetUpTestSuite() { spdlog::set_level(spdlog::level::warn); }

  zmq::context_t context_{1};

  BrokerClientOptions options(const std::vector<ScriptedBroker*>& brokers) {
    BrokerClientOptions o;
    o.endpoints.clear();
    for (auto* b : brokers) o.endpoints.push_back(b->endpoint());
    o.heartbeat_interval = 20ms;
    o.stats_interval = 20ms;
    o.liveness = 50;  // loss comes from the disconnect event in these tests, not silence
    return o;
  }

  // Pumps the brokers until `done` holds or 5 s pass.
  static bool pump_until(const std::vector<ScriptedBroker*>& brokers,
                         const std::function<bool()>& done) {
    const auto until = Clock::now() + 5s;
    while (!done()) {
      if (Clock::now() > until) return false;
      for (auto* b : brokers) b->pump();
    }
    return true;
  }

  // Until the client sees every broker connected with fresh stats.
  static bool settle(BrokerClient& client, const std::vector<ScriptedBroker*>& brokers) {
    return pump_until(brokers, [&] {
      const auto all = client.brokers();
      return std::all_of(all.begin(), all.end(),
                         [](const auto& b) { return b.connected && b.stats != nullptr; });
    });
  }

  static protocol::CorrelationId id_for(std::uint64_t n) {
    protocol::CorrelationId id{};
    for (int i = 0; i < 8; ++i) id[15 - i] = static_cast<std::uint8_t>(n >> (8 * i));
    return id;
  }

  std::uint64_t next_id_ = 1;
  std::shared_ptr<Parts> submit_stream(BrokerClient& client) {
    auto parts = std::make_shared<Parts>();
    submit_with(client, true, [parts](BrokerResult r) {
      std::string payload(protocol::view(r.envelope));
      std::lock_guard lock(parts->mutex);
      parts->got.emplace_back(r.kind, std::move(payload));
    });
    return parts;
  }
  std::shared_ptr<Outcome> submit(BrokerClient& client, bool retry_safe) {
    auto outcome = std::make_shared<Outcome>();
    submit_with(client, retry_safe,
                [outcome](BrokerResult r) { outcome->promise.set_value(std::move(r)); });
    return outcome;
  }
  void submit_with(BrokerClient& client, bool retry_safe, BrokerClient::Callback done) {
    protocol::RequestHeader header;
    header.service = "svc";
    header.id = id_for(next_id_++);
    header.deadline_ms =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       (std::chrono::system_clock::now() + 60s).time_since_epoch())
                                       .count());
    header.flags = retry_safe ? protocol::kFlagRetrySafe : 0;
    RequestEnvelope envelope;
    envelope.id = header.id;
    envelope.service = "svc";
    envelope.method = retry_safe ? "GET" : "POST";
    envelope.target = "/x";
    envelope.deadline_ms = header.deadline_ms;
    client.submit(header, encode(envelope), std::move(done));
  }
};

bool ready(const std::shared_ptr<Outcome>& o) {
  return o->future.wait_for(0s) == std::future_status::ready;
}

TEST_F(BrokerClientTest, WithNoBrokerConnectedARequestIsAnswered503AtOnce) {
  BrokerClientOptions o;
  o.endpoints = {"tcp://127.0.0.1:1"};
  BrokerClient client(context_, o);
  client.start();
  auto outcome = submit(client, true);
  ASSERT_TRUE(ready(outcome));
  auto r = outcome->future.get();
  ASSERT_TRUE(r.local);
  EXPECT_EQ(r.local->status, 503);
  EXPECT_EQ(r.local->error->code, "BROKER_UNAVAILABLE");
}

TEST_F(BrokerClientTest, RequestsSpreadEvenlyOverConnectedBrokers) {
  ScriptedBroker a(context_, kServes), b(context_, kServes);
  BrokerClient client(context_, options({&a, &b}));
  client.start();
  ASSERT_TRUE(settle(client, {&a, &b}));
  std::vector<std::shared_ptr<Outcome>> outcomes;
  for (int i = 0; i < 20; ++i) outcomes.push_back(submit(client, true));
  ASSERT_TRUE(pump_until({&a, &b}, [&] { return a.requests.size() + b.requests.size() == 20; }));
  EXPECT_EQ(a.requests.size(), 10u);
  EXPECT_EQ(b.requests.size(), 10u);
  // Each reply reaches its own caller, whichever broker carried it.
  for (auto* broker : {&a, &b}) {
    for (const auto& r : broker->requests) broker->reply(r, "ok");
  }
  ASSERT_TRUE(
      pump_until({&a, &b}, [&] { return std::all_of(outcomes.begin(), outcomes.end(), ready); }));
  for (auto& o : outcomes) {
    auto r = o->future.get();
    EXPECT_FALSE(r.local);
    ReplyEnvelope reply;
    ASSERT_FALSE(decode(protocol::view(r.envelope), reply));
    EXPECT_EQ(reply.body, "ok");
  }
  EXPECT_EQ(client.pending(), 0u);
}

TEST_F(BrokerClientTest, ABrokerWithWorkersForTheServiceIsPreferred) {
  ScriptedBroker empty(context_, kServesNothing), serving(context_, kServes);
  BrokerClient client(context_, options({&empty, &serving}));
  client.start();
  ASSERT_TRUE(settle(client, {&empty, &serving}));
  for (int i = 0; i < 10; ++i) submit(client, true);
  ASSERT_TRUE(pump_until({&empty, &serving}, [&] { return serving.requests.size() == 10; }));
  empty.pump(50ms);
  EXPECT_EQ(empty.requests.size(), 0u);
}

TEST_F(BrokerClientTest, ALostBrokersRetrySafeRequestsMoveAndTheOthersGet503) {
  ScriptedBroker a(context_, kServes), b(context_, kServes);
  BrokerClient client(context_, options({&a, &b}));
  client.start();
  ASSERT_TRUE(settle(client, {&a, &b}));
  std::map<std::string, std::pair<std::shared_ptr<Outcome>, bool>> by_id;  // id -> (outcome, safe)
  for (int i = 0; i < 20; ++i) {
    const bool safe = i % 2 == 0;
    auto o = submit(client, safe);
    const auto id = id_for(next_id_ - 1);
    by_id[std::string(id.begin(), id.end())] = {o, safe};
  }
  ASSERT_TRUE(pump_until({&a, &b}, [&] { return a.requests.size() + b.requests.size() == 20; }));
  const auto on_a = a.requests;
  const auto b_before = b.requests.size();
  std::size_t safe_on_a = 0;
  for (const auto& r : on_a) safe_on_a += (r.flags & protocol::kFlagRetrySafe) != 0;
  ASSERT_GT(on_a.size(), 0u);

  a.close();  // the gateway sees the connection drop
  ASSERT_TRUE(pump_until({&b}, [&] { return b.requests.size() == b_before + safe_on_a; }))
      << "retry-safe requests of the lost broker should arrive at the other";
  for (const auto& r : on_a) {
    const auto& [outcome, safe] = by_id.at(std::string(r.id.begin(), r.id.end()));
    if (safe) {
      EXPECT_FALSE(ready(outcome));
    } else {
      ASSERT_TRUE(pump_until({&b}, [&] { return ready(outcome); }));
      auto result = outcome->future.get();
      ASSERT_TRUE(result.local);
      EXPECT_EQ(result.local->error->code, "BROKER_UNAVAILABLE");
    }
  }
  // The moved requests carry the same ids and envelopes, and their replies reach the callers.
  for (std::size_t i = b_before; i < b.requests.size(); ++i) {
    const auto& r = b.requests[i];
    EXPECT_TRUE(std::any_of(on_a.begin(), on_a.end(), [&](const auto& x) {
      return x.id == r.id && x.envelope == r.envelope;
    }));
    b.reply(r, "moved");
  }
  for (const auto& r : on_a) {
    const auto& [outcome, safe] = by_id.at(std::string(r.id.begin(), r.id.end()));
    if (!safe) continue;
    ASSERT_TRUE(pump_until({&b}, [&] { return ready(outcome); }));
    auto result = outcome->future.get();
    ASSERT_FALSE(result.local);
  }
  EXPECT_EQ(client.failovers(), safe_on_a);
  const auto status = client.brokers();
  EXPECT_FALSE(status[0].connected);
  EXPECT_TRUE(status[1].connected);
  EXPECT_TRUE(client.connected());
}

TEST_F(BrokerClientTest, ALateDuplicateReplyIsCountedNotDelivered) {
  ScriptedBroker a(context_, kServes);
  BrokerClient client(context_, options({&a}));
  client.start();
  ASSERT_TRUE(settle(client, {&a}));
  auto o = submit(client, true);
  ASSERT_TRUE(pump_until({&a}, [&] { return a.requests.size() == 1; }));
  a.reply(a.requests[0], "first");
  a.reply(a.requests[0], "second");
  ASSERT_TRUE(pump_until({&a}, [&] { return client.late_replies() == 1; }));
  ReplyEnvelope reply;
  auto r = o->future.get();
  ASSERT_FALSE(decode(protocol::view(r.envelope), reply));
  EXPECT_EQ(reply.body, "first");
}

using Kind = BrokerResult::Kind;
using protocol::StreamPart;

TEST_F(BrokerClientTest, StreamPartsReachOneCallbackInOrderAndEndRemovesTheRequest) {
  ScriptedBroker a(context_, kServes);
  BrokerClient client(context_, options({&a}));
  client.start();
  ASSERT_TRUE(settle(client, {&a}));
  auto parts = submit_stream(client);
  ASSERT_TRUE(pump_until({&a}, [&] { return a.requests.size() == 1; }));
  const auto r = a.requests[0];
  a.head(r, 200, {{"Content-Type", "text/event-stream"}});
  a.stream(r, StreamPart::kData, "one");
  a.stream(r, StreamPart::kData, "two");
  a.stream(r, StreamPart::kEnd, "three");
  ASSERT_TRUE(pump_until({&a}, [&] { return parts->size() == 4; }));
  const auto got = parts->snapshot();
  EXPECT_EQ(got[0].first, Kind::kHead);
  ReplyEnvelope head;
  ASSERT_FALSE(decode(got[0].second, head));
  EXPECT_EQ(head.status, 200u);
  EXPECT_EQ(got[1], std::make_pair(Kind::kData, std::string("one")));
  EXPECT_EQ(got[2], std::make_pair(Kind::kData, std::string("two")));
  EXPECT_EQ(got[3], std::make_pair(Kind::kEnd, std::string("three")));
  EXPECT_EQ(client.pending(), 0u);
  // After the END, more parts are late.
  a.stream(r, StreamPart::kData, "late");
  ASSERT_TRUE(pump_until({&a}, [&] { return client.late_replies() == 1; }));
  EXPECT_EQ(parts->size(), 4u);
}

TEST_F(BrokerClientTest, AnAbortEndsTheStreamAndRemovesIt) {
  ScriptedBroker a(context_, kServes);
  BrokerClient client(context_, options({&a}));
  client.start();
  ASSERT_TRUE(settle(client, {&a}));
  auto parts = submit_stream(client);
  ASSERT_TRUE(pump_until({&a}, [&] { return a.requests.size() == 1; }));
  a.head(a.requests[0]);
  a.stream(a.requests[0], StreamPart::kAbort, "worker lost");
  ASSERT_TRUE(pump_until({&a}, [&] { return parts->size() == 2; }));
  EXPECT_EQ(parts->snapshot()[1], std::make_pair(Kind::kAbort, std::string("worker lost")));
  EXPECT_EQ(client.pending(), 0u);
}

TEST_F(BrokerClientTest, DataBeforeHeadIsAProtocolErrorAbortedAndCancelled) {
  ScriptedBroker a(context_, kServes);
  BrokerClient client(context_, options({&a}));
  client.start();
  ASSERT_TRUE(settle(client, {&a}));
  auto parts = submit_stream(client);
  ASSERT_TRUE(pump_until({&a}, [&] { return a.requests.size() == 1; }));
  a.stream(a.requests[0], StreamPart::kData, "body first");
  ASSERT_TRUE(pump_until({&a}, [&] { return parts->size() == 1 && a.cancels.size() == 1; }));
  EXPECT_EQ(parts->snapshot()[0].first, Kind::kAbort);
  EXPECT_EQ(a.cancels[0].id, a.requests[0].id);
  EXPECT_EQ(client.pending(), 0u);
  EXPECT_EQ(client.stream_protocol_errors(), 1u);
}

TEST_F(BrokerClientTest, ASecondHeadOrAReplyAfterTheHeadIsAProtocolError) {
  ScriptedBroker a(context_, kServes);
  BrokerClient client(context_, options({&a}));
  client.start();
  ASSERT_TRUE(settle(client, {&a}));
  auto twice = submit_stream(client);
  auto replied = submit_stream(client);
  ASSERT_TRUE(pump_until({&a}, [&] { return a.requests.size() == 2; }));
  a.head(a.requests[0]);
  a.head(a.requests[0]);
  a.head(a.requests[1]);
  a.reply(a.requests[1], "a whole reply");
  ASSERT_TRUE(pump_until({&a}, [&] { return twice->size() == 2 && replied->size() == 2; }));
  EXPECT_EQ(twice->snapshot()[1].first, Kind::kAbort);
  EXPECT_EQ(replied->snapshot()[1].first, Kind::kAbort);
  ASSERT_TRUE(pump_until({&a}, [&] { return a.cancels.size() == 2; }));
  EXPECT_EQ(client.pending(), 0u);
}

TEST_F(BrokerClientTest, AStreamOfALostBrokerIsAbortedNeverMoved) {
  ScriptedBroker a(context_, kServes), b(context_, kServes);
  BrokerClient client(context_, options({&a, &b}));
  client.start();
  ASSERT_TRUE(settle(client, {&a, &b}));
  std::vector<std::shared_ptr<Parts>> all;
  for (int i = 0; i < 4; ++i) all.push_back(submit_stream(client));  // retry-safe: may move
  ASSERT_TRUE(pump_until({&a, &b}, [&] { return a.requests.size() + b.requests.size() == 4; }));
  ASSERT_FALSE(a.requests.empty());
  for (const auto& r : a.requests) a.head(r);
  // Which callbacks belong to a's requests: those that got the HEAD.
  ASSERT_TRUE(pump_until({&a, &b}, [&] {
    return std::count_if(all.begin(), all.end(), [](auto& p) { return p->size() == 1; }) ==
           static_cast<long>(a.requests.size());
  }));
  const auto b_before = b.requests.size();
  a.close();
  ASSERT_TRUE(pump_until({&b}, [&] {
    return std::all_of(all.begin(), all.end(), [](auto& p) { return p->size() != 1; });
  }));
  for (auto& p : all) {
    const auto got = p->snapshot();
    if (got.empty()) continue;  // b's own requests
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[1].first, Kind::kAbort);
    EXPECT_EQ(got[1].second, "broker connection lost");
  }
  b.pump(50ms);
  EXPECT_EQ(b.requests.size(), b_before) << "a stream with its head out must not be re-sent";
  EXPECT_EQ(client.failovers(), 0u);
}

TEST_F(BrokerClientTest, StopAbortsOpenStreams) {
  ScriptedBroker a(context_, kServes);
  BrokerClient client(context_, options({&a}));
  client.start();
  ASSERT_TRUE(settle(client, {&a}));
  auto parts = submit_stream(client);
  ASSERT_TRUE(pump_until({&a}, [&] { return a.requests.size() == 1; }));
  a.head(a.requests[0]);
  ASSERT_TRUE(pump_until({&a}, [&] { return parts->size() == 1; }));
  client.stop();
  ASSERT_EQ(parts->size(), 2u);
  EXPECT_EQ(parts->snapshot()[1],
            std::make_pair(Kind::kAbort, std::string("gateway shutting down")));
}

TEST_F(BrokerClientTest, CreditAndCancelGoThroughTheBrokerCarryingTheRequest) {
  ScriptedBroker a(context_, kServes), b(context_, kServes);
  BrokerClient client(context_, options({&a, &b}));
  client.start();
  ASSERT_TRUE(settle(client, {&a, &b}));
  auto first = submit_stream(client);
  auto second = submit_stream(client);
  ASSERT_TRUE(
      pump_until({&a, &b}, [&] { return a.requests.size() == 1 && b.requests.size() == 1; }));
  const auto on_a = a.requests[0];
  const auto on_b = b.requests[0];
  a.head(on_a);
  b.head(on_b);
  ASSERT_TRUE(pump_until({&a, &b}, [&] { return first->size() == 1 && second->size() == 1; }));
  client.credit(on_a.id, 4096);
  client.credit(on_b.id, 0);  // clamped to 1
  ASSERT_TRUE(pump_until({&a, &b}, [&] { return a.credits.size() == 1 && b.credits.size() == 1; }));
  EXPECT_EQ(a.credits[0].id, on_a.id);
  EXPECT_EQ(a.credits[0].bytes, 4096u);
  EXPECT_EQ(a.credits[0].peer, on_a.peer);
  EXPECT_EQ(b.credits[0].id, on_b.id);
  EXPECT_EQ(b.credits[0].bytes, 1u);

  EXPECT_TRUE(client.cancel(on_b.id));
  EXPECT_FALSE(client.cancel(on_b.id));
  ASSERT_TRUE(pump_until({&a, &b}, [&] { return b.cancels.size() == 1; }));
  EXPECT_EQ(b.cancels[0].id, on_b.id);
  client.credit(on_b.id, 10);  // forgotten: nothing goes out
  b.stream(on_b, StreamPart::kData, "late");
  ASSERT_TRUE(pump_until({&a, &b}, [&] { return client.late_replies() == 1; }));
  EXPECT_TRUE(a.cancels.empty());
  EXPECT_EQ(b.credits.size(), 1u);
  EXPECT_EQ(second->size(), 1u);
}

TEST_F(BrokerClientTest, MoreBodyBytesThanGrantedAbortAtOnceAndCancel) {
  ScriptedBroker a(context_, kServes);
  BrokerClient client(context_, options({&a}));
  client.start();
  ASSERT_TRUE(settle(client, {&a}));
  auto parts = submit_stream(client);
  ASSERT_TRUE(pump_until({&a}, [&] { return a.requests.size() == 1; }));
  const auto r = a.requests[0];
  a.head(r);
  a.stream(r, StreamPart::kData, std::string(protocol::kInitialStreamWindow, 'x'));
  ASSERT_TRUE(pump_until({&a}, [&] { return parts->size() == 2; }));
  client.credit(r.id, 10);
  ASSERT_TRUE(pump_until({&a}, [&] { return a.credits.size() == 1; }));
  a.stream(r, StreamPart::kData, "0123456789");  // exactly the credit
  a.stream(r, StreamPart::kEnd, "!");            // one byte past it
  ASSERT_TRUE(pump_until({&a}, [&] { return parts->size() == 4 && a.cancels.size() == 1; }));
  const auto got = parts->snapshot();
  EXPECT_EQ(got[2], std::make_pair(Kind::kData, std::string("0123456789")));
  EXPECT_EQ(got[3], std::make_pair(Kind::kAbort,
                                   std::string("protocol error: more body bytes than the window "
                                               "granted")));
  EXPECT_EQ(a.cancels[0].id, r.id);
  EXPECT_EQ(client.stream_protocol_errors(), 1u);
  EXPECT_EQ(client.pending(), 0u);
}

TEST_F(BrokerClientTest, AfterTheHeadPartsFromAnotherBrokerAreLateAndCancelledThere) {
  ScriptedBroker a(context_, kServes), b(context_, kServes);
  BrokerClient client(context_, options({&a, &b}));
  client.start();
  ASSERT_TRUE(settle(client, {&a, &b}));
  auto on_a_parts = submit_stream(client);
  auto parts = submit_stream(client);
  ASSERT_TRUE(
      pump_until({&a, &b}, [&] { return a.requests.size() == 1 && b.requests.size() == 1; }));
  const auto r = b.requests[0];
  b.head(r);
  ASSERT_TRUE(pump_until({&a, &b}, [&] { return parts->size() == 1; }));
  // Broker a speaks for b's stream (as one still running a failed-over copy would).
  auto stray = r;
  stray.peer = a.requests[0].peer;
  a.stream(stray, StreamPart::kData, "stray");
  a.reply(stray, "a whole reply");
  ASSERT_TRUE(pump_until({&a, &b}, [&] { return a.cancels.size() == 2; }));
  EXPECT_EQ(a.cancels[0].id, r.id);
  EXPECT_EQ(a.cancels[1].id, r.id);
  EXPECT_EQ(client.late_replies(), 2u);
  EXPECT_EQ(client.stream_protocol_errors(), 0u);
  // The stream is untouched and goes on through b.
  b.stream(r, StreamPart::kEnd, "fin");
  ASSERT_TRUE(pump_until({&a, &b}, [&] { return parts->size() == 2; }));
  EXPECT_EQ(parts->snapshot()[1], std::make_pair(Kind::kEnd, std::string("fin")));
  EXPECT_TRUE(b.cancels.empty());
}

// gateway.threads 1: the links run on the HTTP io_context (run_on), so replies reach their callers
// on that io_context's thread, and the client owns no thread.
TEST_F(BrokerClientTest, RunOnDrivesTheLinksFromTheGivenIoContextsThread) {
  ScriptedBroker a(context_, kServes);
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  BrokerClient client(context_, options({&a}));
  client.run_on(io);
  client.start();
  std::promise<std::thread::id> runner_id;
  std::thread runner([&] {
    runner_id.set_value(std::this_thread::get_id());
    io.run();
  });
  const auto io_thread = runner_id.get_future().get();
  ASSERT_TRUE(settle(client, {&a}));
  std::promise<std::thread::id> called_on;
  auto outcome = std::make_shared<Outcome>();
  submit_with(client, false, [&, outcome](BrokerResult r) {
    called_on.set_value(std::this_thread::get_id());
    outcome->promise.set_value(std::move(r));
  });
  ASSERT_TRUE(pump_until({&a}, [&] { return a.requests.size() == 1; }));
  a.reply(a.requests[0], "ok");
  ASSERT_TRUE(pump_until({&a}, [&] { return ready(outcome); }));
  EXPECT_EQ(called_on.get_future().get(), io_thread);
  auto r = outcome->future.get();
  ASSERT_FALSE(r.local);
  ReplyEnvelope reply;
  ASSERT_FALSE(decode(protocol::view(r.envelope), reply));
  EXPECT_EQ(reply.body, "ok");
  client.stop();  // while io runs: each link closes on its thread
  guard.reset();
  io.stop();
  runner.join();
}

// The server stops its io_context first, then the client: what is still pending is answered then.
TEST_F(BrokerClientTest, RunOnStoppedAfterItsIoContextAnswersWhatIsPending) {
  ScriptedBroker a(context_, kServes);
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  BrokerClient client(context_, options({&a}));
  client.run_on(io);
  client.start();
  std::thread runner([&] { io.run(); });
  ASSERT_TRUE(settle(client, {&a}));
  auto outcome = submit(client, false);
  ASSERT_TRUE(pump_until({&a}, [&] { return a.requests.size() == 1; }));
  io.stop();
  runner.join();
  EXPECT_FALSE(ready(outcome));
  client.stop();
  ASSERT_TRUE(ready(outcome));
  auto r = outcome->future.get();
  ASSERT_TRUE(r.local);
  EXPECT_EQ(r.local->status, 503);
  EXPECT_EQ(client.pending(), 0u);
}

}  // namespace
}  // namespace courier::gateway
