#include "common/broker_peer.hpp"

#include <spdlog/spdlog.h>

namespace courier {

BrokerPeer::BrokerPeer(zmq::context_t& context, asio::io_context& io, Options options,
                       Handlers handlers)
    : options_(std::move(options)),
      handlers_(std::move(handlers)),
      zmq_(context, io, ZmqLink::Options{options_.endpoint, std::chrono::milliseconds(20)},
           ZmqLink::Handlers{[this](protocol::Frames& f) { on_message(f); },
                             [this](Clock::time_point now) { on_tick(now); },
                             [this](protocol::Frames& f) {
                               if (handlers_.on_unsent) handlers_.on_unsent(f);
                             },
                             [this](int event) { on_connection_event(event); }}) {}

void BrokerPeer::on_message(protocol::Frames& frames) {
  last_seen_ = Clock::now();
  if (!alive_.exchange(true, std::memory_order_acq_rel)) {
    ever_alive_.store(true, std::memory_order_release);
    spdlog::info("broker {} reachable", options_.endpoint);
  }
  if (handlers_.on_message) handlers_.on_message(frames);
}

void BrokerPeer::on_tick(Clock::time_point now) {
  const auto limit = options_.heartbeat_interval * options_.liveness;
  if (alive() && now - last_seen_ > limit) {
    spdlog::warn("broker {} silent for {} ms", options_.endpoint,
                 (now - last_seen_) / std::chrono::milliseconds(1));
    lose(Loss::kSilent);
    if (options_.reconnect_when_silent) zmq_.reconnect();
  }
  if (now >= next_heartbeat_) {
    next_heartbeat_ = now + options_.heartbeat_interval;
    protocol::Frames hb;
    if (handlers_.heartbeat) handlers_.heartbeat(hb, alive());
    if (!hb.empty()) zmq_.send_now(hb);
  }
  if (handlers_.on_tick) handlers_.on_tick(now);
}

void BrokerPeer::on_connection_event(int event) {
  if (event == ZMQ_EVENT_CONNECTED) {
    if (handlers_.on_connected) handlers_.on_connected();
  } else if (event == ZMQ_EVENT_DISCONNECTED && alive()) {
    // The broker routes replies by the connection's routing id, which a reconnect replaces:
    // whatever it owed this peer is lost with the connection.
    spdlog::warn("broker {} disconnected", options_.endpoint);
    lose(Loss::kDisconnected);
  }
}

void BrokerPeer::lose(Loss why) {
  alive_.store(false, std::memory_order_release);
  if (handlers_.on_lost) handlers_.on_lost(why);
}

}  // namespace courier
