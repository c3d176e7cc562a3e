// One ZeroMQ DEALER socket driven by an Asio io_context (no thread of its own): its descriptor is
// watched by the io_context's event loop, and callbacks run there. Gateways and workers use it for
// their link to a broker. A worker runs its links on the io_context that also runs its upstream
// requests, so a request crosses no thread of ours between the socket and the upstream.
//
// The io_context must be run by one thread: a ZeroMQ socket has one owner.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/asio.hpp"
#include "common/curve.hpp"
#include "common/frames.hpp"

namespace courier {

class ZmqLink {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    std::string endpoint;  // connected to (DEALER)
    std::chrono::milliseconds tick{100};
    int high_water_mark = 100'000;
    std::chrono::milliseconds linger{1'000};  // time to flush replies on close
    // ZMQ_MAXMSGSIZE: a larger frame from the broker drops the connection instead of being held.
    // The largest legitimate one is a reply: the worker's upstream body limit (256 MiB) + 1 MiB.
    std::int64_t max_message = std::int64_t{257} << 20;
    std::optional<curve::ClientKeys> curve{};  // set: a CURVE client of the broker
  };
  struct Handlers {
    std::function<void(protocol::Frames&)> on_message;
    std::function<void(Clock::time_point)> on_tick;
    // A send refused at once (no broker connected, or its queue full): the message was not sent.
    std::function<void(protocol::Frames&)> on_unsent;
    // Connection events (ZMQ_EVENT_CONNECTED, ZMQ_EVENT_DISCONNECTED, and the
    // ZMQ_EVENT_HANDSHAKE_FAILED_* of a CURVE handshake the broker refused) from a socket monitor.
    // A DEALER gets a new routing id on every reconnect, so a disconnect means every reply still
    // owed to this link is lost: the owner must answer those requests itself.
    std::function<void(int event)> on_connection_event;
  };

  ZmqLink(zmq::context_t& context, asio::io_context& io, Options options, Handlers handlers);
  ~ZmqLink();
  ZmqLink(const ZmqLink&) = delete;
  ZmqLink& operator=(const ZmqLink&) = delete;

  // Starts watching the socket and ticking. Thread-safe.
  void start();
  // Sends what is queued, then closes the socket; no callback runs after it returns. Idempotent.
  // Once start() was called, from another thread it waits for the io_context to close it, so that
  // io_context must then be running or stopped.
  void stop();

  // Thread-safe: queues a message for the io_context to send.
  void post(protocol::Frames frames);
  // io_context thread only (inside a callback): sends at once; false (and on_unsent) if refused.
  bool send_now(protocol::Frames& frames);

  // io_context thread only (inside a callback): drops the connection and what is queued on it and
  // connects again with a new socket, so the peer sees a new routing id. For a peer that went
  // silent: whatever it still holds for the old id can no longer reach us. If no socket can be
  // opened (out of descriptors), sends are refused and the tick tries again.
  void reconnect();

  std::uint64_t unsent() const;

 private:
  struct Core;
  // Shared with the handlers the io_context holds, so that one still queued after stop() finds a
  // closed core instead of a destroyed one.
  std::shared_ptr<Core> core_;
};

}  // namespace courier
