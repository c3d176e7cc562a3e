// Every request the broker holds, queued or at a worker, by correlation id: who asked, who holds
// it, and what happens to what a worker held when it is lost (requeue or answer WORKER_LOST).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "broker/now.hpp"
#include "broker/worker_registry.hpp"
#include "common/protocol.hpp"
#include "common/stamps.hpp"

namespace courier::broker {

struct Request {
  protocol::CorrelationId id{};
  Identity gateway;
  std::string principal;  // the gateway's authenticated identity, empty without CURVE
  std::string service;
  std::uint64_t deadline_ms = 0;
  Clock::time_point deadline;
  std::uint8_t flags = 0;
  zmq::message_t envelope;  // kept for requeue, shared with each dispatch
  // The REQUEST's STAMPS, when it came with them: the broker's own slots are written into each
  // dispatch's copy (a requeued request is stamped again).
  std::optional<protocol::Stamps> stamps;
  Worker* worker = nullptr;  // null while queued
  Clock::time_point enqueued;
  int dispatches = 0;
  // A worker sent a STREAM for it: its head may have reached the client, so it is never
  // requeued, and a lost worker or a shutdown ends it with STREAM ABORT instead of an error reply.
  bool streaming = false;
  // Its gateway cancelled it (or is gone) while a worker held it: what the worker still sends is
  // dropped, and its final REPLY, END or ABORT only frees the credit.
  bool cancelled = false;
};

// The table's key: the correlation id's bytes.
std::string key_of(const protocol::CorrelationId& id);

// What a lost worker held, settled.
struct WorkerLoss {
  std::vector<std::string> requeue;  // keys now queued again, to put ahead of newer requests
  std::vector<Request> lost;         // taken out of the table: each is answered WORKER_LOST
  std::vector<Request> aborted;      // streaming, taken out: each gets STREAM ABORT
  std::size_t cancelled = 0;         // cancelled, taken out: nobody waits for them
};

class InFlightTable {
 public:
  // A request is sent to workers at most `max_dispatches` times.
  explicit InFlightTable(int max_dispatches);

  Request* find(const std::string& key);
  const Request* find(const std::string& key) const;
  // Whether `key` names a request that waits for a worker: a queue entry for anything else is
  // stale (the request was answered, or is already at a worker).
  bool is_queued(const std::string& key) const;
  void insert(std::string key, Request request);
  void erase(const std::string& key);
  std::size_t size() const { return requests_.size(); }
  std::size_t in_flight() const;

  // The request was delivered to `worker`, which now holds one more.
  void dispatched(Request& request, Worker& worker) const;
  // The request `key` if `worker` holds it; null for an id it does not hold (a duplicate, a
  // forgery, or a reply from a worker given up on).
  Request* held_by(const std::string& key, const Worker& worker);
  // A final reply from `worker` for `key`: the request, taken out of the table, if that worker
  // held it (its credit is freed); nothing otherwise.
  std::optional<Request> complete(const std::string& key, Worker& worker);
  // `worker` is gone: a retry-safe request with dispatches and time left that has not started
  // streaming is queued again; the rest leave the table (cancelled ones silently).
  WorkerLoss release(const Worker& worker, Clock::time_point now);
  // Forgets requests still at a worker `grace` past their deadline, freeing the worker's credit
  // rather than leaking it; returns them, `worker` still set so that the caller can tell it to
  // stop (valid until that worker is removed).
  std::vector<Request> forget_orphans(Clock::time_point now, std::chrono::milliseconds grace);
  // Empties the table, giving the workers back their credit; `worker` stays set, as above.
  std::vector<Request> take_all();

  // Calls `visit(Request&)` for every request; it must not add or remove any.
  template <class Visitor>
  void for_each(Visitor visit) {
    for (auto& [key, request] : requests_) visit(request);
  }

  // Removes every request for which `drop(const std::string& key, Request&)` is true.
  template <class Predicate>
  void erase_if(Predicate drop) {
    for (auto r = requests_.begin(); r != requests_.end();) {
      r = drop(static_cast<const std::string&>(r->first), r->second) ? requests_.erase(r)
                                                                     : std::next(r);
    }
  }

 private:
  int max_dispatches_;
  std::unordered_map<std::string, Request> requests_;
};

}  // namespace courier::broker
