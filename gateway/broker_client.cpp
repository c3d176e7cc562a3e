#include "gateway/broker_client.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/errors.hpp"
#include "common/io_loop.hpp"

namespace courier::gateway {

using protocol::Command;
using Clock = std::chrono::steady_clock;

namespace {

std::string key_of(const protocol::CorrelationId& id) {
  return std::string(reinterpret_cast<const char*>(id.data()), id.size());
}

protocol::CorrelationId id_of(const std::string& key) {
  protocol::CorrelationId id{};
  std::copy(key.begin(), key.end(), id.begin());
  return id;
}

protocol::Frames request_frames(const protocol::RequestHeader& header, zmq::message_t envelope) {
  protocol::Frames frames;
  frames.reserve(protocol::kRequestFrames + 1);
  protocol::add_request(frames, header, std::move(envelope));
  return frames;
}

BrokerResult local_error(const std::string& service, const std::string& detail,
                         const protocol::CorrelationId& id) {
  BrokerResult r;
  r.local = std::make_unique<ReplyEnvelope>(
      make_error_reply(ErrorKind::kBrokerUnavailable, service, detail, id));
  return r;
}

void deliver(BrokerClient::Callback* plain, BrokerClient::Callback* shared, BrokerResult r) {
  if (shared) {
    (*shared)(std::move(r));
  } else if (plain && *plain) {
    (*plain)(std::move(r));
  }
}

// The services a STATS snapshot shows live workers for.
std::vector<std::string> served_services(const BrokerStats& stats) {
  std::vector<std::string> out;
  for (const auto& [name, service] : stats.services) {
    if (service.workers > 0) out.push_back(name);
  }
  return out;
}

}  // namespace

BrokerResult local_abort(std::string_view why) {
  BrokerResult r;
  r.kind = BrokerResult::Kind::kAbort;
  why = why.substr(0, protocol::kMaxAbortReason);
  r.envelope = zmq::message_t(why.data(), why.size());
  return r;
}

std::shared_ptr<const BrokerStats> parse_stats(std::string_view text) {
  auto stats = decode_broker_stats(text);
  if (!stats) return nullptr;
  return std::make_shared<const BrokerStats>(std::move(*stats));
}

struct BrokerClient::Link {
  Link(BrokerClient& owner, std::size_t index_, zmq::context_t& context, std::string endpoint)
      : index(index_),
        peer(context, *owner.links_io_,
             BrokerPeer::Options{std::move(endpoint), owner.options_.heartbeat_interval,
                                 owner.options_.liveness, /*reconnect_when_silent=*/true,
                                 owner.options_.curve},
             BrokerPeer::Handlers{
                 [&owner, this](protocol::Frames& f) { owner.on_message(*this, f); },
                 [](protocol::Frames& hb, bool) { protocol::add_header(hb, Command::kHeartbeat); },
                 [&owner, this](BrokerPeer::Loss why) {
                   // A frozen broker that wakes up must not run what it queued for us: we
                   // answered or moved those requests. The new connection (new routing id) the
                   // peer opens orphans them there; the broker drops a silent gateway's queue, and
                   // a request re-sent later under the same id follows the new route.
                   owner.link_lost(*this, why == BrokerPeer::Loss::kSilent
                                              ? "broker lost"
                                              : "broker connection lost");
                 },
                 nullptr, [&owner, this](auto now) { owner.on_tick(*this, now); },
                 [&owner, this](protocol::Frames& f) { owner.on_unsent(*this, f); }}) {}

  const std::string& endpoint() const { return peer.endpoint(); }
  bool connected() const { return peer.alive(); }

  const std::size_t index;
  // Link-thread state (the client's io_ thread).
  Clock::time_point next_stats{};
  // Guarded by the owner's mutex_.
  std::size_t pending = 0;
  std::shared_ptr<const BrokerStats> stats;
  std::vector<std::string> served;  // services `stats` shows live workers for
  // Last: it calls back into the members above, so it must stop before they go.
  BrokerPeer peer;
};

BrokerClient::BrokerClient(zmq::context_t& context, BrokerClientOptions options)
    : options_(std::move(options)), context_(context), work_(io_.get_executor()) {
  for (const auto& endpoint : options_.endpoints) {
    links_.push_back(std::make_unique<Link>(*this, links_.size(), context, endpoint));
  }
}

BrokerClient::~BrokerClient() { stop(); }

void BrokerClient::run_on(asio::io_context& io) {
  links_.clear();  // never started: each closes its socket here
  links_io_ = &io;
  for (const auto& endpoint : options_.endpoints) {
    links_.push_back(std::make_unique<Link>(*this, links_.size(), context_, endpoint));
  }
}

void BrokerClient::start() {
  for (auto& link : links_) link->peer.start();
  if (links_io_ == &io_) thread_ = std::thread([this] { run_io(io_, "broker links"); });
}

void BrokerClient::stop() {
  if (!thread_.joinable()) io_.stop();  // never started: the links close on this thread
  stopping_.store(true);                // a submit from now on is answered at once
  // On a borrowed io_context each link closes on its thread when it runs, or here once stopped.
  for (auto& link : links_) link->peer.stop();
  work_.reset();
  io_.stop();
  if (thread_.joinable()) thread_.join();
  fail_all("gateway shutting down");
  // Links opened on a borrowed io_context hold descriptors of its reactor: they go now, while it
  // still exists (its owner stops this client before destroying it), not with this object.
  if (links_io_ != &io_) {
    std::lock_guard lock(mutex_);
    links_.clear();
  }
}

bool BrokerClient::connected() const {
  return !stopping_.load() &&
         std::any_of(links_.begin(), links_.end(), [](const auto& l) { return l->connected(); });
}

std::vector<BrokerStatus> BrokerClient::brokers() const {
  std::vector<BrokerStatus> out;
  std::lock_guard lock(mutex_);
  for (const auto& l : links_) {
    out.push_back({l->endpoint(), l->connected() && !stopping_.load(), l->pending, l->stats});
  }
  return out;
}

std::size_t BrokerClient::pending() const {
  std::lock_guard lock(mutex_);
  return pending_.size();
}

BrokerClient::Link* BrokerClient::choose(std::string_view service, const Link* except) {
  Link* best = nullptr;
  bool best_serves = false;
  const auto n = links_.size();
  for (std::size_t k = 0; k < n; ++k) {
    Link& l = *links_[(rotation_ + k) % n];
    if (&l == except || !l.connected() || stopping_.load()) continue;
    const bool serves = std::find(l.served.begin(), l.served.end(), service) != l.served.end();
    if (!best || (serves && !best_serves) || (serves == best_serves && l.pending < best->pending)) {
      best = &l;
      best_serves = serves;
    }
  }
  ++rotation_;
  return best;
}

void BrokerClient::submit(const protocol::RequestHeader& header, zmq::message_t envelope,
                          Callback done) {
  Link* link = nullptr;
  const std::string service(header.service);
  {
    std::lock_guard lock(mutex_);
    link = choose(service);
    if (link) {
      Pending p{service, std::move(done), {}, link->index, header.deadline_ms, header.flags, {}};
      // Another broker may have to carry this request if this one is lost: keep a reference to
      // the envelope (zmq_msg_copy shares the buffer; nothing is copied).
      if (links_.size() > 1 && (header.flags & protocol::kFlagRetrySafe)) {
        p.envelope.copy(envelope);
      }
      ++link->pending;
      pending_.insert_or_assign(key_of(header.id), std::move(p));
    }
  }
  if (!link) {
    done(local_error(service, "broker not connected", header.id));
    return;
  }
  link->peer.link().post(request_frames(header, std::move(envelope)));
}

bool BrokerClient::cancel(const protocol::CorrelationId& id) {
  std::size_t link = 0;
  {
    std::lock_guard lock(mutex_);
    const auto it = pending_.find(key_of(id));
    if (it == pending_.end()) return false;
    link = it->second.link;
    --links_[link]->pending;
    pending_.erase(it);
  }
  send_cancel(link, id);
  return true;
}

void BrokerClient::send_cancel(std::size_t link, const protocol::CorrelationId& id) {
  protocol::Frames frames;
  frames.reserve(protocol::kCancelFrames);
  protocol::add_cancel(frames, id);
  links_[link]->peer.link().post(std::move(frames));
}

void BrokerClient::credit(const protocol::CorrelationId& id, std::uint32_t bytes) {
  bytes = std::clamp<std::uint32_t>(bytes, 1, protocol::kMaxCredit);
  std::size_t link = 0;
  {
    std::lock_guard lock(mutex_);
    const auto it = pending_.find(key_of(id));
    if (it == pending_.end()) return;
    link = it->second.link;
    // Granted before it is posted: the worker cannot use it before it arrives.
    it->second.granted += bytes;
  }
  protocol::Frames frames;
  frames.reserve(protocol::kCreditFrames);
  protocol::add_credit(frames, id, bytes);
  links_[link]->peer.link().post(std::move(frames));
}

void BrokerClient::on_message(Link& link, protocol::Frames& frames) {
  Command command{};
  if (protocol::parse_command(frames, 0, command)) {
    spdlog::debug("broker link: malformed message dropped");
    return;
  }
  if (command == Command::kReply) {
    protocol::CorrelationId id{};
    if (protocol::parse_reply(frames, 0, id)) return;
    Callback cb;
    std::shared_ptr<Callback> streaming;
    std::size_t on_link = 0;
    bool foreign = false;
    {
      std::lock_guard lock(mutex_);
      const auto it = pending_.find(key_of(id));
      // After the HEAD only the stream's broker speaks for it: a reply through another (a
      // failed-over request run by both) is late and must not end the healthy stream.
      foreign = it != pending_.end() && it->second.stream && it->second.link != link.index;
      if (it != pending_.end() && !foreign) {
        on_link = it->second.link;
        --links_[on_link]->pending;
        cb = std::move(it->second.done);
        streaming = std::move(it->second.stream);
        pending_.erase(it);
      }
    }
    // Whichever broker carried it, a reply answers the request (a failed-over request may be
    // answered by both: the second is late).
    if (foreign) {
      late_replies_.fetch_add(1, std::memory_order_relaxed);
      send_cancel(link.index, id);
    } else if (streaming) {
      // The client may be reading the body already: a reply now cannot be honoured.
      stream_errors_.fetch_add(1, std::memory_order_relaxed);
      send_cancel(on_link, id);
      (*streaming)(local_abort("protocol error: REPLY after the stream's HEAD"));
    } else if (cb) {
      BrokerResult r;
      r.envelope = std::move(frames[3]);
      if (protocol::reply_has_stamps(frames, 0)) {
        r.stamps = std::move(frames[protocol::kReplyStampsIndex]);
        protocol::write_stamp(r.stamps, protocol::Stamp::kGatewayReplyIn, protocol::unix_us_now());
      }
      cb(std::move(r));
    } else {
      late_replies_.fetch_add(1, std::memory_order_relaxed);
    }
  } else if (command == Command::kStream) {
    on_stream(link, frames);
  } else if (command == Command::kStats && frames.size() == 4) {
    auto stats = parse_stats(protocol::view(frames[3]));
    auto served = stats ? served_services(*stats) : std::vector<std::string>{};
    std::lock_guard lock(mutex_);
    link.stats = std::move(stats);
    link.served = std::move(served);
  }
}

void BrokerClient::on_stream(Link& link, protocol::Frames& frames) {
  using protocol::StreamPart;
  protocol::StreamHeader header;
  if (protocol::parse_stream(frames, 0, header)) {
    spdlog::debug("broker link: malformed STREAM dropped");
    return;
  }
  Callback plain;
  std::shared_ptr<Callback> shared;
  const char* error = nullptr;
  std::size_t on_link = link.index;
  {
    std::unique_lock lock(mutex_);
    const auto it = pending_.find(key_of(header.id));
    if (it == pending_.end()) {
      late_replies_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    // After the HEAD, only the broker that carried it speaks for the stream: another one (a
    // failed-over request run by both) is told to stop, and the stream goes on.
    if (it->second.stream && it->second.link != link.index) {
      late_replies_.fetch_add(1, std::memory_order_relaxed);
      lock.unlock();
      send_cancel(link.index, header.id);
      return;
    }
    auto& p = it->second;
    bool remove = false;
    switch (header.part) {
      case StreamPart::kHead:
        if (p.stream) {
          error = "protocol error: a second HEAD";
          break;
        }
        p.stream = std::make_shared<Callback>(std::move(p.done));
        p.envelope = {};             // a client may read the head already: never sent again
        if (p.link != link.index) {  // a failed-over request answered through its first broker
          --links_[p.link]->pending;
          ++link.pending;
          p.link = link.index;
        }
        shared = p.stream;
        break;
      case StreamPart::kData:
        if (!p.stream) error = "protocol error: DATA before HEAD";
        shared = p.stream;
        break;
      case StreamPart::kEnd:
        if (!p.stream) error = "protocol error: END before HEAD";
        shared = p.stream;
        remove = true;
        break;
      case StreamPart::kAbort:
        // Before a HEAD it ends the request like an error reply would (nothing written yet).
        shared = p.stream;
        if (!shared) plain = std::move(p.done);
        remove = true;
        break;
    }
    if (!error && p.stream &&
        (header.part == StreamPart::kData || header.part == StreamPart::kEnd)) {
      // Checked before the part is queued: the caller's queue never holds more than a window.
      p.received += frames[protocol::kStreamPayloadIndex].size();
      if (p.received > p.granted) error = "protocol error: more body bytes than the window granted";
    }
    if (error) {
      shared = std::move(p.stream);
      if (!shared) plain = std::move(p.done);
      remove = true;
    }
    if (remove) {
      on_link = p.link;
      --links_[p.link]->pending;
      pending_.erase(it);
    }
  }
  if (error) {
    stream_errors_.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("broker {}: {}", link.endpoint(), error);
    send_cancel(on_link, header.id);
    deliver(&plain, shared.get(), local_abort(error));
    return;
  }
  BrokerResult r;
  r.kind = header.part == StreamPart::kHead   ? BrokerResult::Kind::kHead
           : header.part == StreamPart::kData ? BrokerResult::Kind::kData
           : header.part == StreamPart::kEnd  ? BrokerResult::Kind::kEnd
                                              : BrokerResult::Kind::kAbort;
  r.envelope = std::move(frames[protocol::kStreamPayloadIndex]);
  deliver(&plain, shared.get(), std::move(r));
}

void BrokerClient::on_unsent(Link& link, protocol::Frames& frames) {
  protocol::RequestHeader header;
  if (protocol::parse_request(frames, 0, header)) return;
  Callback failed;
  Link* other = nullptr;
  {
    std::lock_guard lock(mutex_);
    const auto it = pending_.find(key_of(header.id));
    if (it == pending_.end() || it->second.link != link.index) return;
    // Nobody received it, so any other broker may carry it, retry-safe or not.
    other = choose(header.service, &link);
    --link.pending;
    if (other) {
      ++other->pending;
      it->second.link = other->index;
    } else {
      failed = std::move(it->second.done);
      pending_.erase(it);
    }
  }
  if (other) {
    failovers_.fetch_add(1, std::memory_order_relaxed);
    other->peer.link().post(std::move(frames));
  } else if (failed) {
    failed(local_error(std::string(header.service), "broker not reachable", header.id));
  }
}

void BrokerClient::link_lost(Link& link, const std::string& detail) {
  std::vector<std::pair<Link*, protocol::Frames>> resend;
  std::vector<std::pair<std::string, Pending>> failed;
  const auto now_ms = protocol::unix_ms_now();
  {
    std::lock_guard lock(mutex_);
    link.stats.reset();
    link.served.clear();
    for (auto it = pending_.begin(); it != pending_.end();) {
      auto& p = it->second;
      if (p.link != link.index) {
        ++it;
        continue;
      }
      --link.pending;
      // A stream (its HEAD out) has an empty envelope: it never moves.
      Link* other =
          !p.envelope.empty() && p.deadline_ms > now_ms ? choose(p.service, &link) : nullptr;
      if (!other) {
        failed.emplace_back(it->first, std::move(p));
        it = pending_.erase(it);
        continue;
      }
      ++other->pending;
      p.link = other->index;
      zmq::message_t shared;
      shared.copy(p.envelope);
      // The fields first sent (request_header's, through submit), flag included: the same
      // request under the same id, not a new decision. No STAMPS: its first broker's time would
      // be counted as the gateway's.
      const protocol::RequestHeader header{p.service, id_of(it->first), p.deadline_ms, p.flags,
                                           std::nullopt};
      resend.emplace_back(other, request_frames(header, std::move(shared)));
      ++it;
    }
  }
  if (!resend.empty() || !failed.empty()) {
    spdlog::warn("broker {}: {}; {} pending request(s) sent through another broker, {} failed",
                 link.endpoint(), detail, resend.size(), failed.size());
  }
  failovers_.fetch_add(resend.size(), std::memory_order_relaxed);
  for (auto& [other, frames] : resend) other->peer.link().post(std::move(frames));
  for (auto& [key, p] : failed) {
    if (p.stream) {
      (*p.stream)(local_abort(detail));
    } else {
      p.done(local_error(p.service, detail, id_of(key)));
    }
  }
}

void BrokerClient::fail_all(const std::string& detail) {
  std::unordered_map<std::string, Pending> failed;
  {
    std::lock_guard lock(mutex_);
    failed.swap(pending_);
    for (auto& l : links_) l->pending = 0;
  }
  for (auto& [key, p] : failed) {
    if (p.stream) {
      (*p.stream)(local_abort(detail));
    } else {
      p.done(local_error(p.service, detail, id_of(key)));
    }
  }
}

void BrokerClient::on_tick(Link& link, Clock::time_point now) {
  if (link.connected() && now >= link.next_stats) {
    protocol::Frames st;
    protocol::add_header(st, Command::kStats);
    st.push_back(protocol::id_frame({}));
    link.peer.link().send_now(st);
    link.next_stats = now + options_.stats_interval;
  }
}

}  // namespace courier::gateway
