// One ZeroMQ socket owned by one thread that polls it, with a thread-safe send queue.
// Gateways and workers use it for their DEALER link to a broker; callbacks run on the link thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/frames.hpp"

namespace courier {

class ZmqLink {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    std::string endpoint;  // connected to (DEALER)
    std::chrono::milliseconds tick{100};
    int high_water_mark = 100'000;
    std::chrono::milliseconds linger{1'000};  // time to flush replies on close
  };
  struct Handlers {
    std::function<void(protocol::Frames&)> on_message;
    std::function<void(Clock::time_point)> on_tick;
    // A send refused at once (no broker connected, or its queue full): the message was not sent.
    std::function<void(protocol::Frames&)> on_unsent;
    // Connection events (ZMQ_EVENT_CONNECTED, ZMQ_EVENT_DISCONNECTED) from a socket monitor.
    // A DEALER gets a new routing id on every reconnect, so a disconnect means every reply still
    // owed to this link is lost: the owner must answer those requests itself.
    std::function<void(int event)> on_connection_event;
  };

  ZmqLink(zmq::context_t& context, Options options, Handlers handlers);
  ~ZmqLink();
  ZmqLink(const ZmqLink&) = delete;
  ZmqLink& operator=(const ZmqLink&) = delete;

  void start();
  // Sends what is queued, then closes the socket and joins the thread. Idempotent.
  void stop();

  // Thread-safe: queues a message for the link thread to send.
  void post(protocol::Frames frames);
  // Link thread only (inside a callback): sends at once; false (and on_unsent) if refused.
  bool send_now(protocol::Frames& frames);

  // Link thread only (inside a callback): drops the connection and what is queued on it and
  // connects again with a new socket, so the peer sees a new routing id. For a peer that went
  // silent: whatever it still holds for the old id can no longer reach us.
  void reconnect();

  std::uint64_t unsent() const { return unsent_.load(std::memory_order_relaxed); }

 private:
  void run();
  void open_socket();
  void close_socket();
  void drain_queue();
  void read_monitor();

  zmq::context_t& context_;
  Options options_;
  Handlers handlers_;
  zmq::socket_t socket_;
  zmq::socket_t monitor_;
  int wake_fd_ = -1;
  std::mutex mutex_;
  std::vector<protocol::Frames> queue_;
  std::vector<protocol::Frames> sending_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> unsent_{0};
  std::thread thread_;
};

}  // namespace courier
