#include "broker/dispatcher.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "broker/stats_snapshot.hpp"
#include "common/envelope.hpp"
#include "common/errors.hpp"
#include "common/ids.hpp"

namespace courier::broker {

using protocol::Command;
using protocol::Frames;

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

// Whether a CREDIT or CANCEL comes from the gateway that sent the request: the same connection,
// or the same authenticated gateway over another one (as for a re-sent REQUEST).
bool sent_by(const Request& request, const Identity& gateway, std::string_view principal) {
  return request.gateway == gateway ||
         (!request.principal.empty() && request.principal == principal);
}

// END and ABORT: the worker is done with the request (and has freed its own slot).
bool is_final(protocol::StreamPart part) {
  return part == protocol::StreamPart::kEnd || part == protocol::StreamPart::kAbort;
}

}  // namespace

Dispatcher::Dispatcher(DispatcherOptions options, Outbox& outbox)
    : options_(std::move(options)),
      outbox_(outbox),
      workers_(options_.heartbeat_interval * options_.liveness),
      queues_({options_.default_max_queue, options_.max_queue, options_.no_worker_grace}),
      requests_(options_.max_dispatches) {}

Dispatcher::~Dispatcher() = default;

std::size_t Dispatcher::in_flight() const { return requests_.in_flight(); }

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

bool Dispatcher::send_abort(const Identity& gateway, const protocol::CorrelationId& id,
                            std::string why) {
  // A gateway that is gone has forgotten the stream: an ABORT would reach nobody.
  if (!gateway_known(gateway)) return false;
  if (why.size() > protocol::kMaxAbortReason) why.resize(protocol::kMaxAbortReason);
  Frames frames;
  frames.push_back(identity_frame(gateway));
  protocol::add_stream(frames, {id, protocol::StreamPart::kAbort, 0},
                       zmq::message_t(why.data(), why.size()));
  if (outbox_.to_gateway(frames)) return true;
  ++counters_.unroutable;
  return false;
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

bool Dispatcher::malformed(Malformed reason, const char* what, const Now& now, Worker* worker) {
  ++counters_.malformed;
  switch (reason) {
    case Malformed::kShape:
      ++counters_.malformed_shape;
      break;
    case Malformed::kField:
      ++counters_.malformed_field;
      break;
    case Malformed::kMisrouted:
      ++counters_.malformed_misrouted;
      break;
    case Malformed::kStatus:
      ++counters_.malformed_status;
      break;
  }
  malformed_log_.note(now.steady, what);
  if (!worker || ++worker->strikes < options_.max_worker_strikes) return false;
  // Its requests are settled exactly as on any worker loss (requeued or WORKER_LOST); told to
  // go, a worker that was merely buggy registers again.
  const Identity id = worker->id;
  ++counters_.peers_disconnected;
  refused_log_.note(now.steady, "worker " + worker->name + " (" + worker->service +
                                    ") forgotten after repeated malformed messages");
  remove_worker(id, "sent repeated malformed messages", now);
  send_control(true, id, Command::kDisconnect);
  return true;
}

void Dispatcher::on_handler_error(const char* what, const Now& now) {
  ++counters_.handler_errors;
  error_log_.note(now.steady, what);
}

std::optional<Command> Dispatcher::read_command(const Frames& frames, bool from_worker,
                                                const Now& now) {
  Command command{};
  if (frames.size() < 3 || protocol::parse_command(frames, 1, command) ||
      !control_shape_ok(command, frames.size())) {
    Worker* worker = nullptr;
    if (from_worker && !frames.empty()) worker = workers_.find(Identity(protocol::view(frames[0])));
    malformed(Malformed::kShape, "not a Courier message, or a wrong frame count", now, worker);
    return std::nullopt;
  }
  return command;
}

bool Dispatcher::admit_gateway(const Identity& gateway, const Now& now) {
  if (gateway_known(gateway) || gateways_.size() < options_.max_gateways) return true;
  ++counters_.refused_gateways;
  refused_log_.note(now.steady,
                    "gateway connection refused: " + std::to_string(options_.max_gateways) +
                        " gateways known (broker.max_gateways)");
  return false;
}

bool Dispatcher::admits_service(const std::string& service) const {
  if (!options_.services.empty()) return options_.services.count(service) > 0;
  return queues_.admits(service, options_.max_services);
}

bool Dispatcher::admits_worker(const std::string& service, const Now& now) {
  if (!admits_service(service)) {
    ++counters_.refused_services;
    refused_log_.note(now.steady,
                      options_.services.empty()
                          ? "READY for a new service " + service +
                                " refused: " + std::to_string(options_.max_services) +
                                " services exist (broker.max_services)"
                          : "READY for service " + service +
                                " refused: not declared (broker.services, or the services "
                                "the configuration names)");
    return false;
  }
  if (workers_.of_service(service).size() >= options_.max_workers_per_service) {
    ++counters_.refused_workers;
    refused_log_.note(now.steady, "READY refused: service " + service + " has " +
                                      std::to_string(options_.max_workers_per_service) +
                                      " workers (broker.max_workers_per_service)");
    return false;
  }
  return true;
}

// --- Gateways ---

void Dispatcher::on_gateway_message(Frames& frames, const Now& now, std::string_view principal) {
  const auto parsed = read_command(frames, false, now);
  if (!parsed) return;
  const Identity gateway(protocol::view(frames[0]));
  if (*parsed == Command::kDisconnect) {
    forget_gateway(gateway);
    return;
  }
  if (*parsed != Command::kRequest && *parsed != Command::kHeartbeat &&
      *parsed != Command::kStats && *parsed != Command::kCredit && *parsed != Command::kCancel) {
    malformed(Malformed::kMisrouted, "READY, REPLY, STREAM or DRAIN on the gateway socket", now);
    return;
  }
  if (!admit_gateway(gateway, now)) {
    // Told at once, so that its requests fail fast instead of at their deadline; it is not
    // remembered, so it cannot fill the table.
    protocol::RequestHeader header;
    if (*parsed == Command::kRequest && !protocol::parse_request(frames, 1, header)) {
      reply_error(gateway, header.id, static_cast<int>(ErrorKind::kBrokerUnavailable),
                  std::string(header.service), "broker has too many gateways");
    }
    return;
  }
  switch (*parsed) {
    case Command::kRequest:
      touch_gateway(gateway, now);
      handle_request(gateway, principal, frames, now);
      return;
    case Command::kHeartbeat:
      // A gateway we did not know (new, or we restarted) learns at once that we are here.
      if (!gateway_known(gateway)) {
        touch_gateway(gateway, now);
        send_control(false, gateway, Command::kHeartbeat);
      }
      touch_gateway(gateway, now);
      return;
    case Command::kStats:
      handle_stats(gateway, frames, now);
      return;
    case Command::kCredit:
      touch_gateway(gateway, now);
      handle_credit(gateway, principal, frames, now);
      return;
    case Command::kCancel:
      touch_gateway(gateway, now);
      handle_cancel(gateway, principal, frames, now);
      return;
    default:
      return;  // ruled out above
  }
}

void Dispatcher::handle_stats(const Identity& gateway, const Frames& frames, const Now& now) {
  protocol::CorrelationId id{};
  if (protocol::parse_stats(frames, 1, id)) {
    malformed(Malformed::kField, "STATS with a bad id", now);
    return;
  }
  touch_gateway(gateway, now);
  // A flood of STATS must not render the snapshot once each: within stats_cache, the last
  // rendering is sent again (gateways poll far less often).
  if (!stats_rendered_ || now.steady - *stats_rendered_ >= options_.stats_cache ||
      now.steady < *stats_rendered_) {
    stats_text_ = encode(stats(now));
    stats_rendered_ = now.steady;
  }
  Frames out;
  out.push_back(identity_frame(gateway));
  protocol::add_header(out, Command::kStats);
  out.push_back(protocol::id_frame(id));
  out.emplace_back(stats_text_.data(), stats_text_.size());
  if (!outbox_.to_gateway(out)) ++counters_.unroutable;
}

void Dispatcher::handle_credit(const Identity& gateway, std::string_view principal, Frames& frames,
                               const Now& now) {
  protocol::CorrelationId id{};
  std::uint32_t bytes = 0;
  if (const auto ec = protocol::parse_credit(frames, 1, id, bytes)) {
    malformed(ec == protocol::FrameError::kBadField ? Malformed::kField : Malformed::kShape,
              "CREDIT with bad fields", now);
    return;
  }
  // Credit for a request no worker streams any more (done, queued, cancelled) has no one to go
  // to; a gateway may well send some after the END it has not read yet.
  Request* request = requests_.find(key_of(id));
  if (!request || !request->worker || request->cancelled) return;
  if (!sent_by(*request, gateway, principal)) {
    // Credit from anyone else would let a stranger open another client's window.
    ++counters_.foreign_ids;
    foreign_control_log_.note(now.steady, "CREDIT for service " + request->service);
    return;
  }
  frames[0] = identity_frame(request->worker->id);
  if (!outbox_.to_worker(frames)) ++counters_.unroutable;
}

void Dispatcher::handle_cancel(const Identity& gateway, std::string_view principal,
                               const Frames& frames, const Now& now) {
  protocol::CorrelationId id{};
  if (const auto ec = protocol::parse_cancel(frames, 1, id)) {
    malformed(ec == protocol::FrameError::kBadField ? Malformed::kField : Malformed::kShape,
              "CANCEL with bad fields", now);
    return;
  }
  const auto key = key_of(id);
  Request* request = requests_.find(key);
  if (!request) return;  // done already, or never ours
  if (!sent_by(*request, gateway, principal)) {
    ++counters_.foreign_cancels;
    foreign_control_log_.note(now.steady, "CANCEL for service " + request->service);
    return;
  }
  ServiceQueue& svc = queues_.get(request->service, now.steady);
  if (!request->worker) {
    // Its queue key is now stale: dispatch and drop_stale skip it, so it is never run.
    requests_.erase(key);
    ++counters_.cancelled_queued;
    ++svc.counters.cancelled_queued;
    return;
  }
  if (cancel_at_worker(*request)) {
    ++counters_.cancelled_in_flight;
    ++svc.counters.cancelled_in_flight;
  }
}

bool Dispatcher::cancel_at_worker(Request& request) {
  if (request.cancelled || !request.worker) return false;
  // The worker's credit stays taken until its final REPLY, END or ABORT: until then it may still
  // be working on the request.
  request.cancelled = true;
  send_cancel(request.worker->id, request.id);
  return true;
}

void Dispatcher::send_cancel(const Identity& worker, const protocol::CorrelationId& id) {
  Frames frames;
  frames.push_back(identity_frame(worker));
  protocol::add_cancel(frames, id);
  if (!outbox_.to_worker(frames)) ++counters_.unroutable;
}

void Dispatcher::forget_gateway(const Identity& gateway) {
  gateways_.erase(gateway);
  // Queued ones go now, not at the next tick: a credit freed before it would dispatch them.
  // Their queue keys turn stale, and dispatch and drop_stale skip them.
  requests_.erase_if([&](const std::string&, Request& request) {
    if (request.gateway != gateway || request.worker) return false;
    ++counters_.gateway_gone_drops;
    return true;
  });
  requests_.for_each([&](Request& request) {
    if (request.gateway == gateway && cancel_at_worker(request)) ++counters_.gateway_gone_drops;
  });
}

void Dispatcher::handle_request(const Identity& gateway, std::string_view principal, Frames& frames,
                                const Now& now) {
  protocol::RequestHeader header;
  if (const auto ec = protocol::parse_request(frames, 1, header)) {
    malformed(ec == protocol::FrameError::kBadField ? Malformed::kField : Malformed::kShape,
              "REQUEST with bad fields", now);
    return;
  }
  if (header.stamps) (*header.stamps)[protocol::Stamp::kBrokerIn] = protocol::unix_us_now();
  const std::string service_name(header.service);
  if (shutting_down_) {
    reply_error(gateway, header.id, static_cast<int>(ErrorKind::kBrokerUnavailable), service_name,
                "broker shutting down");
    return;
  }
  auto key = key_of(header.id);
  if (Request* known = requests_.find(key)) {
    if (known->cancelled && known->gateway != gateway && !known->principal.empty() &&
        known->principal == principal) {
      // Its gateway came back over a new connection after the broker had given it up and told
      // the worker to stop: the request cannot be revived, but the gateway gets an answer.
      ++counters_.duplicate_requests;
      reply_error(gateway, header.id, static_cast<int>(ErrorKind::kBrokerUnavailable), service_name,
                  "request cancelled when its gateway connection was lost");
      return;
    }
    if (known->gateway == gateway) {
      // Answering would give the original request's client a second reply.
      ++counters_.duplicate_requests;
      return;
    }
    // The same id over another connection. Only the same authenticated gateway (a reconnect:
    // it re-sent the request after losing the old connection) may take the reply's route over;
    // anyone else could steal a victim's reply by re-sending its id (ids are shown to clients
    // as X-Request-ID). Without authentication, no connection proves it is the same gateway.
    if (!known->principal.empty() && known->principal == principal) {
      ++counters_.duplicate_requests;
      known->gateway = gateway;
      ++counters_.rerouted_requests;
      return;
    }
    ++counters_.foreign_ids;
    foreign_id_log_.note(now.steady, "service " + service_name);
    // The refusal goes to the sender only; the request and its route stay as they were.
    reply_error(gateway, header.id, static_cast<int>(ErrorKind::kUnavailable), service_name,
                "correlation id already in use by another gateway");
    return;
  }
  ++counters_.requests;
  if (!admits_service(service_name)) {
    ++counters_.rejected_no_workers;
    reply_error(gateway, header.id, static_cast<int>(ErrorKind::kUnavailable), service_name,
                "no workers");
    return;
  }
  ServiceQueue& svc = queues_.get(service_name, now.steady);
  const auto deadline = steady_deadline(header.deadline_ms, now);
  if (deadline <= now.steady) {
    ++counters_.expired;
    ++svc.counters.expired;
    reply_error(gateway, header.id, static_cast<int>(ErrorKind::kTimeout), service_name,
                "deadline passed before dispatch");
    return;
  }
  if (svc.full()) {
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
  request.principal = std::string(principal);
  request.service = service_name;
  request.deadline_ms = header.deadline_ms;
  request.deadline = deadline;
  request.flags = header.flags;
  request.envelope = own_envelope(std::move(frames[1 + protocol::kEnvelopeIndex]));
  request.stamps = header.stamps;
  request.enqueued = now.steady;
  requests_.insert(key, std::move(request));
  svc.keys.push_back(std::move(key));
  dispatch(svc, now);
}

// --- Dispatch ---

bool Dispatcher::send_to_worker(Worker& worker, Request& request) {
  // The header exactly as the gateway sent it: the broker acts on the retry-safe flag (requeue
  // after a worker loss) but never decides it, and the worker checks it against the envelope.
  protocol::RequestHeader header{request.service, request.id, request.deadline_ms, request.flags,
                                 request.stamps};
  if (header.stamps) (*header.stamps)[protocol::Stamp::kBrokerOut] = protocol::unix_us_now();
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
  requests_.dispatched(request, worker);
  ++counters_.dispatched;
  return true;
}

void Dispatcher::dispatch(ServiceQueue& svc, const Now& now) {
  const bool avoid_open = workers_.ejected_workers(svc.name) > 0;
  while (!svc.keys.empty()) {
    Worker* best = workers_.least_loaded(svc.name, avoid_open);
    if (!best) return;
    const std::string key = std::move(svc.keys.front());
    svc.keys.pop_front();
    Request* request = requests_.find(key);
    if (!request || request->worker) continue;  // stale key
    if (request->deadline <= now.steady) {
      ++counters_.expired;
      ++svc.counters.expired;
      reply_error(request->gateway, request->id, static_cast<int>(ErrorKind::kTimeout), svc.name,
                  "deadline passed while queued");
      requests_.erase(key);
      continue;
    }
    if (!send_to_worker(*best, *request)) {
      // Never delivered, so always safe to hand to another worker.
      svc.keys.push_front(key);
      remove_worker(best->id, "unreachable", now);
      continue;
    }
    ++svc.counters.dispatched;
  }
}

// --- Workers ---

void Dispatcher::on_worker_message(Frames& frames, const Now& now) {
  const auto parsed = read_command(frames, true, now);
  if (!parsed) return;
  const Command command = *parsed;
  const Identity id(protocol::view(frames[0]));
  if (command == Command::kReady) {
    protocol::ReadyHeader ready;
    if (const auto ec = protocol::parse_ready(frames, 1, ready)) {
      malformed(ec == protocol::FrameError::kBadField ? Malformed::kField : Malformed::kShape,
                "READY with bad fields", now, workers_.find(id));
      return;
    }
    handle_ready(id, ready, now);
    return;
  }
  Worker* worker = workers_.find(id);
  if (!worker) {
    if (command == Command::kReply) {
      protocol::CorrelationId ignored{};
      if (protocol::parse_reply(frames, 1, ignored)) {
        malformed(Malformed::kShape, "REPLY with bad fields", now);
        return;
      }
      ++counters_.late_replies;  // final: the worker is done with it, a CANCEL would be moot
    } else if (command == Command::kStream) {
      protocol::StreamHeader header;
      if (const auto ec = protocol::parse_stream(frames, 1, header)) {
        malformed(ec == protocol::FrameError::kBadField ? Malformed::kField : Malformed::kShape,
                  "STREAM with bad fields", now);
        return;
      }
      ++counters_.late_replies;
      // Nobody reads this stream any more (the broker restarted, or gave the worker up): without
      // a CANCEL the worker would go on streaming it for up to stream_max_duration.
      if (!is_final(header.part)) send_cancel(id, header.id);
    } else if (command != Command::kHeartbeat && command != Command::kDrain &&
               command != Command::kDisconnect) {
      malformed(Malformed::kMisrouted, "REQUEST, STATS, CREDIT or CANCEL on the worker socket",
                now);
      return;
    }
    // Unknown (we restarted, or declared it dead): ask it to register again.
    if (command != Command::kDisconnect) send_control(true, id, Command::kDisconnect);
    return;
  }
  workers_.touch(*worker, now.steady);
  switch (command) {
    case Command::kReply:
      handle_reply(*worker, frames, now);
      return;
    case Command::kStream:
      handle_stream(*worker, frames, now);
      return;
    case Command::kHeartbeat:
      handle_worker_heartbeat(*worker, frames, now);
      return;
    case Command::kDrain:
      if (!worker->draining) spdlog::info("worker {} ({}) draining", worker->name, worker->service);
      worker->draining = true;
      return;
    case Command::kDisconnect:
      remove_worker(id, "disconnected", now);
      return;
    default:
      malformed(Malformed::kMisrouted, "REQUEST, STATS, CREDIT or CANCEL on the worker socket", now,
                worker);
  }
}

void Dispatcher::handle_worker_heartbeat(Worker& worker, const Frames& frames, const Now& now) {
  // A worker's heartbeat may carry its own status (circuit state, attempts): kept for stats.
  if (frames.size() != 4) return;
  if (frames[3].size() > kMaxWorkerStatusBytes) {
    malformed(Malformed::kStatus, "worker status too long", now, &worker);
    return;  // the last readable status stays
  }
  // Typed and bounded (common/status.hpp): a field of the wrong type takes its default.
  const bool changed = workers_.set_status(worker, protocol::view(frames[3]));
  if (!worker.status) {
    malformed(Malformed::kStatus, "worker status is not a JSON object", now, &worker);
    return;  // `worker` may be gone
  }
  if (!changed) return;
  spdlog::info("worker {} ({}) circuit {}", worker.name, worker.service,
               worker.circuit_open ? "open: taken out of the rotation while others can serve"
                                   : "no longer open: back in the rotation");
  // Requests may have waited for a healthy worker that this one now is.
  dispatch(queues_.get(worker.service, now.steady), now);
}

void Dispatcher::handle_ready(const Identity& id, const protocol::ReadyHeader& ready,
                              const Now& now) {
  const std::string service_name(ready.service);
  Worker* known = workers_.find(id);
  if (known && known->service == service_name) {
    known->capacity = ready.capacity;  // a new credit
    known->draining = false;
    workers_.touch(*known, now.steady);
    dispatch(queues_.get(service_name, now.steady), now);
    return;
  }
  if (known) remove_worker(id, "re-registered for another service", now);
  if (!admits_worker(service_name, now)) {
    // Ignored, not answered: a DISCONNECT would make a worker register again at once, in a loop.
    // Its next heartbeat (unknown worker) brings a DISCONNECT, so a misconfigured worker retries
    // once per heartbeat interval and says so in its log.
    return;
  }
  ServiceQueue& svc = queues_.get(service_name, now.steady);
  const Worker& worker =
      workers_.add(id, service_name, std::string(ready.worker_id), ready.capacity, now.steady);
  spdlog::info("worker {} registered for {} (capacity {})", worker.name, service_name,
               worker.capacity);
  send_control(true, id, Command::kHeartbeat);  // tells the worker at once that we know it
  dispatch(svc, now);
}

void Dispatcher::handle_reply(Worker& worker, Frames& frames, const Now& now) {
  protocol::CorrelationId id{};
  if (protocol::parse_reply(frames, 1, id)) {
    malformed(Malformed::kShape, "REPLY with bad fields", now, &worker);
    return;
  }
  if (protocol::reply_has_stamps(frames, 1)) {
    protocol::write_stamp(frames[1 + protocol::kReplyStampsIndex], protocol::Stamp::kBrokerReplyIn,
                          protocol::unix_us_now());
  }
  complete(worker, key_of(id), frames, false, now);
}

void Dispatcher::handle_stream(Worker& worker, Frames& frames, const Now& now) {
  protocol::StreamHeader header;
  if (const auto ec = protocol::parse_stream(frames, 1, header)) {
    malformed(ec == protocol::FrameError::kBadField ? Malformed::kField : Malformed::kShape,
              "STREAM with bad fields", now, &worker);
    return;
  }
  const auto key = key_of(header.id);
  Request* request = requests_.held_by(key, worker);
  if (!request) {
    // Forged, or late from a worker given up on: the stream belongs to nobody it could reach.
    // The worker is told to stop, or it would stream for nobody up to stream_max_duration (a
    // final part needs no answer: the worker is done with it).
    ++counters_.late_replies;
    if (!is_final(header.part)) send_cancel(worker.id, header.id);
    return;
  }
  ServiceQueue& svc = queues_.get(worker.service, now.steady);
  if (!request->streaming) {
    request->streaming = true;
    ++counters_.streams;
    ++svc.counters.streams;
  }
  // The worker's cap for the whole stream replaces the deadline of the head, so that a long
  // stream is not forgotten as an orphan while it runs.
  request->deadline = steady_deadline(header.until_ms, now);
  if (is_final(header.part)) {
    complete(worker, key, frames, header.part == protocol::StreamPart::kAbort, now);
    return;
  }
  if (request->cancelled) return;
  if (!gateway_known(request->gateway)) {
    ++counters_.gateway_gone_drops;
    cancel_at_worker(*request);
    return;
  }
  frames[0] = identity_frame(request->gateway);
  if (outbox_.to_gateway(frames)) return;
  // A part that did not go leaves a hole in the body: the client must not get the rest as if
  // complete. The stream ends here, and the worker stops.
  ++counters_.unroutable;
  cancel_at_worker(*request);
  if (send_abort(request->gateway, request->id, "broker could not forward part of the stream")) {
    ++counters_.stream_aborts;
    ++svc.counters.stream_aborts;
  }
}

void Dispatcher::complete(Worker& worker, const std::string& key, Frames& frames, bool abort,
                          const Now& now) {
  const auto done = requests_.complete(key, worker);
  if (!done) {
    // A duplicate, or a worker we gave up on answering after its request went elsewhere.
    ++counters_.late_replies;
    return;
  }
  ServiceQueue& svc = queues_.get(worker.service, now.steady);
  if (done->cancelled) {
    // Nobody waits for it: the gateway forgot the id when it cancelled.
  } else if (gateway_known(done->gateway)) {
    frames[0] = identity_frame(done->gateway);
    if (protocol::reply_has_stamps(frames, 1)) {
      protocol::write_stamp(frames[1 + protocol::kReplyStampsIndex],
                            protocol::Stamp::kBrokerReplyOut, protocol::unix_us_now());
    }
    if (outbox_.to_gateway(frames)) {
      ++counters_.replies;
      ++svc.counters.replies;
      if (abort) {
        ++counters_.stream_aborts;
        ++svc.counters.stream_aborts;
      }
    } else {
      ++counters_.unroutable;
    }
  } else {
    ++counters_.gateway_gone_drops;
  }
  dispatch(svc, now);
}

void Dispatcher::remove_worker(const Identity& id, const char* why, const Now& now) {
  const auto worker = workers_.remove(id);
  if (!worker) return;
  ServiceQueue& svc = queues_.get(worker->service, now.steady);
  ++counters_.workers_lost;
  if (!workers_.has_live_worker(svc.name)) svc.no_workers_since = now.steady;
  // What the worker held: requeue where a second attempt is safe, else tell the client.
  const auto loss = requests_.release(*worker, now.steady);
  for (const Request& request : loss.lost) {
    ++counters_.worker_lost_replies;
    ++svc.counters.worker_lost_replies;
    reply_error(request.gateway, request.id, static_cast<int>(ErrorKind::kWorkerLost),
                request.service, std::string("worker ") + worker->name + " " + why);
  }
  // The client may be reading the body already: a reply now would come after its head, so the
  // stream is ended as truncated instead.
  for (const Request& request : loss.aborted) {
    if (send_abort(request.gateway, request.id, "worker " + worker->name + " lost: " + why)) {
      ++counters_.stream_aborts;
      ++svc.counters.stream_aborts;
    }
  }
  ServiceQueues::requeue_front(svc, loss.requeue);
  counters_.requeued += loss.requeue.size();
  svc.counters.requeued += loss.requeue.size();
  spdlog::warn(
      "worker {} ({}) removed: {}; {} requests requeued, {} answered WORKER_LOST, {} streams "
      "aborted, {} cancelled ones forgotten",
      worker->name, worker->service, why, loss.requeue.size(), loss.lost.size(),
      loss.aborted.size(), loss.cancelled);
  // At once, not at the next tick: another worker may have room now.
  if (!loss.requeue.empty()) dispatch(svc, now);
  // The broker exits once nothing is in flight: what no worker could take now would be stranded
  // in the queue, unanswered.
  if (shutting_down_) fail_queued(svc, "broker shutting down");
}

// --- Ticks, stalls and shutdown ---

void Dispatcher::on_tick(const Now& now) {
  send_heartbeats(now);
  expire_workers(now);
  expire_gateways(now);
  expire_queued(now);
  forget_orphans(now);
  drop_stale_and_dispatch(now);
}

void Dispatcher::send_heartbeats(const Now& now) {
  if (now.steady < next_heartbeat_) return;
  for (const auto& id : workers_.ids()) send_control(true, id, Command::kHeartbeat);
  for (const auto& [id, expiry] : gateways_) send_control(false, id, Command::kHeartbeat);
  next_heartbeat_ = now.steady + options_.heartbeat_interval;
}

void Dispatcher::expire_workers(const Now& now) {
  for (const auto& id : workers_.expired(now.steady)) remove_worker(id, "missed heartbeats", now);
}

void Dispatcher::expire_gateways(const Now& now) {
  std::vector<Identity> gone;
  for (const auto& [id, expiry] : gateways_) {
    if (expiry <= now.steady) gone.push_back(id);
  }
  for (const auto& id : gone) {
    forget_gateway(id);
    spdlog::warn(
        "gateway lost (missed heartbeats); its queued requests are dropped and those at workers "
        "cancelled");
  }
}

void Dispatcher::expire_queued(const Now& now) {
  requests_.erase_if([&](const std::string&, Request& request) {
    if (request.worker) return false;
    if (!gateway_known(request.gateway)) {
      ++counters_.gateway_gone_drops;
      return true;
    }
    ServiceQueue& svc = queues_.get(request.service, now.steady);
    switch (queues_.fate(svc, request, workers_.has_live_worker(svc.name), now.steady)) {
      case ServiceQueues::Fate::kExpired:
        ++counters_.expired;
        ++svc.counters.expired;
        reply_error(request.gateway, request.id, static_cast<int>(ErrorKind::kTimeout),
                    request.service, "deadline passed while queued");
        return true;
      case ServiceQueues::Fate::kNoWorkers:
        ++counters_.rejected_no_workers;
        ++svc.counters.rejected_no_workers;
        reply_error(request.gateway, request.id, static_cast<int>(ErrorKind::kUnavailable),
                    request.service, "no workers");
        return true;
      case ServiceQueues::Fate::kWaits:
        break;
    }
    return false;
  });
}

void Dispatcher::forget_orphans(const Now& now) {
  // A worker that never answered must not keep the slot it was given. It may still be working
  // (or streaming, up to stream_max_duration) for a request nobody waits for: it is told to stop.
  const auto forgotten = requests_.forget_orphans(now.steady, options_.orphan_grace);
  for (const Request& request : forgotten) send_cancel(request.worker->id, request.id);
  counters_.orphans += forgotten.size();
}

void Dispatcher::drop_stale_and_dispatch(const Now& now) {
  for (auto& [name, svc] : queues_) {
    ServiceQueues::drop_stale(*svc, requests_);
    dispatch(*svc, now);
  }
}

std::size_t Dispatcher::fail_queued(ServiceQueue& svc, const std::string& detail) {
  const auto failed = ServiceQueues::take_all(svc, requests_);
  for (const Request& request : failed) {
    reply_error(request.gateway, request.id, static_cast<int>(ErrorKind::kBrokerUnavailable),
                request.service, detail);
  }
  return failed.size();
}

void Dispatcher::on_stall(std::chrono::milliseconds stalled) {
  const auto detail =
      "broker stalled for " + std::to_string(stalled.count()) + " ms; the request was not run";
  std::size_t failed = 0;
  for (auto& [name, svc] : queues_) {
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

void Dispatcher::begin_shutdown(const Now& now) {
  shutting_down_ = true;
  for (auto& [name, svc] : queues_) fail_queued(*svc, "broker shutting down");
}

void Dispatcher::fail_in_flight(const std::string& detail) {
  for (auto& [name, svc] : queues_) fail_queued(*svc, detail);
  for (const Request& request : requests_.take_all()) {
    // The broker is about to exit: a worker must not go on working (or streaming) for it.
    if (request.worker) send_cancel(request.worker->id, request.id);
    if (request.cancelled) continue;  // nobody waits for it
    if (request.streaming) {
      if (send_abort(request.gateway, request.id, "broker shutting down: " + detail)) {
        ++counters_.stream_aborts;
      }
      continue;
    }
    reply_error(request.gateway, request.id, static_cast<int>(ErrorKind::kBrokerUnavailable),
                request.service, detail);
  }
}

BrokerStats Dispatcher::stats(const Now& now) const {
  return stats_snapshot(options_.broker_id, gateways_.size(), queues_, workers_, requests_,
                        counters_);
}

}  // namespace courier::broker
