#include "broker/broker.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

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

Broker::Broker(BrokerOptions options)
    : options_(std::move(options)),
      frontend_(context_, zmq::socket_type::router),
      backend_(context_, zmq::socket_type::router),
      dispatcher_(options_.dispatcher, *this) {
  configure_router(frontend_, options_.max_request_message);
  configure_router(backend_, options_.max_reply_message);
  try {
    frontend_.bind(options_.frontend);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot bind frontend " + options_.frontend + ": " + e.what());
  }
  try {
    backend_.bind(options_.backend);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot bind backend " + options_.backend + ": " + e.what());
  }
}

Broker::~Broker() = default;

std::string Broker::frontend_endpoint() const { return frontend_.get(zmq::sockopt::last_endpoint); }
std::string Broker::backend_endpoint() const { return backend_.get(zmq::sockopt::last_endpoint); }

bool Broker::send(zmq::socket_t& socket, protocol::Frames& frames) {
  try {
    // dontwait: a peer at its high-water mark must not stall every other peer.
    return zmq::send_multipart(socket, frames, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return false;
    throw;
  }
}

bool Broker::to_gateway(protocol::Frames& frames) { return send(frontend_, frames); }
bool Broker::to_worker(protocol::Frames& frames) { return send(backend_, frames); }

void Broker::receive(zmq::socket_t& socket, bool from_gateway) {
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
    if (!got) return;
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

int Broker::run(bool handle_signals) {
  const int signal_fd = handle_signals ? open_termination_signalfd() : -1;
  spdlog::info("broker {} ready: frontend {} backend {}", options_.dispatcher.broker_id,
               frontend_endpoint(), backend_endpoint());
  const auto tick =
      std::max(std::chrono::milliseconds(10), options_.dispatcher.heartbeat_interval / 4);
  auto next_tick = Clock::now();
  // A gap this long between two wake-ups means the broker was not running (SIGSTOP, a paused
  // container, CPU starvation) for about as long as its peers wait before declaring it lost: one
  // heartbeat short of it, as the last heartbeat it sent may have been that much older.
  // At least four ticks, so that an idle loop's ordinary lateness never counts.
  const auto stall_limit = std::max<std::chrono::milliseconds>(
      options_.dispatcher.heartbeat_interval * std::max(1, options_.dispatcher.liveness - 1),
      4 * tick);
  auto last_wake = Clock::now();
  std::optional<Clock::time_point> drain_until;
  while (true) {
    if (stop_.load() && !drain_until) {
      drain_until = Clock::now() + options_.drain_timeout;
      dispatcher_.begin_shutdown(Now::current());
      spdlog::info("broker stopping: waiting up to {} ms for {} requests in flight",
                   options_.drain_timeout.count(), dispatcher_.in_flight());
    }
    if (drain_until && (dispatcher_.in_flight() == 0 || Clock::now() >= *drain_until)) {
      if (dispatcher_.in_flight() > 0) {
        spdlog::warn("broker drain timeout: answering {} requests still in flight with 503",
                     dispatcher_.in_flight());
        dispatcher_.fail_in_flight("broker stopped before the worker answered");
      }
      break;
    }
    zmq::pollitem_t items[] = {{frontend_.handle(), 0, ZMQ_POLLIN, 0},
                               {backend_.handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, signal_fd, ZMQ_POLLIN, 0}};
    const auto wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - Clock::now());
    try {
      zmq::poll(items, signal_fd >= 0 ? 3 : 2, std::max(wait, std::chrono::milliseconds(0)));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    const auto woke = Clock::now();
    if (woke - last_wake > stall_limit) {
      // Before anything that arrived meanwhile: a reply freeing a worker must not dispatch a
      // request whose client was already answered.
      dispatcher_.on_stall(std::chrono::duration_cast<std::chrono::milliseconds>(woke - last_wake));
    }
    last_wake = woke;
    if (signal_fd >= 0 && (items[2].revents & ZMQ_POLLIN)) {
      signalfd_siginfo info;
      if (::read(signal_fd, &info, sizeof info) == sizeof info) {
        spdlog::info("broker received signal {}", info.ssi_signo);
        stop_.store(true);
      }
    }
    // Replies first: they free capacity that waiting requests need.
    if (items[1].revents & ZMQ_POLLIN) receive(backend_, false);
    if (items[0].revents & ZMQ_POLLIN) receive(frontend_, true);
    if (Clock::now() >= next_tick) {
      dispatcher_.on_tick(Now::current());
      next_tick = Clock::now() + tick;
    }
  }
  if (signal_fd >= 0) ::close(signal_fd);
  const auto& c = dispatcher_.counters();
  spdlog::info("broker stopped: {} requests, {} replies, {} malformed, {} unroutable", c.requests,
               c.replies, c.malformed, c.unroutable);
  return 0;
}

}  // namespace courier::broker
