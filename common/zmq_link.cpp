#include "common/zmq_link.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <mutex>
#include <stdexcept>

namespace courier {

// ZeroMQ's descriptor (ZMQ_FD) only says "something changed", edge-triggered, and any operation on
// the socket may consume that edge. So: always read until EAGAIN before waiting on it, and after a
// send read again (a posted pump, so that the sends of one event-loop round share one read; none
// when the send happens inside the pump, which reads until EAGAIN anyway). The monitor socket has
// its own descriptor and is read when that one signals. The tick re-reads both as a safety net.
// Every ZMQ_EVENTS query or empty read costs libzmq a poll() and a getpid(), so there are no more
// of them than that.
struct ZmqLink::Core : std::enable_shared_from_this<Core> {
  Core(zmq::context_t& context_, asio::io_context& io_, Options options_, Handlers handlers_)
      : context(context_),
        io(io_),
        options(std::move(options_)),
        handlers(std::move(handlers_)),
        socket_fd(io_),
        monitor_fd(io_),
        ticker(io_) {}
  ~Core() { release_descriptors(); }  // also when opening the socket failed

  zmq::context_t& context;
  asio::io_context& io;
  const Options options;
  const Handlers handlers;
  zmq::socket_t socket;
  zmq::socket_t monitor;
  asio::posix::stream_descriptor socket_fd;
  asio::posix::stream_descriptor monitor_fd;
  asio::steady_timer ticker;
  // io_context state.
  std::uint64_t generation = 0;  // of the socket: a handler for an older one does nothing
  bool socket_waiting = false;
  bool monitor_waiting = false;
  bool pump_posted = false;
  bool pumping = false;     // inside pump()'s read loop
  protocol::Frames frames;  // receive buffer
  // Shared with other threads.
  std::atomic<bool> started{false};  // start() was called: the io_context will drive the link
  std::atomic<bool> closed{false};
  std::mutex close_mutex;
  std::mutex queue_mutex;
  std::vector<protocol::Frames> queue;
  std::vector<protocol::Frames> sending;
  std::atomic<std::uint64_t> unsent{0};

  void open_socket();
  void close_socket();
  void begin();
  void pump();
  void schedule_pump();
  // libzmq owns the descriptors: stop watching them, never let Asio close them.
  void release_descriptors();
  // Runs `then` (pump or read_monitor) once `fd` is readable, unless a wait on it is pending.
  void wait_readable(asio::posix::stream_descriptor& fd, bool& waiting, void (Core::*then)());
  void read_monitor();
  void drain_queue();
  bool send_now(protocol::Frames& frames);
  void arm_ticker();
  // Replaces the socket (new routing id). On failure (e.g. out of descriptors) the link stays
  // without a socket, its sends refused, and the tick tries again.
  void reopen();
  void close();
  bool reopen_pending = false;  // io_context only
};

void ZmqLink::Core::open_socket() {
  socket = zmq::socket_t(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::sndhwm, options.high_water_mark);
  socket.set(zmq::sockopt::rcvhwm, options.high_water_mark);
  socket.set(zmq::sockopt::maxmsgsize, options.max_message);
  // Queue only to a live connection: with no broker, a send fails at once and the caller answers
  // 503 instead of the request waiting in a pipe to be delivered long after its deadline.
  socket.set(zmq::sockopt::immediate, 1);
  socket.set(zmq::sockopt::linger, static_cast<int>(options.linger.count()));
  socket.set(zmq::sockopt::reconnect_ivl, 100);
  socket.set(zmq::sockopt::reconnect_ivl_max, 2'000);
  if (handlers.on_connection_event) {
    static std::atomic<std::uint64_t> counter{0};
    const auto address = "inproc://courier-link-monitor-" + std::to_string(counter.fetch_add(1));
    if (zmq_socket_monitor(
            socket.handle(), address.c_str(),
            ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0) {
      throw zmq::error_t();
    }
    monitor = zmq::socket_t(context, zmq::socket_type::pair);
    monitor.connect(address);
    monitor_fd.assign(monitor.get(zmq::sockopt::fd));
  }
  if (options.curve) curve::apply_client(socket, *options.curve);
  socket.connect(options.endpoint);
  socket_fd.assign(socket.get(zmq::sockopt::fd));
}

void ZmqLink::Core::close_socket() {
  ++generation;
  socket_waiting = false;
  monitor_waiting = false;
  release_descriptors();
  if (monitor) {
    if (socket) zmq_socket_monitor(socket.handle(), nullptr, 0);
    monitor.close();
  }
  socket.close();
}

void ZmqLink::Core::release_descriptors() {
  if (socket_fd.is_open()) socket_fd.release();
  if (monitor_fd.is_open()) monitor_fd.release();
}

void ZmqLink::Core::begin() {
  if (closed.load()) return;
  arm_ticker();
  read_monitor();
  pump();
}

void ZmqLink::Core::pump() {
  if (closed.load() || !socket) return;  // no socket: a reopen is pending
  pumping = true;
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{pumping};
  // Bounded batches keep sends, timers and other work flowing under a flood of messages.
  for (int i = 0; i < 1024; ++i) {
    frames.clear();
    std::optional<std::size_t> got;
    try {
      got = zmq::recv_multipart(socket, std::back_inserter(frames), zmq::recv_flags::dontwait);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      spdlog::warn("broker link {}: receive failed: {}", options.endpoint, e.what());
      if (e.num() == ETERM) {
        close();  // the context is shutting down: nothing will work on this socket again
        return;
      }
      // Not in a loop: try again when the socket signals.
      wait_readable(socket_fd, socket_waiting, &Core::pump);
      return;
    }
    if (!got) {
      // Nothing left: only now is waiting on the descriptor safe.
      wait_readable(socket_fd, socket_waiting, &Core::pump);
      return;
    }
    handlers.on_message(frames);
    if (closed.load()) return;
  }
  schedule_pump();
}

void ZmqLink::Core::schedule_pump() {
  if (pump_posted) return;
  pump_posted = true;
  asio::post(io, [self = shared_from_this()] {
    self->pump_posted = false;
    self->pump();
  });
}

void ZmqLink::Core::wait_readable(asio::posix::stream_descriptor& fd, bool& waiting,
                                  void (Core::*then)()) {
  if (waiting) return;
  waiting = true;
  fd.async_wait(asio::posix::stream_descriptor::wait_read,
                [self = shared_from_this(), &waiting, then, gen = generation](const auto& ec) {
                  if (gen != self->generation) return;  // an older socket's: `waiting` was reset
                  waiting = false;
                  if (!ec) ((*self).*then)();
                });
}

void ZmqLink::Core::read_monitor() {
  if (closed.load() || !monitor) return;
  protocol::Frames event;
  for (;;) {
    event.clear();
    try {
      if (!zmq::recv_multipart(monitor, std::back_inserter(event), zmq::recv_flags::dontwait)) {
        break;
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      spdlog::warn("broker link {}: monitor failed: {}", options.endpoint, e.what());
      return;  // connection events are lost; heartbeats still detect a lost broker
    }
    // Frame 0: 16-bit event id and 32-bit value (native byte order); frame 1: the endpoint.
    if (event.size() != 2 || event[0].size() != 6) continue;
    std::uint16_t id = 0;
    std::memcpy(&id, event[0].data(), sizeof id);
    handlers.on_connection_event(id);
    if (closed.load()) return;
  }
  wait_readable(monitor_fd, monitor_waiting, &Core::read_monitor);
}

bool ZmqLink::Core::send_now(protocol::Frames& message) {
  bool sent = false;
  if (!closed.load() && socket) {
    try {
      sent = zmq::send_multipart(socket, message, zmq::send_flags::dontwait).has_value();
      // The send may have consumed the edge that announced incoming messages: read again, once
      // for all the sends of this round (a pump in progress reads until EAGAIN anyway).
      if (!pumping) schedule_pump();
    } catch (const zmq::error_t& e) {
      spdlog::warn("broker link: send failed: {}", e.what());
    }
  }
  if (!sent) {
    unsent.fetch_add(1, std::memory_order_relaxed);
    // After stop() no callback runs: a message posted too late is only counted.
    if (handlers.on_unsent && !closed.load()) handlers.on_unsent(message);
  }
  return sent;
}

void ZmqLink::Core::drain_queue() {
  {
    std::lock_guard lock(queue_mutex);
    sending.swap(queue);
  }
  for (auto& message : sending) send_now(message);
  sending.clear();
}

void ZmqLink::Core::arm_ticker() {
  ticker.expires_after(options.tick);
  ticker.async_wait([self = shared_from_this()](const auto& ec) {
    if (ec || self->closed.load()) return;
    if (self->reopen_pending) self->reopen();
    if (self->handlers.on_tick) self->handlers.on_tick(Clock::now());
    if (self->closed.load()) return;  // the owner stopped the link from its tick
    self->read_monitor();
    self->pump();
    self->arm_ticker();
  });
}

void ZmqLink::Core::close() {
  std::lock_guard lock(close_mutex);
  if (closed.load()) return;
  drain_queue();  // what was posted before stop() still goes out (linger flushes it)
  closed.store(true);
  ticker.cancel();
  close_socket();
}

ZmqLink::ZmqLink(zmq::context_t& context, asio::io_context& io, Options options, Handlers handlers)
    : core_(std::make_shared<Core>(context, io, std::move(options), std::move(handlers))) {
  try {
    core_->open_socket();
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot connect to " + core_->options.endpoint + ": " + e.what());
  }
}

ZmqLink::~ZmqLink() { stop(); }

void ZmqLink::start() {
  core_->started.store(true);
  asio::post(core_->io, [core = core_] { core->begin(); });
}

void ZmqLink::stop() {
  auto& io = core_->io;
  if (core_->closed.load()) return;
  // Never started, on the io thread itself, or no io_context to run it: close here.
  if (!core_->started.load() || io.get_executor().running_in_this_thread() || io.stopped()) {
    core_->close();
    return;
  }
  auto done = std::make_shared<std::promise<void>>();
  auto closed = done->get_future();
  asio::post(io, [core = core_, done] {
    core->close();
    done->set_value();
  });
  // An io_context stopped before running it runs nothing else either: close here. (Owners stop
  // their links before their io_context, so no handler of this link can be running then.)
  while (closed.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    if (io.stopped()) {
      core_->close();
      return;
    }
  }
}

void ZmqLink::post(protocol::Frames frames) {
  bool was_empty = false;
  {
    std::lock_guard lock(core_->queue_mutex);
    was_empty = core_->queue.empty();
    core_->queue.push_back(std::move(frames));
  }
  // One hand-off per batch: the io_context takes the whole queue at once.
  if (was_empty) asio::post(core_->io, [core = core_] { core->drain_queue(); });
}

bool ZmqLink::send_now(protocol::Frames& frames) { return core_->send_now(frames); }

void ZmqLink::Core::reopen() {
  try {
    // Nothing queued on the old connection is wanted any more: drop it rather than linger.
    if (socket) socket.set(zmq::sockopt::linger, 0);
    close_socket();
    open_socket();
    reopen_pending = false;
  } catch (const zmq::error_t& e) {
    spdlog::error("broker link {}: cannot open a new socket ({}); retrying", options.endpoint,
                  e.what());
    close_socket();
    reopen_pending = true;
    return;
  }
  read_monitor();
  pump();
}

void ZmqLink::reconnect() { core_->reopen(); }

std::uint64_t ZmqLink::unsent() const { return core_->unsent.load(std::memory_order_relaxed); }

}  // namespace courier
