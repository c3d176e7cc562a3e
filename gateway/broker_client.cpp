#include "gateway/broker_client.hpp"

#include <spdlog/spdlog.h>

#include "common/errors.hpp"

namespace courier::gateway {

using protocol::Command;

namespace {

std::string key_of(const protocol::CorrelationId& id) {
  return std::string(reinterpret_cast<const char*>(id.data()), id.size());
}

BrokerResult local_error(const std::string& service, const std::string& detail,
                         const protocol::CorrelationId& id) {
  BrokerResult r;
  r.local = make_error_reply(ErrorKind::kBrokerUnavailable, service, detail, id);
  return r;
}

}  // namespace

BrokerClient::BrokerClient(zmq::context_t& context, BrokerClientOptions options)
    : options_(std::move(options)),
      link_(context, ZmqLink::Options{options_.endpoint, std::chrono::milliseconds(20)},
            ZmqLink::Handlers{[this](protocol::Frames& f) { on_message(f); },
                              [this](auto now) { on_tick(now); },
                              [this](protocol::Frames& f) { on_unsent(f); },
                              [this](int event) { on_connection_event(event); }}) {}

BrokerClient::~BrokerClient() { stop(); }

void BrokerClient::start() { link_.start(); }

void BrokerClient::stop() {
  link_.stop();
  fail_all("gateway shutting down");
}

std::size_t BrokerClient::pending() const {
  std::lock_guard lock(mutex_);
  return pending_.size();
}

std::string BrokerClient::stats_json() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void BrokerClient::submit(const protocol::RequestHeader& header, zmq::message_t envelope,
                          Callback done) {
  if (!connected()) {
    done(local_error(std::string(header.service), "broker not connected", header.id));
    return;
  }
  {
    std::lock_guard lock(mutex_);
    pending_.emplace(key_of(header.id),
                     std::make_pair(std::string(header.service), std::move(done)));
  }
  protocol::Frames frames;
  frames.reserve(7);
  protocol::add_request(frames, header, std::move(envelope));
  link_.post(std::move(frames));
}

bool BrokerClient::cancel(const protocol::CorrelationId& id) {
  std::lock_guard lock(mutex_);
  return pending_.erase(key_of(id)) > 0;
}

BrokerClient::Callback BrokerClient::take(const protocol::CorrelationId& id) {
  std::lock_guard lock(mutex_);
  const auto it = pending_.find(key_of(id));
  if (it == pending_.end()) return {};
  auto cb = std::move(it->second.second);
  pending_.erase(it);
  return cb;
}

void BrokerClient::on_message(protocol::Frames& frames) {
  last_seen_ = std::chrono::steady_clock::now();
  if (!connected_.exchange(true)) spdlog::info("broker {} connected", options_.endpoint);
  Command command{};
  if (protocol::parse_command(frames, 0, command)) {
    spdlog::debug("broker link: malformed message dropped");
    return;
  }
  if (command == Command::kReply) {
    protocol::CorrelationId id{};
    if (protocol::parse_reply(frames, 0, id)) return;
    if (auto cb = take(id)) {
      BrokerResult r;
      r.envelope = std::move(frames[3]);
      cb(std::move(r));
    } else {
      late_replies_.fetch_add(1, std::memory_order_relaxed);
    }
  } else if (command == Command::kStats && frames.size() == 4) {
    std::lock_guard lock(mutex_);
    stats_ = std::string(protocol::view(frames[3]));
  }
}

void BrokerClient::on_unsent(protocol::Frames& frames) {
  protocol::RequestHeader header;
  if (protocol::parse_request(frames, 0, header)) return;
  if (auto cb = take(header.id)) {
    cb(local_error(std::string(header.service), "broker not reachable", header.id));
  }
}

void BrokerClient::on_connection_event(int event) {
  if (event != ZMQ_EVENT_DISCONNECTED) return;
  // The broker routes replies by the connection's routing id, which a reconnect replaces: every
  // pending reply is lost with the connection (typically the broker died). Answer them now.
  if (connected_.exchange(false)) spdlog::warn("broker {} disconnected", options_.endpoint);
  fail_all("broker connection lost");
}

void BrokerClient::fail_all(const std::string& detail) {
  std::unordered_map<std::string, std::pair<std::string, Callback>> failed;
  {
    std::lock_guard lock(mutex_);
    failed.swap(pending_);
  }
  for (auto& [key, entry] : failed) {
    protocol::CorrelationId id{};
    std::copy(key.begin(), key.end(), id.begin());
    entry.second(local_error(entry.first, detail, id));
  }
}

void BrokerClient::on_tick(std::chrono::steady_clock::time_point now) {
  if (now >= next_heartbeat_) {
    protocol::Frames hb;
    protocol::add_header(hb, Command::kHeartbeat);
    link_.send_now(hb);
    next_heartbeat_ = now + options_.heartbeat_interval;
  }
  if (connected() && now - last_seen_ > options_.heartbeat_interval * options_.liveness) {
    connected_.store(false);
    spdlog::warn("broker {} lost (no heartbeat for {} ms); failing pending requests",
                 options_.endpoint, (options_.heartbeat_interval * options_.liveness).count());
    {
      std::lock_guard lock(mutex_);
      stats_.clear();
    }
    fail_all("broker lost");
  }
  if (connected() && now >= next_stats_) {
    protocol::Frames st;
    protocol::add_header(st, Command::kStats);
    st.push_back(protocol::id_frame({}));
    link_.send_now(st);
    next_stats_ = now + options_.stats_interval;
  }
}

}  // namespace courier::gateway
