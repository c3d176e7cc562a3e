// The gateway's link to its brokers: sends request envelopes, matches replies to their callers by
// correlation ID, heartbeats each broker, and answers a lost broker's pending requests at once.
//
// With several brokers, each request goes to a connected broker that reports workers for its
// service, the one with the fewest requests pending from this gateway (ties rotate). When a broker
// is lost, its retry-safe pending requests are sent again through another connected broker (the
// gateway keeps a shared, not copied, reference to their envelopes for that); the rest are
// answered 503 BROKER_UNAVAILABLE.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "common/broker_peer.hpp"
#include "common/curve.hpp"
#include "common/envelope.hpp"
#include "common/frames.hpp"
#include "common/options.hpp"
#include "common/status.hpp"

namespace courier::gateway {

struct BrokerClientOptions {
  std::vector<std::string> endpoints = {options::gateway::kBroker.default_text()};
  std::chrono::milliseconds heartbeat_interval = options::gateway::kHeartbeat.default_seconds();
  int liveness = static_cast<int>(options::gateway::kLiveness.default_integer());
  std::chrono::milliseconds stats_interval{500};
  std::optional<curve::ClientKeys> curve;  // set: every broker link is a CURVE client
};

// What a caller gets back, exactly once: the reply's envelope frame (decoded by the caller, on
// its own thread) or an error the gateway made itself.
struct BrokerResult {
  zmq::message_t envelope;
  std::optional<ReplyEnvelope> local;  // set instead of `envelope` for gateway-made errors
};

// One broker as the gateway sees it.
struct BrokerStatus {
  std::string endpoint;
  bool connected = false;
  std::size_t pending = 0;  // requests sent through it and not yet answered
  // Its latest STATS snapshot, decoded once on arrival and shared by every reader; null while not
  // connected or when the snapshot was not a JSON object.
  std::shared_ptr<const BrokerStats> stats;
};

// A STATS snapshot as BrokerStatus holds it: null unless `text` is a JSON object.
std::shared_ptr<const BrokerStats> parse_stats(std::string_view text);

class BrokerClient {
 public:
  using Callback = std::function<void(BrokerResult)>;

  BrokerClient(zmq::context_t& context, BrokerClientOptions options);
  ~BrokerClient();

  void start();
  void stop();

  // Thread-safe. `done` runs exactly once, unless cancel() wins first: on a link thread, on the
  // caller's when no broker is connected, or on the thread calling stop().
  void submit(const protocol::RequestHeader& header, zmq::message_t envelope, Callback done);
  // The caller gave up (deadline): a reply arriving later is discarded and counted.
  bool cancel(const protocol::CorrelationId& id);

  // At least one broker answers heartbeats.
  bool connected() const;
  std::vector<BrokerStatus> brokers() const;
  std::uint64_t late_replies() const { return late_replies_.load(); }
  // Pending requests sent again through another broker after theirs was lost.
  std::uint64_t failovers() const { return failovers_.load(); }
  std::size_t pending() const;

 private:
  struct Link;
  struct Pending {
    std::string service;
    Callback done;
    std::size_t link = 0;
    std::uint64_t deadline_ms = 0;
    std::uint8_t flags = 0;
    zmq::message_t envelope;  // a shared reference, kept only where failover may need it
  };

  void on_message(Link& link, protocol::Frames& frames);
  void on_tick(Link& link, std::chrono::steady_clock::time_point now);
  void on_unsent(Link& link, protocol::Frames& frames);
  void link_lost(Link& link, const std::string& detail);
  void fail_all(const std::string& detail);
  // Removes and returns the callback for `id`, if it is still pending.
  Callback take(const protocol::CorrelationId& id);
  // Caller holds mutex_. The connected broker to send a request for `service` to, if any.
  Link* choose(std::string_view service, const Link* except = nullptr);

  BrokerClientOptions options_;
  // One thread runs every broker link (their sockets, heartbeats and reply hand-off).
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  std::vector<std::unique_ptr<Link>> links_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Pending> pending_;  // correlation id bytes -> request
  std::size_t rotation_ = 0;
  std::atomic<bool> stopping_{false};  // stop() began: no broker counts as connected
  std::atomic<std::uint64_t> late_replies_{0};
  std::atomic<std::uint64_t> failovers_{0};
};

}  // namespace courier::gateway
