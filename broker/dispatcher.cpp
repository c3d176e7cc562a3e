#include "broker/dispatcher.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/envelope.hpp"
#include "common/errors.hpp"
#include "common/ids.hpp"

namespace courier::broker {

using protocol::Command;
using protocol::Frames;

struct Dispatcher::Worker {
  Identity id;
  std::string service;
  std::string name;  // the worker's self-reported id, for operators
  std::uint32_t capacity = 0;
  std::uint32_t in_flight = 0;
  bool draining = false;
  Clock::time_point expiry;
  std::uint64_t completed = 0;
  std::string status;         // the worker's last self-report (JSON from its heartbeat), for stats
  bool circuit_open = false;  // its status says its breaker fails every request fast
};

struct Dispatcher::Service {
  std::string name;
  std::vector<Worker*> workers;
  std::deque<std::string> queue;  // request keys, oldest first; stale keys are skipped
  std::size_t max_queue = 0;
  Clock::time_point no_workers_since;
  Counters counters;  // the per-service subset that applies
};

struct Dispatcher::Request {
  protocol::CorrelationId id{};
  Identity gateway;
  std::string service;
  std::uint64_t deadline_ms = 0;
  Clock::time_point deadline;
  std::uint8_t flags = 0;
  zmq::message_t envelope;   // kept for requeue; see own_envelope()
  Worker* worker = nullptr;  // null while queued
  Clock::time_point enqueued;
  int dispatches = 0;
};

namespace {

// libzmq receives into 8 KiB batch buffers and hands out messages that point into them; a buffer
// is freed only when its last message is. A request is held for its whole run (seconds, for a
// slow service), so a small envelope kept as received can pin a whole batch buffer: at a few
// messages per read, several KiB per request in flight. A small envelope is therefore copied
// into its own allocation; a large one already has its own and is kept as is.
zmq::message_t own_envelope(zmq::message_t received) {
  constexpr std::size_t kCopyUpTo = 8 * 1024;
  if (received.size() > kCopyUpTo) return received;
  return zmq::message_t(received.data(), received.size());
}

constexpr std::size_t kMaxServices = 1024;

// Whether a worker's status says its breaker fails every request fast: "circuit_accepting":false
// (an open circuit, or a half-open one with every probe out), or, from a worker that does not
// send that field, "circuit":"open". The status comes from the network: anything else, of any
// shape, means no.
bool circuit_is_open(const std::string& status) {
  const auto j = nlohmann::json::parse(status, nullptr, false);
  if (!j.is_object()) return false;
  if (const auto it = j.find("circuit_accepting"); it != j.end() && it->is_boolean()) {
    return !it->get<bool>();
  }
  const auto it = j.find("circuit");
  return it != j.end() && it->is_string() && it->get_ref<const std::string&>() == "open";
}

std::string key_of(const protocol::CorrelationId& id) {
  return std::string(reinterpret_cast<const char*>(id.data()), id.size());
}

zmq::message_t identity_frame(const Identity& id) { return zmq::message_t(id.data(), id.size()); }

// Deadlines arrive from the network: clamp them so that steady-clock arithmetic cannot overflow
// (a deadline of 2^64-1 used to wrap to one in the past, or overflow the nanosecond count).
constexpr std::uint64_t kMaxDeadlineAheadMs = 7ull * 24 * 3600 * 1000;

Clock::time_point steady_deadline(std::uint64_t deadline_ms, const Now& now) {
  if (deadline_ms <= now.wall_ms) return now.steady;  // already due
  const auto ahead = std::min(deadline_ms - now.wall_ms, kMaxDeadlineAheadMs);
  return now.steady + std::chrono::milliseconds(static_cast<std::int64_t>(ahead));
}

// Frame counts (including the routing id) of the messages that carry no fields.
bool control_shape_ok(Command command, std::size_t frames) {
  switch (command) {
    case Command::kHeartbeat:
      return frames == 3 || frames == 4;  // the sender's id is optional
    case Command::kDrain:
    case Command::kDisconnect:
      return frames == 3;
    default:
      return true;  // the command's own parser checks it
  }
}

}  // namespace

Dispatcher::Dispatcher(DispatcherOptions options, Outbox& outbox)
    : options_(std::move(options)), outbox_(outbox), requests_(std::make_unique<RequestMap>()) {}

Dispatcher::~Dispatcher() = default;

std::size_t Dispatcher::in_flight() const {
  std::size_t n = 0;
  for (const auto& [key, r] : *requests_) n += r.worker != nullptr;
  return n;
}

Dispatcher::Service& Dispatcher::service(const std::string& name, const Now& now) {
  auto& slot = services_[name];
  if (!slot) {
    slot = std::make_unique<Service>();
    slot->name = name;
    const auto it = options_.max_queue.find(name);
    slot->max_queue = it == options_.max_queue.end() ? options_.default_max_queue : it->second;
    slot->no_workers_since = now.steady;
  }
  return *slot;
}

void Dispatcher::touch_gateway(const Identity& gateway, const Now& now) {
  gateways_[gateway] = now.steady + options_.heartbeat_interval * options_.liveness;
}

bool Dispatcher::gateway_known(const Identity& gateway) const {
  return gateways_.find(gateway) != gateways_.end();
}

void Dispatcher::send_control(bool to_worker, const Identity& peer, Command command) {
  Frames frames;
  frames.push_back(identity_frame(peer));
  protocol::add_header(frames, command);
  if (command == Command::kHeartbeat) frames.emplace_back(options_.broker_id);
  const bool ok = to_worker ? outbox_.to_worker(frames) : outbox_.to_gateway(frames);
  if (!ok) ++counters_.unroutable;
}

void Dispatcher::reply_error(const Identity& gateway, const protocol::CorrelationId& id, int kind,
                             const std::string& service, const std::string& detail,
                             const char* retry_after) {
  auto reply = make_error_reply(static_cast<ErrorKind>(kind), service, detail, id);
  if (retry_after) reply.headers.push_back({"Retry-After", retry_after});
  reply.worker_id = options_.broker_id;
  Frames frames;
  frames.push_back(identity_frame(gateway));
  protocol::add_reply(frames, id, encode(reply));
  if (!outbox_.to_gateway(frames)) ++counters_.unroutable;
}

std::optional<Command> Dispatcher::read_command(const Frames& frames) {
  Command command{};
  if (frames.size() < 3 || protocol::parse_command(frames, 1, command) ||
      !control_shape_ok(command, frames.size())) {
    ++counters_.malformed;
    return std::nullopt;
  }
  return command;
}

void Dispatcher::on_gateway_message(Frames& frames, const Now& now) {
  const auto parsed = read_command(frames);
  if (!parsed) return;
  const Command command = *parsed;
  const Identity gateway(protocol::view(frames[0]));
  switch (command) {
    case Command::kRequest:
      touch_gateway(gateway, now);
      handle_request(gateway, frames, now);
      return;
    case Command::kHeartbeat:
      // A gateway we did not know (new, or we restarted) learns at once that we are here.
      if (!gateway_known(gateway)) {
        touch_gateway(gateway, now);
        send_control(false, gateway, Command::kHeartbeat);
      }
      touch_gateway(gateway, now);
      return;
    case Command::kStats: {
      protocol::CorrelationId id{};
      if (protocol::parse_stats(frames, 1, id)) break;
      touch_gateway(gateway, now);
      Frames out;
      out.push_back(identity_frame(gateway));
      protocol::add_header(out, Command::kStats);
      out.push_back(protocol::id_frame(id));
      // Worker names are untrusted bytes: replace invalid UTF-8 rather than throw.
      out.emplace_back(stats(now).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      if (!outbox_.to_gateway(out)) ++counters_.unroutable;
      return;
    }
    case Command::kDisconnect:
      gateways_.erase(gateway);
      return;
    default:
      break;
  }
  ++counters_.malformed;
}

void Dispatcher::handle_request(const Identity& gateway, Frames& frames, const Now& now) {
  protocol::RequestHeader header;
  if (protocol::parse_request(frames, 1, header)) {
    ++counters_.malformed;
    return;
  }
  const std::string service_name(header.service);
  if (shutting_down_) {
    reply_error(gateway, header.id, static_cast<int>(ErrorKind::kBrokerUnavailable), service_name,
                "broker shutting down");
    return;
  }
  auto key = key_of(header.id);
  if (const auto it = requests_->find(key); it != requests_->end()) {
    // Answering would give the original request's client a second reply.
    ++counters_.duplicate_requests;
    // Ids are unique per gateway process, so the same id over another connection is the same
    // gateway after a reconnect (it sent the request again after losing the old connection, or
    // another broker): the reply must take the new route, the old one leads nowhere.
    if (it->second.gateway != gateway) {
      it->second.gateway = gateway;
      ++counters_.rerouted_requests;
    }
    return;
  }
  ++counters_.requests;
  if (services_.size() >= kMaxServices && !services_.count(service_name)) {
    // Service names come from the network: bound the table they can grow.
    ++counters_.rejected_no_workers;
    reply_error(gateway, header.id, static_cast<int>(ErrorKind::kUnavailable), service_name,
                "no workers");
    return;
  }
  Service& svc = service(service_name, now);
  const auto deadline = steady_deadline(header.deadline_ms, now);
  if (deadline <= now.steady) {
    ++counters_.expired;
    ++svc.counters.expired;
    reply_error(gateway, header.id, static_cast<int>(ErrorKind::kTimeout), service_name,
                "deadline passed before dispatch");
    return;
  }
  if (svc.queue.size() >= svc.max_queue) {
    // Only when nothing can take it at once: a full queue with free capacity cannot happen.
    ++counters_.rejected_overloaded;
    ++svc.counters.rejected_overloaded;
    reply_error(gateway, header.id, static_cast<int>(ErrorKind::kOverloaded), service_name,
                "queue full (" + std::to_string(svc.max_queue) + " waiting)", "1");
    return;
  }
  Request request;
  request.id = header.id;
  request.gateway = gateway;
  request.service = service_name;
  request.deadline_ms = header.deadline_ms;
  request.deadline = deadline;
  request.flags = header.flags;
  request.envelope = own_envelope(std::move(frames[1 + protocol::kEnvelopeIndex]));
  request.enqueued = now.steady;
  requests_->emplace(key, std::move(request));
  svc.queue.push_back(std::move(key));
  dispatch(svc, now);
}

bool Dispatcher::send_to_worker(Worker& worker, Request& request, const Now& now) {
  protocol::RequestHeader header;
  header.service = request.service;
  header.id = request.id;
  header.deadline_ms = request.deadline_ms;
  header.flags = request.flags;
  Frames frames;
  frames.reserve(8);
  frames.push_back(identity_frame(worker.id));
  zmq::message_t envelope;
  envelope.copy(request.envelope);  // shares the buffer: no byte is copied for large envelopes
  protocol::add_request(frames, header, std::move(envelope));
  if (!outbox_.to_worker(frames)) {
    ++counters_.unroutable;
    return false;
  }
  request.worker = &worker;
  ++request.dispatches;
  ++worker.in_flight;
  ++counters_.dispatched;
  return true;
}

std::size_t Dispatcher::ejected_workers(const Service& svc) {
  // A worker whose circuit is open answers every request 503 at once, which frees its credit at
  // once: left in the rotation, it would draw more and more of the traffic. It gets none while at
  // least half of the live workers are healthy, the way Envoy ejects a host only among several;
  // below that (the upstream is down for most of them) every worker is used again, and fails
  // fast.
  std::size_t live = 0, open = 0;
  for (const Worker* w : svc.workers) {
    live += !w->draining;
    open += !w->draining && w->circuit_open;
  }
  return (live - open) * 2 >= live ? open : 0;
}

void Dispatcher::dispatch(Service& svc, const Now& now) {
  const bool avoid_open = ejected_workers(svc) > 0;
  while (!svc.queue.empty()) {
    Worker* best = nullptr;
    for (Worker* w : svc.workers) {
      if (w->draining || w->in_flight >= w->capacity) continue;
      if (avoid_open && w->circuit_open) continue;
      // Least loaded by share of capacity: a small worker is not flooded beside a big one.
      if (!best || std::uint64_t{w->in_flight} * best->capacity <
                       std::uint64_t{best->in_flight} * w->capacity) {
        best = w;
      }
    }
    if (!best) return;
    const auto it = requests_->find(svc.queue.front());
    svc.queue.pop_front();
    if (it == requests_->end() || it->second.worker) continue;  // stale key
    Request& request = it->second;
    if (request.deadline <= now.steady) {
      ++counters_.expired;
      ++svc.counters.expired;
      reply_error(request.gateway, request.id, static_cast<int>(ErrorKind::kTimeout), svc.name,
                  "deadline passed while queued");
      requests_->erase(it);
      continue;
    }
    if (!send_to_worker(*best, request, now)) {
      // Never delivered, so always safe to hand to another worker.
      svc.queue.push_front(it->first);
      remove_worker(best->id, "unreachable", now);
      continue;
    }
    ++svc.counters.dispatched;
  }
}

void Dispatcher::on_worker_message(Frames& frames, const Now& now) {
  const auto parsed = read_command(frames);
  if (!parsed) return;
  const Command command = *parsed;
  const Identity id(protocol::view(frames[0]));
  if (command == Command::kReady) {
    protocol::ReadyHeader ready;
    if (protocol::parse_ready(frames, 1, ready)) {
      ++counters_.malformed;
      return;
    }
    handle_ready(id, ready, now);
    return;
  }
  const auto it = workers_.find(id);
  if (it == workers_.end()) {
    if (command == Command::kReply) {
      protocol::CorrelationId ignored{};
      if (protocol::parse_reply(frames, 1, ignored)) {
        ++counters_.malformed;
        return;
      }
      ++counters_.late_replies;
    } else if (command != Command::kHeartbeat && command != Command::kDrain &&
               command != Command::kDisconnect) {
      ++counters_.malformed;  // REQUEST or STATS have no business on the worker socket
      return;
    }
    // Unknown (we restarted, or declared it dead): ask it to register again.
    if (command != Command::kDisconnect) send_control(true, id, Command::kDisconnect);
    return;
  }
  Worker& worker = *it->second;
  worker.expiry = now.steady + options_.heartbeat_interval * options_.liveness;
  switch (command) {
    case Command::kReply:
      handle_reply(worker, frames, now);
      return;
    case Command::kHeartbeat:
      // A worker's heartbeat may carry its own status (circuit state, attempts): kept for stats.
      if (frames.size() == 4 && frames[3].size() <= 4096) {
        worker.status.assign(frames[3].data<char>(), frames[3].size());
        const bool was_open = worker.circuit_open;
        worker.circuit_open = circuit_is_open(worker.status);
        if (was_open != worker.circuit_open) {
          spdlog::info("worker {} ({}) circuit {}", worker.name, worker.service,
                       worker.circuit_open ? "open: taken out of the rotation while others can "
                                             "serve"
                                           : "no longer open: back in the rotation");
          // Requests may have waited for a healthy worker that this one now is.
          if (auto svc = services_.find(worker.service); svc != services_.end()) {
            dispatch(*svc->second, now);
          }
        }
      }
      return;
    case Command::kDrain:
      if (!worker.draining) spdlog::info("worker {} ({}) draining", worker.name, worker.service);
      worker.draining = true;
      return;
    case Command::kDisconnect:
      remove_worker(id, "disconnected", now);
      return;
    default:
      ++counters_.malformed;
  }
}

void Dispatcher::handle_ready(const Identity& id, const protocol::ReadyHeader& ready,
                              const Now& now) {
  const std::string service_name(ready.service);
  if (auto it = workers_.find(id); it != workers_.end()) {
    if (it->second->service == service_name) {
      it->second->capacity = ready.capacity;  // a new credit
      it->second->draining = false;
      it->second->expiry = now.steady + options_.heartbeat_interval * options_.liveness;
      dispatch(service(service_name, now), now);
      return;
    }
    remove_worker(id, "re-registered for another service", now);
  }
  auto worker = std::make_unique<Worker>();
  worker->id = id;
  worker->service = service_name;
  worker->name = std::string(ready.worker_id);
  worker->capacity = ready.capacity;
  worker->expiry = now.steady + options_.heartbeat_interval * options_.liveness;
  Service& svc = service(service_name, now);
  svc.workers.push_back(worker.get());
  spdlog::info("worker {} registered for {} (capacity {})", worker->name, service_name,
               worker->capacity);
  workers_.emplace(id, std::move(worker));
  send_control(true, id, Command::kHeartbeat);  // tells the worker at once that we know it
  dispatch(svc, now);
}

void Dispatcher::handle_reply(Worker& worker, Frames& frames, const Now& now) {
  protocol::CorrelationId id{};
  if (protocol::parse_reply(frames, 1, id)) {
    ++counters_.malformed;
    return;
  }
  const auto it = requests_->find(key_of(id));
  if (it == requests_->end() || it->second.worker != &worker) {
    // A duplicate, or a worker we gave up on answering after its request went elsewhere.
    ++counters_.late_replies;
    return;
  }
  const Identity gateway = it->second.gateway;
  requests_->erase(it);
  --worker.in_flight;
  ++worker.completed;
  Service& svc = service(worker.service, now);
  if (gateway_known(gateway)) {
    frames[0] = identity_frame(gateway);
    if (outbox_.to_gateway(frames)) {
      ++counters_.replies;
      ++svc.counters.replies;
    } else {
      ++counters_.unroutable;
    }
  } else {
    ++counters_.gateway_gone_drops;
  }
  dispatch(svc, now);
}

void Dispatcher::remove_worker(const Identity& id, const char* why, const Now& now) {
  const auto it = workers_.find(id);
  if (it == workers_.end()) return;
  Worker* worker = it->second.get();
  Service& svc = service(worker->service, now);
  std::erase(svc.workers, worker);
  ++counters_.workers_lost;
  bool any_live = false;
  for (Worker* w : svc.workers) any_live |= !w->draining;
  if (!any_live) svc.no_workers_since = now.steady;
  // What the worker held: requeue where a second attempt is safe, else tell the client.
  std::vector<std::string> requeue;
  std::size_t lost = 0;
  for (auto r = requests_->begin(); r != requests_->end();) {
    Request& request = r->second;
    if (request.worker != worker) {
      ++r;
      continue;
    }
    request.worker = nullptr;
    const bool safe = request.flags & protocol::kFlagRetrySafe;
    if (safe && request.dispatches < options_.max_dispatches && request.deadline > now.steady) {
      requeue.push_back(r->first);
      ++r;
    } else {
      ++lost;
      ++counters_.worker_lost_replies;
      ++svc.counters.worker_lost_replies;
      reply_error(request.gateway, request.id, static_cast<int>(ErrorKind::kWorkerLost),
                  request.service, std::string("worker ") + worker->name + " " + why);
      r = requests_->erase(r);
    }
  }
  // Oldest first, ahead of newer requests: they have waited longest.
  for (auto k = requeue.rbegin(); k != requeue.rend(); ++k) svc.queue.push_front(*k);
  counters_.requeued += requeue.size();
  svc.counters.requeued += requeue.size();
  spdlog::warn("worker {} ({}) removed: {}; {} requests requeued, {} answered WORKER_LOST",
               worker->name, worker->service, why, requeue.size(), lost);
  workers_.erase(it);
  // At once, not at the next tick: another worker may have room now.
  if (!requeue.empty()) dispatch(svc, now);
  // The broker exits once nothing is in flight: what no worker could take now would be stranded
  // in the queue, unanswered.
  if (shutting_down_) fail_queued(svc, "broker shutting down");
}

std::size_t Dispatcher::fail_queued(Service& svc, const std::string& detail) {
  std::size_t failed = 0;
  for (const auto& key : svc.queue) {
    const auto r = requests_->find(key);
    if (r == requests_->end() || r->second.worker) continue;
    reply_error(r->second.gateway, r->second.id, static_cast<int>(ErrorKind::kBrokerUnavailable),
                r->second.service, detail);
    requests_->erase(r);
    ++failed;
  }
  svc.queue.clear();
  return failed;
}

void Dispatcher::on_stall(std::chrono::milliseconds stalled) {
  const auto detail =
      "broker stalled for " + std::to_string(stalled.count()) + " ms; the request was not run";
  std::size_t failed = 0;
  for (auto& [name, svc] : services_) {
    const auto n = fail_queued(*svc, detail);
    svc->counters.stall_drops += n;
    failed += n;
  }
  counters_.stall_drops += failed;
  if (failed == 0) {
    spdlog::info("broker did not run for {} ms (frozen or starved); nothing was queued",
                 stalled.count());
    return;
  }
  spdlog::warn(
      "broker did not run for {} ms (frozen or starved): its gateways have given up on it; {} "
      "queued request(s) answered 503 and not run",
      stalled.count(), failed);
}

void Dispatcher::fail_in_flight(const std::string& detail) {
  for (auto& [name, svc] : services_) fail_queued(*svc, detail);
  for (auto r = requests_->begin(); r != requests_->end();) {
    Request& request = r->second;
    if (request.worker) --request.worker->in_flight;
    reply_error(request.gateway, request.id, static_cast<int>(ErrorKind::kBrokerUnavailable),
                request.service, detail);
    r = requests_->erase(r);
  }
}

void Dispatcher::on_tick(const Now& now) {
  if (now.steady >= next_heartbeat_) {
    for (const auto& [id, w] : workers_) send_control(true, id, Command::kHeartbeat);
    for (const auto& [id, expiry] : gateways_) send_control(false, id, Command::kHeartbeat);
    next_heartbeat_ = now.steady + options_.heartbeat_interval;
  }
  std::vector<Identity> dead;
  for (const auto& [id, w] : workers_) {
    if (w->expiry <= now.steady) dead.push_back(id);
  }
  for (const auto& id : dead) remove_worker(id, "missed heartbeats", now);

  std::vector<Identity> gone;
  for (const auto& [id, expiry] : gateways_) {
    if (expiry <= now.steady) gone.push_back(id);
  }
  for (const auto& id : gone) {
    gateways_.erase(id);
    spdlog::warn("gateway lost (missed heartbeats); its queued requests are dropped");
  }

  for (auto r = requests_->begin(); r != requests_->end();) {
    Request& request = r->second;
    Service& svc = service(request.service, now);
    if (!request.worker) {
      if (!gateway_known(request.gateway)) {
        ++counters_.gateway_gone_drops;
        r = requests_->erase(r);
        continue;
      }
      if (request.deadline <= now.steady) {
        ++counters_.expired;
        ++svc.counters.expired;
        reply_error(request.gateway, request.id, static_cast<int>(ErrorKind::kTimeout),
                    request.service, "deadline passed while queued");
        r = requests_->erase(r);
        continue;
      }
      bool any_live = false;
      for (Worker* w : svc.workers) any_live |= !w->draining;
      const auto waiting_since = std::max(request.enqueued, svc.no_workers_since);
      if (!any_live && now.steady - waiting_since >= options_.no_worker_grace) {
        ++counters_.rejected_no_workers;
        ++svc.counters.rejected_no_workers;
        reply_error(request.gateway, request.id, static_cast<int>(ErrorKind::kUnavailable),
                    request.service, "no workers");
        r = requests_->erase(r);
        continue;
      }
    } else if (request.deadline + options_.orphan_grace <= now.steady) {
      // The worker never answered: free its slot rather than leak it.
      ++counters_.orphans;
      --request.worker->in_flight;
      r = requests_->erase(r);
      continue;
    }
    ++r;
  }
  // Drop stale keys so queue depth stays truthful, then hand out what freed up.
  for (auto& [name, svc] : services_) {
    std::erase_if(svc->queue, [&](const std::string& key) {
      const auto it = requests_->find(key);
      return it == requests_->end() || it->second.worker != nullptr;
    });
    dispatch(*svc, now);
  }
}

void Dispatcher::begin_shutdown(const Now& now) {
  shutting_down_ = true;
  for (auto& [name, svc] : services_) fail_queued(*svc, "broker shutting down");
}

nlohmann::json Dispatcher::stats(const Now& now) const {
  using nlohmann::json;
  const auto counters_json = [](const Counters& c) {
    return json{{"requests", c.requests},
                {"dispatched", c.dispatched},
                {"replies", c.replies},
                {"requeued", c.requeued},
                {"worker_lost", c.worker_lost_replies},
                {"expired", c.expired},
                {"rejected_overloaded", c.rejected_overloaded},
                {"rejected_no_workers", c.rejected_no_workers},
                {"malformed", c.malformed},
                {"late_replies", c.late_replies},
                {"duplicate_requests", c.duplicate_requests},
                {"rerouted_requests", c.rerouted_requests},
                {"unroutable", c.unroutable},
                {"gateway_gone_drops", c.gateway_gone_drops},
                {"orphans", c.orphans},
                {"stall_drops", c.stall_drops},
                {"workers_lost", c.workers_lost}};
  };
  json services = json::object();
  for (const auto& [name, svc] : services_) {
    json workers = json::array();
    std::uint64_t capacity = 0, in_flight = 0, live = 0;
    std::string circuit;             // every worker's breaker state if they agree, else "mixed"
    json circuits = json::object();  // how many workers are in each breaker state
    for (const Worker* w : svc->workers) {
      json entry = {{"id", w->name},
                    {"capacity", w->capacity},
                    {"in_flight", w->in_flight},
                    {"draining", w->draining},
                    {"completed", w->completed}};
      if (!w->status.empty()) {
        auto status = json::parse(w->status, nullptr, false);
        if (status.is_object()) {
          // The status comes from the network: a field of the wrong type is ignored, not trusted.
          const auto it = status.find("circuit");
          if (it != status.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
            const auto& state = it->get_ref<const std::string&>();
            circuit = circuit.empty() || circuit == state ? state : "mixed";
            circuits[state] = circuits.value(state, 0) + 1;
          }
          entry["status"] = std::move(status);
        }
      }
      workers.push_back(std::move(entry));
      if (!w->draining) {
        capacity += w->capacity;
        ++live;
      }
      in_flight += w->in_flight;
    }
    std::size_t depth = 0;
    for (const auto& key : svc->queue) {
      const auto it = requests_->find(key);
      depth += it != requests_->end() && !it->second.worker;
    }
    json c = counters_json(svc->counters);
    for (const char* k :
         {"requests", "malformed", "late_replies", "duplicate_requests", "rerouted_requests",
          "unroutable", "gateway_gone_drops", "orphans", "workers_lost"}) {
      c.erase(k);
    }
    services[name] = {{"workers", live},
                      {"capacity", capacity},
                      {"in_flight", in_flight},
                      {"queue_depth", depth},
                      {"max_queue", svc->max_queue},
                      {"circuit", circuit.empty() ? "unknown" : circuit},
                      {"circuits", std::move(circuits)},
                      // Workers the broker is sending nothing while others can serve.
                      {"ejected", ejected_workers(*svc)},
                      {"worker_list", std::move(workers)},
                      {"counters", std::move(c)}};
  }
  return json{{"broker_id", options_.broker_id},
              {"gateways", gateways_.size()},
              {"services", std::move(services)},
              {"counters", counters_json(counters_)}};
}

}  // namespace courier::broker
