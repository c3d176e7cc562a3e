// The worker process: registers its service and capacity with its brokers, runs each request it
// is given through the Forwarder, replies through the broker that sent it, heartbeats,
// re-registers, and drains on shutdown.
//
// With several brokers, the worker splits its capacity between the ones that answer (see
// capacity_share), and moves the share of a lost broker to the others until it returns.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/asio.hpp"
#include "common/broker_peer.hpp"
#include "common/config.hpp"
#include "common/curve.hpp"
#include "common/errors.hpp"
#include "common/options.hpp"
#include "common/status.hpp"
#include "workers/forwarder.hpp"
#include "workers/worker_metrics.hpp"

namespace courier::workers {

// The credit a worker of `total` capacity gives the broker of `rank` (0-based) among `brokers`
// live ones: an even split, the remainder to the first ranks, never less than 1.
std::uint32_t capacity_share(std::uint32_t total, std::size_t brokers, std::size_t rank);

struct WorkerOptions {
  std::vector<std::string> brokers = {options::worker::kBroker.default_text()};
  std::string worker_id;  // for logs and stats
  std::chrono::milliseconds heartbeat_interval = options::worker::kHeartbeat.default_seconds();
  int liveness = static_cast<int>(options::worker::kLiveness.default_integer());
  std::chrono::milliseconds drain_timeout = options::worker::kDrainTimeout.default_seconds();
  std::optional<curve::ClientKeys> curve;  // set: every broker link is a CURVE client
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
  // REQUEST messages from a broker that were dropped or refused as malformed (any thread).
  std::uint64_t malformed_requests() const { return malformed_requests_.load(); }
  // CREDIT and CANCEL messages for an id this worker does not hold from that broker (any thread).
  std::uint64_t ignored_controls() const { return ignored_controls_.load(); }
  // CREDIT messages that would have raised a stream's credit past kMaxStreamCredit: the excess
  // was ignored (any thread).
  std::uint64_t excess_credits() const { return excess_credits_.load(); }

  // From any thread: brokers that answer heartbeats (the worker is registered with them).
  std::size_t brokers_alive() const;
  bool draining() const { return draining_.load(); }
  // From any thread but the io thread: a snapshot for /metrics taken on the io thread, or
  // nullopt if it did not answer within `wait` (stopped, or not started).
  std::optional<WorkerMetricsSnapshot> metrics_snapshot(std::chrono::milliseconds wait);

 private:
  // Everything below runs on the io thread (io_), which runs the broker links and the upstream
  // requests alike, unless marked otherwise.
  struct Link;
  // What the worker holds for each request from its arrival until its final message: which
  // broker sent it (only that one may cancel or credit it), its cancellation and its stream.
  class Stream;
  struct Control;
  void on_message(Link& link, protocol::Frames& frames);
  // CREDIT or CANCEL: acts on the control of the id if `link` sent that request.
  void on_control(Link& link, protocol::Command command, protocol::Frames& frames);
  void on_tick(Link& link, std::chrono::steady_clock::time_point now);
  // Cancels every request held from `link` (its broker forgot us); returns how many.
  std::size_t cancel_requests_of(const Link& link);
  // What a due heartbeat carries: READY until the broker answers (it registers us on arrival),
  // then HEARTBEAT with this worker's status.
  void heartbeat(Link& link, protocol::Frames& frames, bool alive);
  // Registers with the link's broker, advertising its current share.
  void send_ready(Link& link);
  std::uint32_t share_for(const Link& link) const;
  // `id` and `flags` from the REQUEST's frames, checked against the envelope before it runs.
  // `stamps`: the REQUEST's STAMPS (with kWorkerIn written), carried back in the REPLY.
  asio::awaitable<void> run_request(std::size_t link, protocol::CorrelationId id,
                                    std::uint8_t flags, zmq::message_t envelope,
                                    std::unique_ptr<Control> control,
                                    std::optional<protocol::Stamps> stamps);
  void reply(std::size_t link, const protocol::CorrelationId& id, const ReplyEnvelope& reply,
             std::optional<protocol::Stamps>& stamps);
  // run_request's steps between its waits, kept out of the coroutine so that their locals (the
  // frames' header, the refusal's strings and reply) take no room in its frame, which a request
  // holds until it is answered; each writes its refusal into `out`. Decodes `envelope` into
  // `request`; false, with the refusal in `out`, if it does not decode or does not agree with the
  // frames.
  bool admit(std::size_t link, const protocol::CorrelationId& id, std::uint8_t flags,
             const zmq::message_t& envelope, RequestEnvelope& request,
             std::optional<ReplyEnvelope>& out);
  void refuse(const protocol::CorrelationId& id, ErrorKind kind, const std::string& detail,
              std::optional<ReplyEnvelope>& out) const;
  // An exception escaped the forward: the request is still answered (or its stream aborted).
  void fail(const protocol::CorrelationId& id, Control& control, const std::exception& e,
            std::optional<ReplyEnvelope>& out) const;
  // At most worker_concurrency requests run at once. Brokers may together hold a little more
  // credit than that while shares move between them; the excess waits here.
  // False if `cancel` fired while it waited: it holds no slot then.
  asio::awaitable<bool> acquire_slot(Cancellation& cancel);
  void release_slot();
  // What the heartbeats carry about this worker: its breaker state and counters.
  WorkerStatus status() const;
  void stop_links();  // from any thread
  // Counts a malformed REQUEST and logs it, the first and then one in 1000: a broker (or whoever
  // speaks for it) must not be able to flood the log.
  void note_malformed(const Link& link, std::string_view what);

  WorkerOptions options_;
  ServiceConfig service_;
  // Declared before io_, so it outlives it: destroying io_ destroys the coroutines of requests
  // still running (a drain that timed out), and they use the forwarder until then. Its idle
  // connections are closed first (~Worker), as they must go before their io_context.
  std::unique_ptr<Forwarder> forwarder_;
  // The controls of the requests held, by link and id: a gateway that fails over to another
  // broker sends a request again under its id, and that copy runs (the broker only does so for a
  // retry-safe one). Each is owned by its request's coroutine, so that it goes with it; declared
  // before io_ for the same reason as the forwarder.
  using ControlKey = std::pair<std::size_t, protocol::CorrelationId>;
  std::map<ControlKey, Control*> controls_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::unique_ptr<Link>> links_;
  std::thread io_thread_;
  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<std::uint64_t> malformed_requests_{0};
  std::atomic<bool> draining_{false};
  std::chrono::steady_clock::time_point started_{};
  std::uint32_t running_ = 0;
  std::deque<asio::steady_timer*> waiting_;
  std::atomic<std::uint64_t> ignored_controls_{0};
  std::atomic<std::uint64_t> excess_credits_{0};
};

}  // namespace courier::workers
