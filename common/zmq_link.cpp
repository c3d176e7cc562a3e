#include "common/zmq_link.hpp"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace courier {

ZmqLink::ZmqLink(zmq::context_t& context, Options options, Handlers handlers)
    : context_(context), options_(std::move(options)), handlers_(std::move(handlers)) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  open_socket();
}

void ZmqLink::open_socket() {
  socket_ = zmq::socket_t(context_, zmq::socket_type::dealer);
  socket_.set(zmq::sockopt::sndhwm, options_.high_water_mark);
  socket_.set(zmq::sockopt::rcvhwm, options_.high_water_mark);
  // Queue only to a live connection: with no broker, a send fails at once and the caller answers
  // 503 instead of the request waiting in a pipe to be delivered long after its deadline.
  socket_.set(zmq::sockopt::immediate, 1);
  socket_.set(zmq::sockopt::linger, static_cast<int>(options_.linger.count()));
  socket_.set(zmq::sockopt::reconnect_ivl, 100);
  socket_.set(zmq::sockopt::reconnect_ivl_max, 2'000);
  if (handlers_.on_connection_event) {
    static std::atomic<std::uint64_t> counter{0};
    const auto address = "inproc://courier-link-monitor-" + std::to_string(counter.fetch_add(1));
    if (zmq_socket_monitor(socket_.handle(), address.c_str(),
                           ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0) {
      throw zmq::error_t();
    }
    monitor_ = zmq::socket_t(context_, zmq::socket_type::pair);
    monitor_.connect(address);
  }
  socket_.connect(options_.endpoint);
}

void ZmqLink::close_socket() {
  if (monitor_) {
    zmq_socket_monitor(socket_.handle(), nullptr, 0);
    monitor_.close();
  }
  socket_.close();
}

void ZmqLink::reconnect() {
  // Nothing queued on the old connection is wanted any more: drop it rather than linger.
  socket_.set(zmq::sockopt::linger, 0);
  close_socket();
  open_socket();
}

ZmqLink::~ZmqLink() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void ZmqLink::start() {
  thread_ = std::thread([this] { run(); });
}

void ZmqLink::stop() {
  if (stopping_.exchange(true)) {
    if (thread_.joinable()) thread_.join();
    return;
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void ZmqLink::post(protocol::Frames frames) {
  bool was_empty = false;
  {
    std::lock_guard lock(mutex_);
    was_empty = queue_.empty();
    queue_.push_back(std::move(frames));
  }
  // One wake-up per batch: the link thread swaps the whole queue out at once.
  if (was_empty) {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }
}

bool ZmqLink::send_now(protocol::Frames& frames) {
  bool sent = false;
  try {
    sent = zmq::send_multipart(socket_, frames, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& e) {
    spdlog::warn("broker link: send failed: {}", e.what());
  }
  if (!sent) {
    unsent_.fetch_add(1, std::memory_order_relaxed);
    if (handlers_.on_unsent) handlers_.on_unsent(frames);
  }
  return sent;
}

void ZmqLink::drain_queue() {
  {
    std::lock_guard lock(mutex_);
    sending_.swap(queue_);
  }
  for (auto& frames : sending_) send_now(frames);
  sending_.clear();
}

void ZmqLink::run() {
  auto next_tick = Clock::now() + options_.tick;
  protocol::Frames frames;
  while (!stopping_.load(std::memory_order_acquire)) {
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, wake_fd_, ZMQ_POLLIN, 0},
                               {monitor_.handle(), 0, ZMQ_POLLIN, 0}};
    const auto wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - Clock::now());
    try {
      zmq::poll(items, monitor_ ? 3 : 2, std::max(wait, std::chrono::milliseconds(0)));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      if (e.num() == ETERM) break;
      throw;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      std::uint64_t n;
      [[maybe_unused]] auto r = ::read(wake_fd_, &n, sizeof n);
    }
    if (monitor_ && (items[2].revents & ZMQ_POLLIN)) read_monitor();
    drain_queue();
    // Bounded batches keep sends and ticks flowing under a flood of incoming messages.
    for (int i = 0; i < 1024; ++i) {
      frames.clear();
      const auto got =
          zmq::recv_multipart(socket_, std::back_inserter(frames), zmq::recv_flags::dontwait);
      if (!got) break;
      handlers_.on_message(frames);
    }
    if (const auto now = Clock::now(); now >= next_tick) {
      if (handlers_.on_tick) handlers_.on_tick(now);
      next_tick = now + options_.tick;
    }
  }
  drain_queue();
  close_socket();
}

void ZmqLink::read_monitor() {
  protocol::Frames event;
  while (true) {
    event.clear();
    if (!zmq::recv_multipart(monitor_, std::back_inserter(event), zmq::recv_flags::dontwait)) {
      return;
    }
    // Frame 0: 16-bit event id and 32-bit value (native byte order); frame 1: the endpoint.
    if (event.size() != 2 || event[0].size() != 6) continue;
    std::uint16_t id = 0;
    std::memcpy(&id, event[0].data(), sizeof id);
    handlers_.on_connection_event(id);
  }
}

}  // namespace courier
