// The broker process: two ROUTER sockets (gateways in front, workers behind) served by one thread
// that feeds the Dispatcher. SIGTERM/SIGINT arrive through a signalfd in the same epoll set, and
// with CURVE the ZAP requests of both sockets' handshakes too.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "broker/dispatcher.hpp"
#include "broker/zap_authenticator.hpp"
#include "common/curve.hpp"
#include "common/options.hpp"

namespace courier::broker {

// CURVE on both sockets: the broker's key pair and who may connect to which socket.
struct CurveServerOptions {
  curve::KeyPair own;
  std::vector<curve::NamedKey> gateways;  // admitted on the frontend
  std::vector<curve::NamedKey> workers;   // admitted on the backend
};

struct BrokerOptions {
  std::string frontend = options::broker::kFrontend.default_text();  // gateways connect here
  // An inproc:// endpoint bound on the frontend too, for a gateway in the same process: the
  // broker then runs on that gateway's ZeroMQ context (see Broker's constructor). Such a
  // broker may leave `frontend` empty, to serve no other gateway.
  std::string local_frontend;
  std::string backend = options::broker::kBackend.default_text();  // workers connect here
  // On SIGTERM: wait this long for replies.
  std::chrono::milliseconds drain_timeout = options::broker::kDrainTimeout.default_seconds();
  // ZMQ_MAXMSGSIZE per socket: a peer that sends a larger frame is disconnected by libzmq before
  // the frame is held in memory.
  std::int64_t max_request_message = options::broker::kMaxRequestMessage.default_integer();
  std::int64_t max_reply_message = options::broker::kMaxReplyMessage.default_integer();
  DispatcherOptions dispatcher;
  // Unset: no authentication, allowed only on loopback endpoints unless `insecure`.
  std::optional<CurveServerOptions> curve;
  bool insecure = false;
};

// Without CURVE, a non-loopback endpoint needs broker.insecure: the broker refuses to start (and
// --check-config to pass) otherwise. Throws ConfigError.
void check_plain_endpoints(const BrokerOptions& options);

class Broker : private Outbox {
 public:
  // With `shared_context`, the broker's sockets live in that context (which must outlive it):
  // a gateway in the same process reaches `local_frontend` through it, with no I/O thread in
  // between. Otherwise the broker has a context of its own.
  explicit Broker(BrokerOptions options, zmq::context_t* shared_context = nullptr);
  ~Broker() override;

  // Endpoints actually bound (a "*" port resolved), for tests and logs.
  std::string frontend_endpoint() const;
  std::string backend_endpoint() const;

  // Runs until stop() or a termination signal (if handle_signals), then drains. Returns 0 on a
  // clean exit. It is begin(), step(next_wait()) until false, end().
  int run(bool handle_signals);
  // The same loop for a caller that waits itself, in an event loop of its own: begin() once;
  // step(0) whenever loop_fd() is readable or next_wait() has passed, until it returns false
  // (stopped and drained); end(). One thread at a time, as for every ZeroMQ socket.
  void begin(bool handle_signals);
  // An epoll descriptor, readable when a source of the loop may have something; -1 before
  // begin() and after end().
  int loop_fd() const;
  // How long the loop may sleep before its next step: 0 while a socket may still hold messages,
  // else until its next tick, at most 100 ms.
  std::chrono::milliseconds next_wait() const;
  // Waits up to `wait` in epoll, then serves what is ready; false once stopped and drained.
  bool step(std::chrono::milliseconds wait);
  void end();
  void stop() { stop_.store(true); }
  // Not synchronised with run(): read only before run() starts or after it returns.
  const Counters& counters() const { return dispatcher_.counters(); }

  // From any thread (the admin listener): a STATS snapshot the loop made after this call, or,
  // if it made none within `wait` (busy, stopped, not started), the last one it made, if any.
  std::optional<BrokerStats> snapshot(std::chrono::milliseconds wait) const;
  // From any thread: true while run() serves (sockets bound, not stopping).
  bool serving() const { return serving_.load(); }

 private:
  bool to_gateway(protocol::Frames& frames) override;
  bool to_worker(protocol::Frames& frames) override;
  bool send(zmq::socket_t& socket, protocol::Frames& frames);
  // Each reads a bounded batch and leaves its source's `unread_` set if it stopped at the bound
  // (messages may be left), clear if it read until the socket had nothing more (EAGAIN).
  void receive(zmq::socket_t& socket, bool from_gateway);
  void answer_zap();
  // Handshakes that failed before ZAP was asked (no CURVE, a wrong broker key): socket monitors.
  void read_monitor(zmq::socket_t& monitor, bool frontend);

  // The loop's sources, in the order it serves them. libzmq's ZMQ_FD signals commands, not
  // messages: a socket is read when its descriptor signalled, and also after anything was sent on
  // it (the send may have taken the command that announced a message) or when its last batch
  // stopped at the bound. `unread_` holds those last two; epoll, the first.
  enum Source : std::uint32_t {
    kSignal,
    kZap,
    kFrontendMonitor,
    kBackendMonitor,
    kBackend,
    kFrontend,
    kSources
  };
  bool unread_[kSources] = {};
  int epoll_fd_ = -1;  // the loop's epoll set, while it runs
  struct Loop;
  std::unique_ptr<Loop> loop_;  // between begin() and end()

  BrokerOptions options_;
  std::unique_ptr<zmq::context_t> own_context_;  // null when the context is shared
  zmq::context_t& context_;
  zmq::socket_t frontend_;
  zmq::socket_t backend_;
  zmq::socket_t zap_;  // ROUTER on inproc://zeromq.zap.01, with CURVE only
  ZapAuthenticator authenticator_;
  zmq::socket_t frontend_monitor_;
  zmq::socket_t backend_monitor_;
  std::uint64_t failed_handshakes_[2] = {0, 0};  // frontend, backend
  std::uint64_t unreported_failures_[2] = {0, 0};
  Clock::time_point next_failure_report_[2] = {};
  Dispatcher dispatcher_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> serving_{false};
  protocol::Frames frames_;
  // Snapshots for other threads: asked for through snapshot_wanted_, made on the loop (which owns
  // the dispatcher) and handed over under the mutex.
  void publish_snapshot();
  mutable std::atomic<bool> snapshot_wanted_{false};
  mutable std::mutex snapshot_mutex_;
  mutable std::condition_variable snapshot_ready_;
  std::optional<BrokerStats> snapshot_;
  std::uint64_t snapshot_generation_ = 0;
};

// Blocks SIGTERM and SIGINT in the calling thread. Call before creating any thread or ZeroMQ
// context, so that every thread inherits the mask and only run()'s signalfd sees them.
void block_termination_signals();

}  // namespace courier::broker
