#include "broker/broker.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <tuple>

#include "common/config.hpp"

namespace courier::broker {

namespace {

sigset_t termination_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// Blocks them here too: run() may be the first to ask (a test, or an embedding without main.cpp),
// and a signal not blocked would kill the process instead of reaching the signalfd.
int open_termination_signalfd() {
  block_termination_signals();
  const sigset_t set = termination_signals();
  const int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "signalfd");
  return fd;
}

// The authenticated identity of the peer that sent `frame` (the ZAP handler's user id under
// CURVE), empty if none.
std::string_view principal_of(zmq::message_t& frame) {
  const char* user = zmq_msg_gets(frame.handle(), "User-Id");
  return user ? std::string_view(user) : std::string_view();
}

void configure_router(zmq::socket_t& socket, std::int64_t max_message) {
  socket.set(zmq::sockopt::maxmsgsize, max_message);
  // Unroutable sends fail loudly (EHOSTUNREACH) instead of vanishing; we count them.
  socket.set(zmq::sockopt::router_mandatory, 1);
  socket.set(zmq::sockopt::sndhwm, 100'000);
  socket.set(zmq::sockopt::rcvhwm, 100'000);
  socket.set(zmq::sockopt::linger, 1'000);
}

}  // namespace

void block_termination_signals() {
  const sigset_t set = termination_signals();
  if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) {
    throw std::system_error(errno, std::generic_category(), "pthread_sigmask");
  }
}

void check_plain_endpoints(const BrokerOptions& options) {
  if (options.curve) return;
  for (const auto* endpoint : {&options.frontend, &options.backend}) {
    if (!endpoint->empty() && !curve::is_loopback_endpoint(*endpoint) && !options.insecure) {
      throw ConfigError("refusing to listen on " + *endpoint +
                        " without CURVE: anyone who can reach it would be trusted. Configure "
                        "broker.curve.* (see docs/security.md), or set broker.insecure "
                        "(--insecure, COURIER_BROKER_INSECURE=true) to run so anyway");
    }
  }
}

Broker::Broker(BrokerOptions options, zmq::context_t* shared_context)
    : options_(std::move(options)),
      own_context_(shared_context ? nullptr : std::make_unique<zmq::context_t>(1)),
      context_(shared_context ? *shared_context : *own_context_),
      frontend_(context_, zmq::socket_type::router),
      backend_(context_, zmq::socket_type::router),
      dispatcher_(options_.dispatcher, *this) {
  configure_router(frontend_, options_.max_request_message);
  configure_router(backend_, options_.max_reply_message);
  if (options_.curve) {
    if (!curve::available()) {
      throw ConfigError("CURVE keys are configured but this libzmq was built without CURVE");
    }
    // Bound before any socket listens: libzmq asks whoever serves this endpoint about every
    // handshake, and a handshake nobody answers would be refused anyway.
    zap_ = zmq::socket_t(context_, zmq::socket_type::router);
    zap_.set(zmq::sockopt::linger, 0);
    zap_.bind(kZapEndpoint);
    authenticator_.allow(kGatewayDomain, options_.curve->gateways);
    authenticator_.allow(kWorkerDomain, options_.curve->workers);
    const auto secret = curve::decode(options_.curve->own.secret_key);
    if (!secret) throw ConfigError("the broker's CURVE secret key is not a z85 key");
    for (auto* socket : {&frontend_, &backend_}) {
      socket->set(zmq::sockopt::curve_server, 1);
      if (zmq_setsockopt(socket->handle(), ZMQ_CURVE_SECRETKEY, secret->data(), secret->size()) !=
          0) {
        throw zmq::error_t();
      }
    }
    frontend_.set(zmq::sockopt::zap_domain, kGatewayDomain);
    backend_.set(zmq::sockopt::zap_domain, kWorkerDomain);
    for (auto [socket, monitor, name] :
         {std::tuple{&frontend_, &frontend_monitor_, "inproc://courier-broker-monitor-frontend"},
          std::tuple{&backend_, &backend_monitor_, "inproc://courier-broker-monitor-backend"}}) {
      if (zmq_socket_monitor(
              socket->handle(), name,
              ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
        throw zmq::error_t();
      }
      *monitor = zmq::socket_t(context_, zmq::socket_type::pair);
      monitor->set(zmq::sockopt::linger, 0);
      monitor->connect(name);
    }
  } else {
    check_plain_endpoints(options_);
  }
  // The local endpoint first: frontend_endpoint() names the last one bound.
  for (const auto* endpoint : {&options_.local_frontend, &options_.frontend}) {
    if (endpoint->empty()) continue;
    try {
      frontend_.bind(*endpoint);
    } catch (const zmq::error_t& e) {
      throw std::runtime_error("cannot bind frontend " + *endpoint + ": " + e.what());
    }
  }
  try {
    backend_.bind(options_.backend);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot bind backend " + options_.backend + ": " + e.what());
  }
}

std::string Broker::frontend_endpoint() const { return frontend_.get(zmq::sockopt::last_endpoint); }
std::string Broker::backend_endpoint() const { return backend_.get(zmq::sockopt::last_endpoint); }

bool Broker::send(zmq::socket_t& socket, protocol::Frames& frames) {
  if (&socket == &frontend_) unread_[kFrontend] = true;
  if (&socket == &backend_) unread_[kBackend] = true;
  if (&socket == &zap_) unread_[kZap] = true;
  try {
    // dontwait: a peer at its high-water mark must not stall every other peer.
    return zmq::send_multipart(socket, frames, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return false;
    throw;
  }
}

void Broker::answer_zap() {
  // Bounded like receive(): a flood of handshakes must not starve the traffic of admitted peers.
  unread_[kZap] = true;
  for (int i = 0; i < 256 && unread_[kZap]; ++i) {
    protocol::Frames request;
    std::optional<std::size_t> got;
    try {
      got = zmq::recv_multipart(zap_, std::back_inserter(request), zmq::recv_flags::dontwait);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if (!got) {
      unread_[kZap] = false;  // until something is sent on it
      break;
    }
    // [routing id, empty delimiter (libzmq's REQ), request...]
    if (request.size() < 2 || request[1].size() != 0) continue;
    protocol::Frames body;
    for (std::size_t f = 2; f < request.size(); ++f) body.push_back(std::move(request[f]));
    auto reply = authenticator_.handle(body, Clock::now());
    if (reply.empty()) continue;
    protocol::Frames out;
    out.push_back(std::move(request[0]));
    out.emplace_back();
    for (auto& f : reply) out.push_back(std::move(f));
    send(zap_, out);
  }
  auto& c = dispatcher_.counters();
  c.curve_denied_gateways = authenticator_.denied(kGatewayDomain) + failed_handshakes_[0];
  c.curve_denied_workers = authenticator_.denied(kWorkerDomain) + failed_handshakes_[1];
}

void Broker::read_monitor(zmq::socket_t& monitor, bool frontend) {
  const int side = frontend ? 0 : 1;
  bool& unread = unread_[frontend ? kFrontendMonitor : kBackendMonitor];
  unread = true;
  for (int i = 0; i < 256 && unread; ++i) {
    protocol::Frames event;
    try {
      if (!zmq::recv_multipart(monitor, std::back_inserter(event), zmq::recv_flags::dontwait)) {
        unread = false;
        break;
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      // Out of the epoll set first: a descriptor left signalling would spin the loop.
      spdlog::warn("broker: socket monitor failed, handshake failures go uncounted: {}", e.what());
      if (epoll_fd_ >= 0)
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, monitor.get(zmq::sockopt::fd), nullptr);
      monitor.close();
      unread = false;
      return;
    }
    if (event.size() != 2 || event[0].size() != 6) continue;
    std::uint16_t id = 0;
    std::uint32_t value = 0;
    std::memcpy(&id, event[0].data(), sizeof id);
    std::memcpy(&value, static_cast<const char*>(event[0].data()) + 2, sizeof value);
    ++failed_handshakes_[side];
    const auto now = Clock::now();
    if (now < next_failure_report_[side]) {
      ++unreported_failures_[side];
      continue;
    }
    // The peer's address is not in the event, only our endpoint.
    spdlog::warn(
        "CURVE handshake failed on {} ({}, protocol error 0x{:x}: a peer without CURVE "
        "or with a wrong broker public key){}",
        frontend ? "frontend (gateways)" : "backend (workers)",
        id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ? "protocol" : "no detail", value,
        unreported_failures_[side] > 0
            ? fmt::format("; {} more in the last 10 s", unreported_failures_[side])
            : std::string());
    unreported_failures_[side] = 0;
    next_failure_report_[side] = now + std::chrono::seconds(10);
  }
  auto& c = dispatcher_.counters();
  c.curve_denied_gateways = authenticator_.denied(kGatewayDomain) + failed_handshakes_[0];
  c.curve_denied_workers = authenticator_.denied(kWorkerDomain) + failed_handshakes_[1];
}

std::optional<BrokerStats> Broker::snapshot(std::chrono::milliseconds wait) const {
  std::unique_lock lock(snapshot_mutex_);
  const auto generation = snapshot_generation_;
  snapshot_wanted_.store(true);
  snapshot_ready_.wait_for(lock, wait, [&] { return snapshot_generation_ != generation; });
  return snapshot_;
}

void Broker::publish_snapshot() {
  auto stats = dispatcher_.stats(Now::current());
  {
    std::lock_guard lock(snapshot_mutex_);
    snapshot_ = std::move(stats);
    ++snapshot_generation_;
  }
  snapshot_ready_.notify_all();
}

bool Broker::to_gateway(protocol::Frames& frames) { return send(frontend_, frames); }
bool Broker::to_worker(protocol::Frames& frames) { return send(backend_, frames); }

void Broker::receive(zmq::socket_t& socket, bool from_gateway) {
  bool& unread = unread_[from_gateway ? kFrontend : kBackend];
  unread = true;
  // Bounded batch so that one busy socket cannot starve the other or the timers.
  for (int i = 0; i < 512; ++i) {
    frames_.clear();
    std::optional<std::size_t> got;
    try {
      got = zmq::recv_multipart(socket, std::back_inserter(frames_), zmq::recv_flags::dontwait);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if (!got) {
      unread = false;  // until something is sent on it
      return;
    }
    const auto now = Now::current();
    // Every frame is untrusted: whatever one message does, the broker goes on with the next.
    try {
      if (from_gateway) {
        const std::string principal(frames_.empty() ? "" : principal_of(frames_.back()));
        dispatcher_.on_gateway_message(frames_, now, principal);
      } else {
        dispatcher_.on_worker_message(frames_, now);
      }
    } catch (const std::exception& e) {
      dispatcher_.on_handler_error(e.what(), now);
    }
  }
}

namespace {

// An epoll descriptor, closed on every way out of run().
struct EpollSet {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  EpollSet() {
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  }
  ~EpollSet() { ::close(fd); }
  EpollSet(const EpollSet&) = delete;
  EpollSet& operator=(const EpollSet&) = delete;
  void watch(int descriptor, std::uint32_t source) const {
    epoll_event ev{};
    ev.events = EPOLLIN;  // level-triggered: libzmq clears a socket's descriptor as it reads
    ev.data.u32 = source;
    if (::epoll_ctl(fd, EPOLL_CTL_ADD, descriptor, &ev) != 0) {
      throw std::system_error(errno, std::generic_category(), "epoll_ctl");
    }
  }
};

}  // namespace

// What one run of the loop keeps between its steps.
struct Broker::Loop {
  EpollSet epoll;
  int signal_fd = -1;
  std::chrono::milliseconds tick{};
  std::chrono::milliseconds stall_limit{};
  Clock::time_point next_tick;
  Clock::time_point last_wake;
  std::optional<Clock::time_point> drain_until;
  ~Loop() {
    if (signal_fd >= 0) ::close(signal_fd);
  }
};

Broker::~Broker() {
  if (frontend_monitor_) zmq_socket_monitor(frontend_.handle(), nullptr, 0);
  if (backend_monitor_) zmq_socket_monitor(backend_.handle(), nullptr, 0);
}

int Broker::run(bool handle_signals) {
  begin(handle_signals);
  while (step(next_wait())) {
  }
  end();
  return 0;
}

void Broker::begin(bool handle_signals) {
  loop_ = std::make_unique<Loop>();
  auto& loop = *loop_;
  loop.signal_fd = handle_signals ? open_termination_signalfd() : -1;
  // Not zmq_poll: it asks every socket for ZMQ_EVENTS before and after each wait, a poll() and a
  // getpid() inside libzmq each. Here a socket is asked only when its descriptor signalled or
  // `unread_` says so.
  const auto& epoll = loop.epoll;
  epoll_fd_ = epoll.fd;
  epoll.watch(frontend_.get(zmq::sockopt::fd), kFrontend);
  epoll.watch(backend_.get(zmq::sockopt::fd), kBackend);
  unread_[kFrontend] = unread_[kBackend] = true;  // whatever arrived before the loop
  if (zap_) {
    epoll.watch(zap_.get(zmq::sockopt::fd), kZap);
    epoll.watch(frontend_monitor_.get(zmq::sockopt::fd), kFrontendMonitor);
    epoll.watch(backend_monitor_.get(zmq::sockopt::fd), kBackendMonitor);
    unread_[kZap] = unread_[kFrontendMonitor] = unread_[kBackendMonitor] = true;
  }
  if (loop.signal_fd >= 0) epoll.watch(loop.signal_fd, kSignal);
  spdlog::info("broker {} ready: frontend {} backend {}", options_.dispatcher.broker_id,
               frontend_endpoint(), backend_endpoint());
  if (options_.curve) {
    spdlog::info("broker CURVE on: public key {}, {} gateway key(s), {} worker key(s)",
                 options_.curve->own.public_key, options_.curve->gateways.size(),
                 options_.curve->workers.size());
  } else {
    spdlog::warn("broker running without CURVE: anyone who can reach {} or {} is trusted",
                 frontend_endpoint(), backend_endpoint());
  }
  loop.tick = std::max(std::chrono::milliseconds(10), options_.dispatcher.heartbeat_interval / 4);
  loop.next_tick = Clock::now();
  // A gap this long between two wake-ups means the broker was not running (SIGSTOP, a paused
  // container, CPU starvation) for about as long as its peers wait before declaring it lost: one
  // heartbeat short of it, as the last heartbeat it sent may have been that much older.
  // At least four ticks, so that an idle loop's ordinary lateness never counts.
  loop.stall_limit = std::max<std::chrono::milliseconds>(
      options_.dispatcher.heartbeat_interval * std::max(1, options_.dispatcher.liveness - 1),
      4 * loop.tick);
  loop.last_wake = Clock::now();
  serving_.store(true);
}

int Broker::loop_fd() const { return loop_ ? loop_->epoll.fd : -1; }

std::chrono::milliseconds Broker::next_wait() const {
  // At most 100 ms, so that a snapshot asked for by the admin thread is made soon whatever the
  // heartbeat interval; no wait at all while a socket may still hold messages. Rounded up: the
  // last fraction of a millisecond before a tick, truncated to 0, would spin the loop.
  const bool unread = std::find(std::begin(unread_), std::end(unread_), true) != std::end(unread_);
  if (unread || !loop_) return std::chrono::milliseconds(0);
  return std::clamp(std::chrono::ceil<std::chrono::milliseconds>(loop_->next_tick - Clock::now()),
                    std::chrono::milliseconds(0), std::chrono::milliseconds(100));
}

bool Broker::step(std::chrono::milliseconds wait) {
  auto& loop = *loop_;
  if (snapshot_wanted_.exchange(false)) publish_snapshot();
  if (stop_.load() && !loop.drain_until) {
    serving_.store(false);
    loop.drain_until = Clock::now() + options_.drain_timeout;
    dispatcher_.begin_shutdown(Now::current());
    spdlog::info("broker stopping: waiting up to {} ms for {} requests in flight",
                 options_.drain_timeout.count(), dispatcher_.in_flight());
  }
  if (loop.drain_until && (dispatcher_.in_flight() == 0 || Clock::now() >= *loop.drain_until)) {
    if (dispatcher_.in_flight() > 0) {
      spdlog::warn("broker drain timeout: answering {} requests still in flight with 503",
                   dispatcher_.in_flight());
      dispatcher_.fail_in_flight("broker stopped before the worker answered");
    }
    return false;
  }
  // What the checks above sent (a drain's 503s) may have left a socket to read: then no wait.
  wait = std::min(wait, next_wait());
  epoll_event events[kSources];
  const int n = ::epoll_wait(loop.epoll.fd, events, kSources, static_cast<int>(wait.count()));
  if (n < 0 && errno != EINTR) {
    throw std::system_error(errno, std::generic_category(), "epoll_wait");
  }
  bool ready[kSources] = {};
  for (int i = 0; i < n; ++i) ready[events[i].data.u32] = true;
  for (std::uint32_t i = 0; i < kSources; ++i) ready[i] = ready[i] || unread_[i];
  const auto woke = Clock::now();
  if (woke - loop.last_wake > loop.stall_limit) {
    // Before anything that arrived meanwhile: a reply freeing a worker must not dispatch a
    // request whose client was already answered.
    dispatcher_.on_stall(
        std::chrono::duration_cast<std::chrono::milliseconds>(woke - loop.last_wake));
  }
  loop.last_wake = woke;
  ++dispatcher_.counters().loop_wakeups;
  if (ready[kSignal]) {
    signalfd_siginfo info;
    if (::read(loop.signal_fd, &info, sizeof info) == sizeof info) {
      spdlog::info("broker received signal {}", info.ssi_signo);
      stop_.store(true);
    }
  }
  if (ready[kZap]) answer_zap();
  if (ready[kFrontendMonitor] && frontend_monitor_) read_monitor(frontend_monitor_, true);
  if (ready[kBackendMonitor] && backend_monitor_) read_monitor(backend_monitor_, false);
  // Replies first: they free capacity that waiting requests need.
  if (ready[kBackend]) receive(backend_, false);
  if (ready[kFrontend]) receive(frontend_, true);
  if (Clock::now() >= loop.next_tick) {
    dispatcher_.on_tick(Now::current());
    loop.next_tick = Clock::now() + loop.tick;
  }
  return true;
}

void Broker::end() {
  serving_.store(false);
  epoll_fd_ = -1;
  loop_.reset();
  publish_snapshot();  // the final counts, for a scrape during shutdown
  const auto& c = dispatcher_.counters();
  spdlog::info("broker stopped: {} requests, {} replies, {} malformed, {} unroutable", c.requests,
               c.replies, c.malformed, c.unroutable);
  if (options_.curve) {
    spdlog::info(
        "broker CURVE handshakes: frontend {} admitted, {} denied; backend {} admitted, "
        "{} denied; {} malformed ZAP requests",
        authenticator_.admitted(kGatewayDomain), c.curve_denied_gateways,
        authenticator_.admitted(kWorkerDomain), c.curve_denied_workers, authenticator_.malformed());
  }
}

}  // namespace courier::broker
