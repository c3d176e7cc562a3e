// The worker process: registers its service and capacity with the broker, runs each request it
// is given through the Forwarder, replies, heartbeats, re-registers, and drains on shutdown.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <zmq.hpp>

#include "common/asio.hpp"
#include "common/config.hpp"
#include "common/zmq_link.hpp"
#include "workers/forwarder.hpp"

namespace courier::workers {

struct WorkerOptions {
  std::string broker = "tcp://127.0.0.1:5556";
  std::string worker_id;  // for logs and stats
  std::chrono::milliseconds heartbeat_interval{250};
  int liveness = 4;
  std::chrono::milliseconds drain_timeout{30'000};
};

class Worker {
 public:
  Worker(zmq::context_t& context, WorkerOptions options, ServiceConfig service);
  ~Worker();

  void start();
  // Graceful: tell the broker we drain, finish in-flight requests (up to drain_timeout), then
  // say goodbye and stop. Blocks. Returns the number of requests still running at the end.
  std::size_t drain_and_stop();

  std::int64_t in_flight() const { return in_flight_.load(); }

 private:
  void on_message(protocol::Frames& frames);
  void on_tick(std::chrono::steady_clock::time_point now);
  void on_connection_event(int event);
  void send_ready();
  asio::awaitable<void> run_request(protocol::CorrelationId id, zmq::message_t envelope);
  void reply(const protocol::CorrelationId& id, const ReplyEnvelope& reply);

  WorkerOptions options_;
  ServiceConfig service_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  Forwarder forwarder_;
  ZmqLink link_;
  std::thread io_thread_;
  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<bool> draining_{false};
  // Link-thread state.
  std::chrono::steady_clock::time_point last_seen_{};
  std::chrono::steady_clock::time_point next_heartbeat_{};
  bool broker_alive_ = false;
  std::atomic<std::uint64_t> status_seq_{0};
  std::string status_json_;  // published from the io thread, read on the link thread
  std::mutex status_mutex_;
};

}  // namespace courier::workers
