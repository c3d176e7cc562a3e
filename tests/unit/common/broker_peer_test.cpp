// BrokerPeer against a real ROUTER over loopback TCP, driven by the test: heartbeats go out every
// interval, any message makes the broker alive, silence beyond the liveness limit loses it (and
// a gateway-style peer comes back under a new routing id).
#include "common/broker_peer.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>

namespace courier {
namespace {

using namespace std::chrono_literals;

class BrokerPeerTest : public ::testing::Test {
 protected:
  BrokerPeerTest() : router_(context_, zmq::socket_type::router) {
    router_.set(zmq::sockopt::linger, 0);
    router_.bind("tcp://127.0.0.1:*");
    endpoint_ = router_.get(zmq::sockopt::last_endpoint);
  }
  ~BrokerPeerTest() override {
    if (peer_) peer_->stop();  // waits for the running io_context to close the socket
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  void start(bool reconnect_when_silent) {
    BrokerPeer::Handlers handlers;
    handlers.on_message = [this](protocol::Frames&) { messages_.fetch_add(1); };
    handlers.heartbeat = [](protocol::Frames& hb, bool alive) {
      const std::string text = alive ? "hb-alive" : "hb";
      hb.emplace_back(text.data(), text.size());
    };
    handlers.on_lost = [this](BrokerPeer::Loss why) {
      losses_.fetch_add(1);
      last_loss_.store(static_cast<int>(why));
    };
    handlers.on_connected = [this] { connections_.fetch_add(1); };
    peer_.emplace(context_, io_, BrokerPeer::Options{endpoint_, 50ms, 4, reconnect_when_silent},
                  handlers);
    peer_->start();
    thread_ = std::thread([this] { io_.run(); });
  }

  // The next message at the ROUTER within `timeout`: [routing id, payload].
  std::optional<std::pair<std::string, std::string>> receive(std::chrono::milliseconds timeout) {
    zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) <= 0) return std::nullopt;
    protocol::Frames frames;
    if (!zmq::recv_multipart(router_, std::back_inserter(frames)) || frames.size() != 2) {
      return std::nullopt;
    }
    return std::make_pair(frames[0].to_string(), frames[1].to_string());
  }

  void answer(const std::string& routing_id) {
    router_.send(zmq::buffer(routing_id), zmq::send_flags::sndmore);
    router_.send(zmq::str_buffer("hello"));
  }

  bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!condition()) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }

  zmq::context_t context_;
  zmq::socket_t router_;
  std::string endpoint_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  std::optional<BrokerPeer> peer_;
  std::thread thread_;
  std::atomic<int> messages_{0}, losses_{0}, last_loss_{-1}, connections_{0};
};

TEST_F(BrokerPeerTest, HeartbeatsGoOutEveryIntervalAndAnyAnswerMakesTheBrokerAlive) {
  start(false);
  ASSERT_TRUE(wait_for([&] { return connections_.load() == 1; }, 5s));
  const auto first = receive(2s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->second, "hb");
  EXPECT_FALSE(peer_->alive());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(receive(2s)) << "heartbeats keep coming: " << i;

  answer(first->first);
  ASSERT_TRUE(wait_for([&] { return peer_->alive(); }, 2s));
  // alive() flips on the io thread before the handler runs: wait for the handler, then check it
  // ran exactly once.
  ASSERT_TRUE(wait_for([&] { return messages_.load() >= 1; }, 2s));
  EXPECT_EQ(messages_.load(), 1);
  EXPECT_TRUE(peer_->ever_alive());
  // Heartbeats sent before the answer may still be queued (a loaded machine): read past them.
  bool told_alive = false;
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (!told_alive && std::chrono::steady_clock::now() < until) {
    const auto hb = receive(500ms);
    told_alive = hb && hb->second == "hb-alive";
  }
  EXPECT_TRUE(told_alive) << "the heartbeat handler learns that the broker is alive";
  EXPECT_EQ(losses_.load(), 0);
}

TEST_F(BrokerPeerTest, SilenceBeyondTheLivenessLimitLosesTheBrokerOnce) {
  start(false);
  const auto first = receive(5s);
  ASSERT_TRUE(first);
  const auto answered = std::chrono::steady_clock::now();  // the peer hears it after this
  answer(first->first);
  ASSERT_TRUE(wait_for([&] { return peer_->alive(); }, 2s));
  // 4 intervals of 50 ms: lost after 200 ms of silence, not before.
  ASSERT_TRUE(wait_for([&] { return losses_.load() == 1; }, 3s));
  EXPECT_GE(std::chrono::steady_clock::now() - answered, 200ms);
  EXPECT_EQ(last_loss_.load(), static_cast<int>(BrokerPeer::Loss::kSilent));
  EXPECT_FALSE(peer_->alive());
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(losses_.load(), 1) << "a broker already lost is not lost again";

  // Without reconnect_when_silent the connection stays: heartbeats keep the same routing id.
  const auto hb = receive(2s);
  ASSERT_TRUE(hb);
  EXPECT_EQ(hb->first, first->first);
  answer(hb->first);
  ASSERT_TRUE(wait_for([&] { return peer_->alive(); }, 2s)) << "an answer revives it";
}

TEST_F(BrokerPeerTest, APeerThatReconnectsWhenSilentComesBackUnderANewRoutingId) {
  start(true);
  const auto first = receive(5s);
  ASSERT_TRUE(first);
  answer(first->first);
  ASSERT_TRUE(wait_for([&] { return losses_.load() == 1; }, 3s));
  std::optional<std::pair<std::string, std::string>> hb;
  bool new_id = false;
  for (int i = 0; i < 40 && !new_id; ++i) {
    hb = receive(200ms);
    new_id = hb && hb->first != first->first;
  }
  EXPECT_TRUE(new_id) << "what the frozen broker holds for the old id can no longer reach us";
  EXPECT_GE(connections_.load(), 2);
}

}  // namespace
}  // namespace courier
