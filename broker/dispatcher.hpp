// The broker's protocol switch, apart from its sockets: decodes each gateway and worker message and
// hands it to the worker registry, the per-service queues and the in-flight table.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>

#include "broker/counters.hpp"
#include "broker/in_flight_table.hpp"
#include "broker/log_limiter.hpp"
#include "broker/now.hpp"
#include "broker/service_queues.hpp"
#include "broker/worker_registry.hpp"
#include "common/frames.hpp"
#include "common/options.hpp"

namespace courier::broker {

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
  // Bounds on what peers can make the broker hold (every frame is untrusted). With `services`
  // declared, a READY or REQUEST for any other service is refused; with none declared, services
  // are created on demand up to `max_services`.
  std::set<std::string> services;
  std::size_t max_services =
      static_cast<std::size_t>(options::broker::kMaxServices.default_integer());
  std::size_t max_workers_per_service =
      static_cast<std::size_t>(options::broker::kMaxWorkersPerService.default_integer());
  std::size_t max_gateways =
      static_cast<std::size_t>(options::broker::kMaxGateways.default_integer());
  // Malformed messages from one registered worker before it is forgotten (as if lost).
  std::uint32_t max_worker_strikes = 16;
  // STATS answers are rendered at most this often; between, the last rendering is sent again.
  std::chrono::milliseconds stats_cache{100};
};

// Where the dispatcher's messages go. Frames start with the peer's routing id. A false return
// means the peer is unreachable (ROUTER_MANDATORY: EHOSTUNREACH, or its queue is full).
class Outbox {
 public:
  virtual ~Outbox() = default;
  virtual bool to_gateway(protocol::Frames& frames) = 0;
  virtual bool to_worker(protocol::Frames& frames) = 0;
};

class Dispatcher {
 public:
  Dispatcher(DispatcherOptions options, Outbox& outbox);
  ~Dispatcher();

  // `frames` starts with the sender's routing id. Frames are consumed (moved from). Never throws
  // for anything the frames hold. `principal` is the gateway's authenticated identity (the ZAP
  // user id under CURVE), empty if none: a request re-sent under a held correlation id takes the
  // reply's route over only from the same principal, never from an unauthenticated connection.
  void on_gateway_message(protocol::Frames& frames, const Now& now,
                          std::string_view principal = {});
  void on_worker_message(protocol::Frames& frames, const Now& now);
  // An exception escaped the handling of one message (the socket loop caught it): counted and
  // logged at a rate limit; the message is dropped.
  void on_handler_error(const char* what, const Now& now);
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
  // For the Broker's own counters (CURVE handshakes), so that STATS shows them too.
  Counters& counters() { return counters_; }
  BrokerStats stats(const Now& now) const;

 private:
  enum class Malformed { kShape, kField, kMisrouted, kStatus };
  // Counts and logs (at a rate limit) one malformed message. A registered worker that keeps
  // sending them is removed as lost; true if `worker` was (it must not be used any more).
  bool malformed(Malformed reason, const char* what, const Now& now, Worker* worker = nullptr);
  // The command of a message whose shape is valid; counts and rejects anything else.
  std::optional<protocol::Command> read_command(const protocol::Frames& frames, bool from_worker,
                                                const Now& now);
  // Whether a new gateway fits under max_gateways (a known one always does).
  bool admit_gateway(const Identity& gateway, const Now& now);
  // Whether a READY for this service may register a worker; counts and logs a refusal.
  bool admits_worker(const std::string& service, const Now& now);
  // Whether a REQUEST may name this service (declared, or room for one more).
  bool admits_service(const std::string& service) const;
  void handle_request(const Identity& gateway, std::string_view principal, protocol::Frames& frames,
                      const Now& now);
  void handle_stats(const Identity& gateway, const protocol::Frames& frames, const Now& now);
  void handle_ready(const Identity& id, const protocol::ReadyHeader& ready, const Now& now);
  void handle_reply(Worker& worker, protocol::Frames& frames, const Now& now);
  void handle_stream(Worker& worker, protocol::Frames& frames, const Now& now);
  void handle_credit(const Identity& gateway, std::string_view principal, protocol::Frames& frames,
                     const Now& now);
  void handle_cancel(const Identity& gateway, std::string_view principal,
                     const protocol::Frames& frames, const Now& now);
  // A final REPLY, END or ABORT from the worker holding `key`: frees its credit, forwards
  // `frames` unless the request was cancelled (or its gateway is gone), dispatches more.
  void complete(Worker& worker, const std::string& key, protocol::Frames& frames, bool abort,
                const Now& now);
  // Marks a request at a worker cancelled and tells the worker; false if it already was.
  bool cancel_at_worker(Request& request);
  // Tells `worker` to stop working on `id`, which the broker no longer waits for.
  void send_cancel(const Identity& worker, const protocol::CorrelationId& id);
  // A gateway is gone (declared lost, or said DISCONNECT): its queued requests are dropped at
  // once, so that none is dispatched for nobody, and those at workers cancelled, so that no
  // worker keeps working for nobody.
  void forget_gateway(const Identity& gateway);
  void handle_worker_heartbeat(Worker& worker, const protocol::Frames& frames, const Now& now);
  void dispatch(ServiceQueue& svc, const Now& now);
  bool send_to_worker(Worker& worker, Request& request);
  void remove_worker(const Identity& id, const char* why, const Now& now);
  // Answers what `svc` has queued with 503 BROKER_UNAVAILABLE; returns how many.
  std::size_t fail_queued(ServiceQueue& svc, const std::string& detail);

  // The steps of a tick.
  void send_heartbeats(const Now& now);
  void expire_workers(const Now& now);
  void expire_gateways(const Now& now);
  void expire_queued(const Now& now);
  void forget_orphans(const Now& now);
  void drop_stale_and_dispatch(const Now& now);

  void reply_error(const Identity& gateway, const protocol::CorrelationId& id, int kind,
                   const std::string& service, const std::string& detail,
                   const char* retry_after = nullptr);
  // Ends a streamed reply the gateway is reading with STREAM ABORT (until 0), `why` cut to
  // kMaxAbortReason bytes. True if the ABORT went to a known gateway (what stream_aborts counts).
  bool send_abort(const Identity& gateway, const protocol::CorrelationId& id, std::string why);
  void send_control(bool to_worker, const Identity& peer, protocol::Command command);
  bool gateway_known(const Identity& gateway) const;
  void touch_gateway(const Identity& gateway, const Now& now);

  DispatcherOptions options_;
  Outbox& outbox_;
  Counters counters_;
  WorkerRegistry workers_;
  ServiceQueues queues_;
  InFlightTable requests_;  // every request the broker holds, queued or at a worker
  std::unordered_map<Identity, Clock::time_point> gateways_;  // id -> expiry
  std::string stats_text_;  // the last STATS rendering, reused for stats_cache
  std::optional<Clock::time_point> stats_rendered_;
  LogLimiter malformed_log_{"broker dropped a malformed message"};
  LogLimiter refused_log_{"broker refused a peer"};
  LogLimiter foreign_id_log_{"broker refused a request re-using another gateway's correlation id"};
  LogLimiter foreign_control_log_{
      "broker dropped a CREDIT or CANCEL from a gateway that did not send the request"};
  LogLimiter error_log_{"broker caught an error handling one message"};
  Clock::time_point next_heartbeat_{};
  bool shutting_down_ = false;
};

}  // namespace courier::broker
