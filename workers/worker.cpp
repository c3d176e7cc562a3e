#include "workers/worker.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <random>

#include "common/errors.hpp"
#include "common/ids.hpp"
#include "common/io_loop.hpp"

namespace courier::workers {

using protocol::Command;
using Clock = std::chrono::steady_clock;

std::uint32_t capacity_share(std::uint32_t total, std::size_t brokers, std::size_t rank) {
  brokers = std::max<std::size_t>(1, brokers);
  const auto base = total / brokers;
  const auto extra = rank < total % brokers ? 1u : 0u;
  return std::max<std::uint32_t>(1, static_cast<std::uint32_t>(base + extra));
}

struct Worker::Link {
  Link(Worker& owner, std::size_t index_, zmq::context_t& context, std::string endpoint)
      : index(index_),
        peer(context, owner.io_,
             BrokerPeer::Options{std::move(endpoint), owner.options_.heartbeat_interval,
                                 owner.options_.liveness, /*reconnect_when_silent=*/false,
                                 owner.options_.curve},
             BrokerPeer::Handlers{
                 [&owner, this](protocol::Frames& f) { owner.on_message(*this, f); },
                 [&owner, this](protocol::Frames& hb, bool alive) {
                   owner.heartbeat(*this, hb, alive);
                 },
                 // Lost: the next READY (on reconnect, or as the heartbeat) registers us again.
                 nullptr,
                 // A new connection is a new peer to the broker: register at once.
                 [&owner, this] { owner.send_ready(*this); },
                 [&owner, this](auto now) { owner.on_tick(*this, now); }, nullptr}) {}

  const std::string& endpoint() const { return peer.endpoint(); }

  const std::size_t index;
  // io-thread state, like everything the worker does with its links.
  std::uint32_t advertised = 0;  // the capacity the last READY carried
  // Last: it calls back into the members above, so it must stop before they go.
  BrokerPeer peer;
};

// Sends a streamed reply's parts as STREAM messages through the broker that sent the request.
class Worker::Stream final : public ReplyStream {
 public:
  Stream(Worker& owner, std::size_t link, const protocol::CorrelationId& id, Cancellation& cancel)
      : ReplyStream(owner.io_.get_executor()),
        owner_(owner),
        link_(link),
        id_(id),
        cancel_(cancel) {}

 protected:
  bool send_head(const ReplyEnvelope& head) override {
    // The broker holds the request until then: the longest this stream may run from its head.
    until_ms_ = protocol::unix_ms_now() +
                static_cast<std::uint64_t>(owner_.service_.stream_max_duration.count());
    const auto payload = encode(head);
    return send_frames(protocol::StreamPart::kHead, zmq::message_t(payload.data(), payload.size()));
  }
  bool send(protocol::StreamPart part, std::string_view payload) override {
    return send_frames(part, zmq::message_t(payload.data(), payload.size()));
  }
  // The rest of the stream can no longer reach the gateway: stop reading the upstream (the
  // forwarder's stream log line says why it ended).
  void on_send_failed() override { cancel_.cancel(); }

 private:
  // At once rather than post(): a post that finds the queue full is dropped and only counted,
  // and a stream must know, or it would go on and END with a hole in the body. The request runs
  // on the io thread that runs the links, where send_now may be called.
  bool send_frames(protocol::StreamPart part, zmq::message_t payload) {
    protocol::Frames frames;
    frames.reserve(protocol::kStreamFrames);
    protocol::add_stream(frames, {id_, part, until_ms_}, std::move(payload));
    return owner_.links_[link_]->peer.link().send_now(frames);
  }

  Worker& owner_;
  const std::size_t link_;
  const protocol::CorrelationId id_;
  Cancellation& cancel_;
  std::uint64_t until_ms_ = 0;
};

struct Worker::Control {
  Control(Worker& owner, std::size_t link_, const protocol::CorrelationId& id)
      : link(link_), stream(owner, link_, id, cancel) {}
  const std::size_t link;
  Cancellation cancel;
  Stream stream;
};

Worker::Worker(zmq::context_t& context, WorkerOptions options, ServiceConfig service)
    : options_(std::move(options)), service_(std::move(service)), work_(io_.get_executor()) {
  forwarder_ = std::make_unique<Forwarder>(io_.get_executor(), service_, options_.worker_id,
                                           std::random_device{}());
  for (const auto& endpoint : options_.brokers) {
    links_.push_back(std::make_unique<Link>(*this, links_.size(), context, endpoint));
  }
}

Worker::~Worker() {
  if (!io_thread_.joinable()) io_.stop();  // never started: the links close on this thread
  stop_links();
  work_.reset();
  io_.stop();
  if (io_thread_.joinable()) io_thread_.join();
  // Then the members go: links_, io_ (with any request still running: its coroutine is destroyed
  // and lets go of the forwarder) and last the forwarder, by then without an I/O object.
  links_.clear();
  forwarder_->close_idle();
}

void Worker::stop_links() {
  for (auto& link : links_) link->peer.stop();
}

void Worker::start() {
  // Logged before the io thread exists: the first log call creates spdlog's registry, and
  // libspdlog (not built with TSan) would otherwise race the io thread's first use in its eyes.
  std::string brokers;
  for (const auto& b : options_.brokers) brokers += (brokers.empty() ? "" : ", ") + b;
  spdlog::info("worker {} for {} -> {} (capacity {}), broker {}", options_.worker_id, service_.name,
               service_.upstream.text, service_.worker_concurrency, brokers);
  started_ = Clock::now();
  io_thread_ = std::thread([this] { run_io(io_, "worker"); });
  for (auto& link : links_) link->peer.start();
}

std::uint32_t Worker::share_for(const Link& link) const {
  // A broker counts if it answers, if it has not answered yet but the worker has only just
  // started (so the first READYs do not each carry the whole capacity), and always for the link
  // asking: a READY it sends is what makes its broker answer.
  const bool starting = Clock::now() < started_ + options_.heartbeat_interval * options_.liveness;
  std::size_t live = 0;
  std::size_t rank = 0;
  for (const auto& l : links_) {
    const bool counts = l.get() == &link || l->peer.alive() || (starting && !l->peer.ever_alive());
    if (!counts) continue;
    ++live;
    if (l->index < link.index) ++rank;
  }
  return capacity_share(service_.worker_concurrency, live, rank);
}

void Worker::send_ready(Link& link) {
  protocol::Frames frames;
  const auto share = share_for(link);
  protocol::add_ready(frames, service_.name, share, options_.worker_id);
  if (link.peer.link().send_now(frames)) link.advertised = share;
  if (draining_.load()) {
    protocol::Frames drain;
    protocol::add_header(drain, Command::kDrain);
    link.peer.link().send_now(drain);
  }
}

void Worker::on_message(Link& link, protocol::Frames& frames) {
  Command command{};
  if (protocol::parse_command(frames, 0, command)) {
    spdlog::warn("malformed message from broker {} dropped", link.endpoint());
    return;
  }
  switch (command) {
    case Command::kRequest: {
      protocol::RequestHeader header;
      if (protocol::parse_request(frames, 0, header)) {
        note_malformed(link, "dropped: bad frames");
        return;
      }
      const ControlKey key{link.index, header.id};
      if (controls_.count(key)) {
        // The first copy's final message answers it; running it twice could send it twice.
        note_malformed(link, "dropped: its id is already in flight here");
        return;
      }
      if (header.stamps) (*header.stamps)[protocol::Stamp::kWorkerIn] = protocol::unix_us_now();
      // Registered before the coroutine starts, so that a CANCEL right behind it finds it.
      auto control = std::make_unique<Control>(*this, link.index, header.id);
      controls_.emplace(key, control.get());
      in_flight_.fetch_add(1);
      asio::co_spawn(io_,
                     run_request(link.index, header.id, header.flags,
                                 std::move(frames[protocol::kEnvelopeIndex]), std::move(control),
                                 header.stamps),
                     [](std::exception_ptr e) {
                       if (e) {
                         try {
                           std::rethrow_exception(e);
                         } catch (const std::exception& ex) {
                           spdlog::error("request failed with exception: {}", ex.what());
                         }
                       }
                     });
      return;
    }
    case Command::kDisconnect: {
      // The broker does not know us (it restarted, or declared us dead): nothing we send for the
      // requests it gave us reaches their clients any more, so stop them (streams end, upstream
      // connections close) instead of running them for nobody. Then register again.
      const auto orphaned = cancel_requests_of(link);
      spdlog::info("broker {} asked us to register again; {} requests from it cancelled",
                   link.endpoint(), orphaned);
      send_ready(link);
      return;
    }
    case Command::kHeartbeat:
      return;
    case Command::kCredit:
    case Command::kCancel:
      on_control(link, command, frames);
      return;
    default:
      spdlog::warn("unexpected command {} from broker {}", static_cast<int>(command),
                   link.endpoint());
  }
}

void Worker::on_control(Link& link, Command command, protocol::Frames& frames) {
  protocol::CorrelationId id{};
  std::uint32_t bytes = 0;
  const auto ec = command == Command::kCredit ? protocol::parse_credit(frames, 0, id, bytes)
                                              : protocol::parse_cancel(frames, 0, id);
  if (ec) {
    note_malformed(link, command == Command::kCredit ? "CREDIT dropped: bad frames"
                                                     : "CANCEL dropped: bad frames");
    return;
  }
  const auto it = controls_.find({link.index, id});
  // Late (the request is answered), or from a broker that did not send it: not its to steer.
  if (it == controls_.end()) {
    ignored_controls_.fetch_add(1);
    return;
  }
  if (command == Command::kCredit) {
    if (!it->second->stream.add_credit(bytes)) excess_credits_.fetch_add(1);
  } else {
    it->second->cancel.cancel();
  }
}

std::size_t Worker::cancel_requests_of(const Link& link) {
  // Keys first: a cancel hook must not find the map changing under the loop.
  std::vector<ControlKey> keys;
  for (const auto& [key, control] : controls_) {
    if (key.first == link.index) keys.push_back(key);
  }
  for (const auto& key : keys) {
    if (const auto it = controls_.find(key); it != controls_.end()) it->second->cancel.cancel();
  }
  return keys.size();
}

asio::awaitable<void> Worker::run_request(std::size_t link, protocol::CorrelationId id,
                                          std::uint8_t flags, zmq::message_t envelope,
                                          std::unique_ptr<Control> control,
                                          std::optional<protocol::Stamps> stamps) {
  // Whatever way this ends, the id is forgotten before the coroutine's frame goes.
  struct Forget {
    Worker& worker;
    ControlKey key;
    ~Forget() { worker.controls_.erase(key); }
  } forget{*this, {link, id}};
  std::optional<ReplyEnvelope> result;
  bool holds_slot = false;
  const auto started = std::chrono::steady_clock::now();
  try {
    RequestEnvelope request;
    // Decoded before the wait for a slot, so that a request cancelled while it waits can be
    // logged by its request id.
    if (admit(link, id, flags, envelope, request, result)) {
      envelope = zmq::message_t();  // free the request buffer before the wait and the upstream
      holds_slot = co_await acquire_slot(control->cancel);
      if (control->cancel.cancelled() && !control->stream.started()) {
        forwarder_->note_cancelled(request, "queued");
        refuse(id, ErrorKind::kCancelled, "cancelled by the client (queued)", result);
        forwarder_->log_access(request, *result, started);
      } else {
        UpstreamMarks marks;
        co_await forwarder_->forward(request, control->stream, control->cancel, result, &marks);
        if (stamps) {
          (*stamps)[protocol::Stamp::kUpstreamSent] = marks.sent_us;
          (*stamps)[protocol::Stamp::kUpstreamFirstByte] = marks.head_us;
        }
      }
    }
  } catch (const std::exception& e) {
    fail(id, *control, e, result);
  }
  if (holds_slot) release_slot();
  if (result) reply(link, id, *result, stamps);
  in_flight_.fetch_sub(1);
}

bool Worker::admit(std::size_t link, const protocol::CorrelationId& id, std::uint8_t flags,
                   const zmq::message_t& envelope, RequestEnvelope& request,
                   std::optional<ReplyEnvelope>& out) {
  if (const auto ec = decode(protocol::view(envelope), request)) {
    note_malformed(*links_[link], "refused: " + ec.message());
    refuse(id, ErrorKind::kBadRequest, "invalid request envelope: " + ec.message(), out);
    return false;
  }
  protocol::RequestHeader header;
  header.id = id;
  header.flags = flags;
  if (const auto why = protocol::request_mismatch(header, request); !why.empty()) {
    // Frames are hostile input: run only what the frames and the envelope agree on.
    note_malformed(*links_[link], "refused: " + std::string(why));
    refuse(id, ErrorKind::kBadRequest, std::string(why), out);
    return false;
  }
  return true;
}

// Reply fields are stamped once, by whoever made the reply: the forwarder for a forwarded request
// (id, worker id, attempts, upstream time), the worker for the refusals and failures it makes
// itself (id from the frame, worker id).
void Worker::refuse(const protocol::CorrelationId& id, ErrorKind kind, const std::string& detail,
                    std::optional<ReplyEnvelope>& out) const {
  out = make_error_reply(kind, service_.name, detail, id);
  out->worker_id = options_.worker_id;
}

void Worker::fail(const protocol::CorrelationId& id, Control& control, const std::exception& e,
                  std::optional<ReplyEnvelope>& out) const {
  // Whatever went wrong, the request is answered and its slot and credit come back.
  spdlog::error("request failed with exception: {}", e.what());
  if (control.stream.started()) {
    out.reset();
    if (!control.stream.finished()) control.stream.abort("worker error");
  } else {
    refuse(id, ErrorKind::kBadResponse, std::string("worker error: ") + e.what(), out);
  }
}

void Worker::note_malformed(const Link& link, std::string_view what) {
  const auto n = malformed_requests_.fetch_add(1) + 1;
  if (n == 1 || n % 1000 == 0) {
    spdlog::warn("malformed request from broker {} {} ({} malformed so far)", link.endpoint(), what,
                 n);
  }
}

std::size_t Worker::brokers_alive() const {
  std::size_t alive = 0;
  for (const auto& link : links_) alive += link->peer.alive() ? 1 : 0;
  return alive;
}

std::optional<WorkerMetricsSnapshot> Worker::metrics_snapshot(std::chrono::milliseconds wait) {
  auto promise = std::make_shared<std::promise<WorkerMetricsSnapshot>>();
  auto future = promise->get_future();
  asio::post(io_, [this, promise] {
    WorkerMetricsSnapshot s;
    s.service = service_.name;
    s.forwarder = forwarder_->stats();
    s.circuit = forwarder_->circuit_status(Clock::now());
    s.pool = forwarder_->pool().stats();
    s.idle_connections = forwarder_->pool().idle_connections();
    s.open_connections = forwarder_->pool().open_connections();
    s.in_flight = in_flight_.load();
    s.concurrency = service_.worker_concurrency;
    s.brokers = links_.size();
    s.brokers_alive = brokers_alive();
    s.malformed_requests = malformed_requests_.load();
    s.ignored_controls = ignored_controls_.load();
    s.excess_credits = excess_credits_.load();
    promise->set_value(std::move(s));
  });
  if (future.wait_for(wait) != std::future_status::ready) return std::nullopt;
  return future.get();
}

WorkerStatus Worker::status() const {
  const auto& s = forwarder_->stats();
  const auto c = forwarder_->circuit_status(std::chrono::steady_clock::now());
  WorkerStatus out;
  out.circuit = c.enabled ? to_string(c.state) : "disabled";
  // The broker sends a worker that would fail everything fast nothing while other workers of
  // the service can serve.
  out.circuit_accepting = c.accepting;
  out.circuit_failure_rate = c.window.failure_rate();
  out.circuit_window_attempts = static_cast<std::uint64_t>(std::max(0, c.window.attempts));
  out.circuit_window_failures = static_cast<std::uint64_t>(std::max(0, c.window.failures));
  out.circuit_opened = c.opened;
  out.circuit_retry_in_ms =
      static_cast<std::uint64_t>(std::max<std::int64_t>(0, c.retry_in.count()));
  out.circuit_failures = s.circuit_failures;
  out.circuit_rejections = s.circuit_rejections;
  out.requests = s.requests;
  out.attempts = s.attempts;
  out.retries = s.retries;
  out.error_replies = s.error_replies;
  out.budget_rejections = s.budget_rejections;
  return out;
}

asio::awaitable<bool> Worker::acquire_slot(Cancellation& cancel) {
  if (cancel.cancelled()) co_return false;
  if (running_ < service_.worker_concurrency) {
    ++running_;
    co_return true;
  }
  asio::steady_timer wake(io_, asio::steady_timer::time_point::max());
  waiting_.push_back(&wake);
  bool withdrawn = false;
  Cancellation::Scope scope(&cancel, [&] {
    // Still in line: leave it. Already handed a slot (woken, not yet resumed): keep it, and the
    // caller gives it back.
    const auto it = std::find(waiting_.begin(), waiting_.end(), &wake);
    if (it == waiting_.end()) return;
    waiting_.erase(it);
    withdrawn = true;
    wake.cancel();
  });
  boost::system::error_code ec;
  co_await wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  // Unless withdrawn, release_slot() handed its slot to this request: running_ is unchanged.
  co_return !withdrawn;
}

void Worker::release_slot() {
  if (!waiting_.empty()) {
    auto* next = waiting_.front();
    waiting_.pop_front();
    next->cancel();
    return;
  }
  --running_;
}

void Worker::reply(std::size_t link, const protocol::CorrelationId& id, const ReplyEnvelope& reply,
                   std::optional<protocol::Stamps>& stamps) {
  protocol::Frames frames;
  frames.reserve(protocol::kReplyFrames + 1);
  auto envelope = encode(reply);
  // Only to a broker that sent stamps: an older one would refuse the extra frame.
  if (stamps) (*stamps)[protocol::Stamp::kWorkerOut] = protocol::unix_us_now();
  protocol::add_reply(frames, id, std::move(envelope), stamps ? &*stamps : nullptr);
  // Through the broker that sent the request: only it knows where the reply goes.
  links_[link]->peer.link().post(std::move(frames));
}

void Worker::on_tick(Link& link, Clock::time_point) {
  // Another broker came or went: this one's share of the capacity changed.
  if (link.peer.alive() && !draining_.load() && share_for(link) != link.advertised) {
    send_ready(link);
  }
}

void Worker::heartbeat(Link& link, protocol::Frames& frames, bool alive) {
  if (!alive) {
    send_ready(link);
    return;
  }
  protocol::add_header(frames, Command::kHeartbeat);
  const auto status = encode(this->status());
  frames.emplace_back(status.data(), status.size());
}

std::size_t Worker::drain_and_stop() {
  draining_.store(true);
  for (auto& link : links_) {
    protocol::Frames drain;
    protocol::add_header(drain, Command::kDrain);
    link->peer.link().post(std::move(drain));
  }
  spdlog::info("draining: {} requests in flight, waiting up to {} ms", in_flight_.load(),
               options_.drain_timeout.count());
  const auto until = Clock::now() + options_.drain_timeout;
  while (in_flight_.load() > 0 && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto left = static_cast<std::size_t>(std::max<std::int64_t>(0, in_flight_.load()));
  for (auto& link : links_) {
    protocol::Frames bye;
    protocol::add_header(bye, Command::kDisconnect);
    link->peer.link().post(std::move(bye));
  }
  stop_links();  // flushes queued replies (linger) before closing
  work_.reset();
  io_.stop();
  if (io_thread_.joinable()) io_thread_.join();
  return left;
}

}  // namespace courier::workers
