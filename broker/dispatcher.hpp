// The broker's routing logic, apart from its sockets: worker registry with credit-based capacity,
// per-service queues, the in-flight table, heartbeats, requeue on worker loss and deadline expiry.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/frames.hpp"
#include "common/options.hpp"

namespace courier::broker {

using Clock = std::chrono::steady_clock;
using Identity = std::string;  // a ROUTER routing id

// Both clocks, passed in so tests drive time: steady for liveness, wall for request deadlines
// (which travel between processes as Unix epoch milliseconds).
struct Now {
  Clock::time_point steady;
  std::uint64_t wall_ms = 0;
  static Now current();
};

struct DispatcherOptions {
  std::string broker_id = "broker";
  std::chrono::milliseconds heartbeat_interval = options::broker::kHeartbeat.default_seconds();
  // Intervals of silence before a peer is dead.
  int liveness = static_cast<int>(options::broker::kLiveness.default_integer());
  // Wait for a worker to (re)appear.
  std::chrono::milliseconds no_worker_grace = options::broker::kNoWorkerGrace.default_seconds();
  std::size_t default_max_queue = 1024;
  std::map<std::string, std::size_t> max_queue;    // per service
  int max_dispatches = 3;                          // a request is requeued at most this often - 1
  std::chrono::milliseconds orphan_grace{30'000};  // in-flight past deadline + this is forgotten
};

// Where the dispatcher's messages go. Frames start with the peer's routing id. A false return
// means the peer is unreachable (ROUTER_MANDATORY: EHOSTUNREACH, or its queue is full).
class Outbox {
 public:
  virtual ~Outbox() = default;
  virtual bool to_gateway(protocol::Frames& frames) = 0;
  virtual bool to_worker(protocol::Frames& frames) = 0;
};

struct Counters {
  std::uint64_t requests = 0;    // accepted from gateways
  std::uint64_t dispatched = 0;  // sent to workers (including requeues)
  std::uint64_t replies = 0;     // forwarded to gateways
  std::uint64_t requeued = 0;
  std::uint64_t worker_lost_replies = 0;  // 502 WORKER_LOST
  std::uint64_t expired = 0;              // 504 while queued
  std::uint64_t rejected_overloaded = 0;  // 503 OVERLOADED
  std::uint64_t rejected_no_workers = 0;  // 503 UNAVAILABLE "no workers"
  std::uint64_t malformed = 0;            // frames dropped as garbage
  std::uint64_t late_replies = 0;         // reply for a request not held by that worker
  std::uint64_t duplicate_requests = 0;   // correlation id already known
  std::uint64_t rerouted_requests = 0;    // ... from another connection: its reply follows it
  std::uint64_t unroutable = 0;           // sends refused by a ROUTER socket
  std::uint64_t gateway_gone_drops = 0;   // requests dropped because their gateway vanished
  std::uint64_t orphans = 0;              // in flight far past the deadline, forgotten
  std::uint64_t stall_drops = 0;          // queued when the broker stalled: 503, never run
  std::uint64_t workers_lost = 0;
};

class Dispatcher {
 public:
  Dispatcher(DispatcherOptions options, Outbox& outbox);
  ~Dispatcher();

  // `frames` starts with the sender's routing id. Frames are consumed (moved from).
  void on_gateway_message(protocol::Frames& frames, const Now& now);
  void on_worker_message(protocol::Frames& frames, const Now& now);
  // Heartbeats, liveness, queue expiry, the no-worker grace. Call at least every
  // heartbeat_interval / 2.
  void on_tick(const Now& now);
  // The broker did not run for `stalled` (frozen, or starved of CPU), long enough that its
  // gateways have declared it lost and answered or moved every request they sent it. Call before
  // handling anything received after the stall. What is still queued is answered 503
  // BROKER_UNAVAILABLE and never dispatched: its client was already told it failed. Requests
  // already at workers go on; a reply nobody waits for any more is discarded by the gateway.
  void on_stall(std::chrono::milliseconds stalled);
  // Shutdown: answer everything queued with 503 BROKER_UNAVAILABLE and refuse new requests.
  void begin_shutdown(const Now& now);
  // Shutdown after the drain timeout: answer whatever is still held with 503 BROKER_UNAVAILABLE,
  // so that gateways learn at once instead of at each request's deadline.
  void fail_in_flight(const std::string& detail);
  std::size_t in_flight() const;

  const Counters& counters() const { return counters_; }
  nlohmann::json stats(const Now& now) const;

 private:
  struct Worker;
  struct Service;
  struct Request;
  using RequestMap = std::unordered_map<std::string, Request>;  // key: correlation id bytes

  Service& service(const std::string& name, const Now& now);
  // The command of a message whose shape is valid; counts and rejects anything else.
  std::optional<protocol::Command> read_command(const protocol::Frames& frames);
  void handle_request(const Identity& gateway, protocol::Frames& frames, const Now& now);
  void handle_reply(Worker& worker, protocol::Frames& frames, const Now& now);
  void handle_ready(const Identity& id, const protocol::ReadyHeader& ready, const Now& now);
  void dispatch(Service& svc, const Now& now);
  // How many of the service's live workers get no requests because their circuit is open.
  static std::size_t ejected_workers(const Service& svc);
  bool send_to_worker(Worker& worker, Request& request, const Now& now);
  void remove_worker(const Identity& id, const char* why, const Now& now);
  // Answers what `svc` has queued with 503 BROKER_UNAVAILABLE; returns how many.
  std::size_t fail_queued(Service& svc, const std::string& detail);
  void reply_error(const Identity& gateway, const protocol::CorrelationId& id, int kind,
                   const std::string& service, const std::string& detail,
                   const char* retry_after = nullptr);
  void send_control(bool to_worker, const Identity& peer, protocol::Command command);
  bool gateway_known(const Identity& gateway) const;
  void touch_gateway(const Identity& gateway, const Now& now);

  DispatcherOptions options_;
  Outbox& outbox_;
  Counters counters_;
  std::unordered_map<Identity, std::unique_ptr<Worker>> workers_;
  std::map<std::string, std::unique_ptr<Service>> services_;
  std::unordered_map<Identity, Clock::time_point> gateways_;  // id -> expiry
  std::unique_ptr<RequestMap> requests_;  // every request the broker holds, queued or in flight
  Clock::time_point next_heartbeat_{};
  bool shutting_down_ = false;
};

}  // namespace courier::broker
