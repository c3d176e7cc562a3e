// The gateway's link to its brokers: sends request envelopes, matches replies to their callers by
// correlation ID, heartbeats each broker, and answers a lost broker's pending requests at once.
//
// With several brokers, each request goes to a connected broker that reports workers for its
// service, the one with the fewest requests pending from this gateway (ties rotate). When a broker
// is lost, its retry-safe pending requests are sent again through another connected broker (the
// gateway keeps a shared, not copied, reference to their envelopes for that); the rest are
// answered 503 BROKER_UNAVAILABLE.
//
// A streamed reply (STREAM HEAD, DATA..., END or ABORT) reaches the same callback once per part,
// in order. Once its HEAD is out a request never moves to another broker: a lost broker ends it
// with an ABORT.
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

// Where a gateway reaches the broker it runs itself (gateway.embedded_broker).
inline constexpr std::string_view kEmbeddedBrokerEndpoint = "inproc://courier-embedded-broker";

struct BrokerClientOptions {
  std::vector<std::string> endpoints = {options::gateway::kBroker.default_text()};
  std::chrono::milliseconds heartbeat_interval = options::gateway::kHeartbeat.default_seconds();
  int liveness = static_cast<int>(options::gateway::kLiveness.default_integer());
  std::chrono::milliseconds stats_interval{500};
  std::optional<curve::ClientKeys> curve;  // set: every broker link is a CURVE client
};

// What a caller gets back: once a kReply (the reply's envelope frame, decoded by the caller on
// its own thread, or an error the gateway made itself), or for a stream a kHead, any number of
// kData, then exactly one kEnd or kAbort.
struct BrokerResult {
  enum class Kind : std::uint8_t { kReply, kHead, kData, kEnd, kAbort };
  Kind kind = Kind::kReply;
  // kReply, kHead: the reply envelope; kData, kEnd: body bytes; kAbort: why, as text (from the
  // worker or broker: untrusted, sanitize before logging).
  zmq::message_t envelope;
  // kReply only: set instead of `envelope` for our own errors. Behind a pointer: a call keeps a
  // BrokerResult slot for its reply while it waits, and the envelope's fields would double it.
  std::unique_ptr<ReplyEnvelope> local;
  // kReply only: its STAMPS frame (kGatewayReplyIn written), when it came with one; else empty.
  zmq::message_t stamps;

  // The request is over with this part: nothing more comes for it.
  bool final() const { return kind != Kind::kHead && kind != Kind::kData; }
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

  // Before start(): drive the broker links from `io` instead of a thread of the client's own, so
  // that a request and its reply cross no thread between the HTTP session and the ZeroMQ socket.
  // `io` must be run by exactly one thread (a ZeroMQ socket has one owner), and its owner must
  // call stop() before destroying it. The links are opened again on `io`.
  void run_on(asio::io_context& io);
  void start();
  void stop();

  // Thread-safe. `done` runs until a final() part, unless cancel() wins first: on a link thread,
  // on the caller's when no broker is connected, or on the thread calling stop(). A broker's
  // protocol error (DATA or END before HEAD, a second HEAD, a REPLY after HEAD, more DATA and END
  // bytes than the window granted) ends the request with a kAbort to the caller and a CANCEL to
  // that broker. After the HEAD, a REPLY or STREAM part from another broker is late: counted,
  // answered with a CANCEL to that broker, and the stream goes on.
  void submit(const protocol::RequestHeader& header, zmq::message_t envelope, Callback done);
  // The caller gave up (deadline, client gone): CANCEL goes to the broker that carries the
  // request, and a reply or stream part arriving later is discarded and counted as late. False
  // when the request was no longer pending (its final part is on the way to the caller).
  bool cancel(const protocol::CorrelationId& id);
  // The caller wrote `bytes` more of a stream's body to its client: CREDIT through the broker
  // that carries it. Ignored for a request no longer pending; `bytes` is clamped to
  // 1..kMaxCredit. What it sends widens the window the stream's parts are checked against.
  void credit(const protocol::CorrelationId& id, std::uint32_t bytes);

  // At least one broker answers heartbeats.
  bool connected() const;
  std::vector<BrokerStatus> brokers() const;
  std::uint64_t late_replies() const { return late_replies_.load(); }
  // STREAM parts that broke the order (DATA or END before HEAD, a second HEAD, REPLY after HEAD)
  // or the window.
  std::uint64_t stream_protocol_errors() const { return stream_errors_.load(); }
  // Pending requests sent again through another broker after theirs was lost.
  std::uint64_t failovers() const { return failovers_.load(); }
  std::size_t pending() const;

 private:
  struct Link;
  struct Pending {
    std::string service;
    Callback done;
    // Set at the HEAD (the callback moves here): shared so that each part is delivered outside
    // the lock while the entry stays, and a plain request pays no extra allocation.
    std::shared_ptr<Callback> stream;
    std::size_t link = 0;
    std::uint64_t deadline_ms = 0;
    std::uint8_t flags = 0;
    zmq::message_t envelope;  // a shared reference, kept only where failover may need it
    // Flow control, checked here on the link thread before a part is queued for the caller, so
    // that a broker ignoring its window cannot grow the caller's queue without bound.
    std::uint64_t granted = protocol::kInitialStreamWindow;  // plus every CREDIT sent
    std::uint64_t received = 0;                              // DATA and END payload bytes
  };

  void on_message(Link& link, protocol::Frames& frames);
  void on_stream(Link& link, protocol::Frames& frames);
  void send_cancel(std::size_t link, const protocol::CorrelationId& id);
  void on_tick(Link& link, std::chrono::steady_clock::time_point now);
  void on_unsent(Link& link, protocol::Frames& frames);
  void link_lost(Link& link, const std::string& detail);
  void fail_all(const std::string& detail);
  // Caller holds mutex_. The connected broker to send a request for `service` to, if any.
  Link* choose(std::string_view service, const Link* except = nullptr);

  BrokerClientOptions options_;
  zmq::context_t& context_;
  // One thread runs every broker link (their sockets, heartbeats and reply hand-off): the client's
  // own (io_, thread_), or the one running the io_context given to run_on().
  asio::io_context io_;
  asio::io_context* links_io_ = &io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  std::vector<std::unique_ptr<Link>> links_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Pending> pending_;  // correlation id bytes -> request
  std::size_t rotation_ = 0;
  std::atomic<bool> stopping_{false};  // stop() began: no broker counts as connected
  std::atomic<std::uint64_t> late_replies_{0};
  std::atomic<std::uint64_t> failovers_{0};
  std::atomic<std::uint64_t> stream_errors_{0};
};

// A part the gateway makes itself: a kAbort with `why` (broker lost, shutting down, protocol).
BrokerResult local_abort(std::string_view why);

}  // namespace courier::gateway
