// One broker as a gateway or a worker sees it: the ZmqLink to it, its liveness (any message is a
// sign of life; silence for `liveness` heartbeat intervals or a disconnect is a loss), and the
// heartbeats sent to it. The owner says what a heartbeat carries and what a loss means.
//
// Everything runs on the io_context the link runs on, except alive(), ever_alive() and the
// constructor.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "common/asio.hpp"
#include "common/frames.hpp"
#include "common/zmq_link.hpp"

namespace courier {

class BrokerPeer {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    std::string endpoint;
    std::chrono::milliseconds heartbeat_interval{250};
    int liveness = 4;
    // A silent broker may be frozen, not gone: when it wakes it must not answer through the
    // connection its peer has given up on. A gateway reconnects (new routing id); a worker keeps
    // its connection and registers again once the broker answers.
    bool reconnect_when_silent = false;
    std::optional<curve::ClientKeys> curve{};  // set: the link is a CURVE client
  };
  // Why a broker is no longer counted as alive.
  enum class Loss { kSilent, kDisconnected };

  struct Handlers {
    // Any message from the broker (it is alive; liveness is already updated).
    std::function<void(protocol::Frames&)> on_message;
    // A heartbeat is due: fill `frames` with what to send (left empty: nothing is sent).
    std::function<void(protocol::Frames& frames, bool alive)> heartbeat;
    // The broker was alive and is lost: what it owed this peer will not come.
    std::function<void(Loss)> on_lost;
    // A new connection to the broker (ZMQ_EVENT_CONNECTED), before it has said anything.
    std::function<void()> on_connected;
    // Every tick, after liveness and heartbeats.
    std::function<void(Clock::time_point)> on_tick;
    // A send refused at once (see ZmqLink).
    std::function<void(protocol::Frames&)> on_unsent;
  };

  BrokerPeer(zmq::context_t& context, asio::io_context& io, Options options, Handlers handlers);

  void start() { zmq_.start(); }
  void stop() { zmq_.stop(); }

  const std::string& endpoint() const { return options_.endpoint; }
  // Thread-safe: the broker has answered within the liveness limit.
  bool alive() const { return alive_.load(std::memory_order_acquire); }
  bool ever_alive() const { return ever_alive_.load(std::memory_order_acquire); }
  Clock::time_point last_seen() const { return last_seen_; }
  ZmqLink& link() { return zmq_; }

 private:
  void on_message(protocol::Frames& frames);
  void on_tick(Clock::time_point now);
  void on_connection_event(int event);
  void warn_if_not_answering(Clock::time_point now);
  void lose(Loss why);

  const Options options_;
  const Handlers handlers_;
  std::atomic<bool> alive_{false};
  std::atomic<bool> ever_alive_{false};
  Clock::time_point last_seen_{};
  Clock::time_point next_heartbeat_{};
  // "Not answering" warnings, for a broker that never answered or stays lost (a wrong CURVE key
  // looks exactly like that): when the next one is due, and how long it has been.
  Clock::time_point silent_since_{};
  Clock::time_point next_silence_warning_{};
  std::chrono::milliseconds silence_warning_gap_{};
  Clock::time_point next_handshake_warning_{};
  // Last: it calls back into the members above, so it must stop before they go.
  ZmqLink zmq_;
};

}  // namespace courier
