// The gateway's link to the broker: sends request envelopes, matches replies to their callers by
// correlation ID, heartbeats, and answers every pending request at once when the broker is lost.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <zmq.hpp>

#include "common/envelope.hpp"
#include "common/frames.hpp"
#include "common/zmq_link.hpp"

namespace courier::gateway {

struct BrokerClientOptions {
  std::string endpoint = "tcp://127.0.0.1:5555";
  std::chrono::milliseconds heartbeat_interval{250};
  int liveness = 4;
  std::chrono::milliseconds stats_interval{500};
};

// What a caller gets back, exactly once: the reply's envelope frame (decoded by the caller, on
// its own thread) or an error the gateway made itself.
struct BrokerResult {
  zmq::message_t envelope;
  std::optional<ReplyEnvelope> local;  // set instead of `envelope` for gateway-made errors
};

class BrokerClient {
 public:
  using Callback = std::function<void(BrokerResult)>;

  BrokerClient(zmq::context_t& context, BrokerClientOptions options);
  ~BrokerClient();

  void start();
  void stop();

  // Thread-safe. `done` runs exactly once, on the link thread, unless cancel() wins first.
  void submit(const protocol::RequestHeader& header, zmq::message_t envelope, Callback done);
  // The caller gave up (deadline): a reply arriving later is discarded and counted.
  bool cancel(const protocol::CorrelationId& id);

  bool connected() const { return connected_.load(std::memory_order_acquire); }
  // The broker's latest stats snapshot (JSON text), refreshed every stats_interval.
  std::string stats_json() const;
  std::uint64_t late_replies() const { return late_replies_.load(); }
  std::size_t pending() const;

 private:
  void on_message(protocol::Frames& frames);
  void on_tick(std::chrono::steady_clock::time_point now);
  void on_unsent(protocol::Frames& frames);
  void on_connection_event(int event);
  void fail_all(const std::string& detail);
  Callback take(const protocol::CorrelationId& id);

  BrokerClientOptions options_;
  ZmqLink link_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::pair<std::string, Callback>> pending_;  // id -> service
  std::atomic<bool> connected_{false};
  std::chrono::steady_clock::time_point last_seen_{};
  std::chrono::steady_clock::time_point next_heartbeat_{};
  std::chrono::steady_clock::time_point next_stats_{};
  std::string stats_;
  std::atomic<std::uint64_t> late_replies_{0};
};

}  // namespace courier::gateway
