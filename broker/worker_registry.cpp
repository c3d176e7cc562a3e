#include "broker/worker_registry.hpp"

#include <algorithm>

namespace courier::broker {

bool circuit_is_open(const std::optional<WorkerStatus>& status) {
  return status && status->fails_fast();
}

WorkerRegistry::WorkerRegistry(Clock::duration expire_after) : expire_after_(expire_after) {}

Worker* WorkerRegistry::find(const Identity& id) {
  const auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : it->second.get();
}

Worker& WorkerRegistry::add(const Identity& id, const std::string& service, const std::string& name,
                            std::uint32_t capacity, Clock::time_point now) {
  auto worker = std::make_unique<Worker>();
  worker->id = id;
  worker->service = service;
  worker->name = name;
  worker->capacity = capacity;
  touch(*worker, now);
  Worker& added = *worker;
  by_service_[service].push_back(worker.get());
  workers_.insert_or_assign(id, std::move(worker));
  return added;
}

std::unique_ptr<Worker> WorkerRegistry::remove(const Identity& id) {
  const auto it = workers_.find(id);
  if (it == workers_.end()) return nullptr;
  auto worker = std::move(it->second);
  workers_.erase(it);
  if (const auto svc = by_service_.find(worker->service); svc != by_service_.end()) {
    std::erase(svc->second, worker.get());
    if (svc->second.empty()) by_service_.erase(svc);
  }
  return worker;
}

void WorkerRegistry::touch(Worker& worker, Clock::time_point now) const {
  worker.expiry = now + expire_after_;
}

bool WorkerRegistry::set_status(Worker& worker, std::string_view status) const {
  worker.status = decode_worker_status(status);
  const bool was_open = worker.circuit_open;
  worker.circuit_open = circuit_is_open(worker.status);
  return was_open != worker.circuit_open;
}

std::vector<Identity> WorkerRegistry::expired(Clock::time_point now) const {
  std::vector<Identity> dead;
  for (const auto& [id, w] : workers_) {
    if (w->expiry <= now) dead.push_back(id);
  }
  return dead;
}

std::vector<Identity> WorkerRegistry::ids() const {
  std::vector<Identity> all;
  all.reserve(workers_.size());
  for (const auto& [id, w] : workers_) all.push_back(id);
  return all;
}

const std::vector<Worker*>& WorkerRegistry::of_service(const std::string& service) const {
  static const std::vector<Worker*> kNone;
  const auto it = by_service_.find(service);
  return it == by_service_.end() ? kNone : it->second;
}

bool WorkerRegistry::has_live_worker(const std::string& service) const {
  const auto& workers = of_service(service);
  return std::any_of(workers.begin(), workers.end(), [](const Worker* w) { return !w->draining; });
}

std::size_t WorkerRegistry::ejected_workers(const std::string& service) const {
  // A worker whose circuit is open answers every request 503 at once, which frees its credit at
  // once: left in the rotation, it would draw more and more of the traffic. It gets none while at
  // least half of the live workers are healthy, the way Envoy ejects a host only among several;
  // below that (the upstream is down for most of them) every worker is used again, and fails
  // fast.
  std::size_t live = 0, open = 0;
  for (const Worker* w : of_service(service)) {
    live += !w->draining;
    open += !w->draining && w->circuit_open;
  }
  return (live - open) * 2 >= live ? open : 0;
}

Worker* WorkerRegistry::least_loaded(const std::string& service, bool skip_open_circuits) const {
  Worker* best = nullptr;
  for (Worker* w : of_service(service)) {
    if (w->draining || w->in_flight >= w->capacity) continue;
    if (skip_open_circuits && w->circuit_open) continue;
    // By share of capacity: a small worker is not flooded beside a big one.
    if (!best || std::uint64_t{w->in_flight} * best->capacity <
                     std::uint64_t{best->in_flight} * w->capacity) {
      best = w;
    }
  }
  return best;
}

}  // namespace courier::broker
