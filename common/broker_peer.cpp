#include "common/broker_peer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace courier {

BrokerPeer::BrokerPeer(zmq::context_t& context, asio::io_context& io, Options options,
                       Handlers handlers)
    : options_(std::move(options)),
      handlers_(std::move(handlers)),
      zmq_(context, io,
           ZmqLink::Options{.endpoint = options_.endpoint,
                            .tick = std::chrono::milliseconds(20),
                            .curve = options_.curve},
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
  warn_if_not_answering(now);
  if (now >= next_heartbeat_) {
    next_heartbeat_ = now + options_.heartbeat_interval;
    protocol::Frames hb;
    if (handlers_.heartbeat) handlers_.heartbeat(hb, alive());
    if (!hb.empty()) zmq_.send_now(hb);
  }
  if (handlers_.on_tick) handlers_.on_tick(now);
}

void BrokerPeer::warn_if_not_answering(Clock::time_point now) {
  if (alive()) {
    silent_since_ = {};
    return;
  }
  if (silent_since_ == Clock::time_point{}) {
    // From now: the first warning after a few liveness periods, then less and less often.
    silent_since_ = now;
    silence_warning_gap_ = std::max<std::chrono::milliseconds>(
        std::chrono::seconds(2), 2 * options_.heartbeat_interval * options_.liveness);
    next_silence_warning_ = now + silence_warning_gap_;
    return;
  }
  if (now < next_silence_warning_) return;
  const auto ms = (now - silent_since_) / std::chrono::milliseconds(1);
  if (options_.curve) {
    spdlog::warn(
        "broker {} not answering for {} ms (CURVE on: check that the broker runs with CURVE, "
        "that this process's broker public key matches the broker's secret key, and that our "
        "public key {} is in the broker's authorized list)",
        options_.endpoint, ms, options_.curve->own.public_key);
  } else {
    spdlog::warn(
        "broker {} not answering for {} ms (CURVE off: a broker that requires CURVE "
        "never answers us)",
        options_.endpoint, ms);
  }
  silence_warning_gap_ =
      std::min<std::chrono::milliseconds>(2 * silence_warning_gap_, std::chrono::minutes(1));
  next_silence_warning_ = now + silence_warning_gap_;
}

void BrokerPeer::on_connection_event(int event) {
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH || event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
      event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
    // Once a reconnect interval while it lasts: enough to say why, not a line per attempt.
    const auto now = Clock::now();
    if (now >= next_handshake_warning_) {
      next_handshake_warning_ = now + std::chrono::seconds(10);
      spdlog::warn("broker {}: {} handshake failed ({}); retrying", options_.endpoint,
                   options_.curve ? "CURVE" : "ZMTP",
                   event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ? "the broker refused our key"
                   : event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                       ? "protocol error: wrong broker key, or CURVE on one side only"
                       : "no detail");
    }
    return;
  }
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
