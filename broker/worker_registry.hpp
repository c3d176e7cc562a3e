// The workers the broker knows: by routing id and per service, with their credit, liveness and
// self-reported status, and the choice of which one gets the next request of a service.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/now.hpp"
#include "common/status.hpp"

namespace courier::broker {

struct Worker {
  Identity id;
  std::string service;
  std::string name;  // the worker's self-reported id, for operators
  std::uint32_t capacity = 0;
  std::uint32_t in_flight = 0;
  bool draining = false;
  Clock::time_point expiry;
  std::uint64_t completed = 0;
  // Its last self-report, decoded once as it arrived (STATS and dispatch read it, never the text);
  // none if the last heartbeat carried nothing readable.
  std::optional<WorkerStatus> status;
  bool circuit_open = false;  // its status says its breaker fails every request fast
  std::uint32_t strikes = 0;  // malformed messages received from it
};

class WorkerRegistry {
 public:
  // A worker silent for `expire_after` (heartbeat interval x liveness) is dead.
  explicit WorkerRegistry(Clock::duration expire_after);

  Worker* find(const Identity& id);
  // Registers a worker under an id not in use (remove() a previous one first), alive from `now`.
  Worker& add(const Identity& id, const std::string& service, const std::string& name,
              std::uint32_t capacity, Clock::time_point now);
  // Takes the worker out of every index. Returned so that the caller can settle what it held;
  // null if the id is unknown.
  std::unique_ptr<Worker> remove(const Identity& id);
  // Anything heard from the worker proves it alive.
  void touch(Worker& worker, Clock::time_point now) const;
  // Decodes and keeps a status reported in a heartbeat (untrusted text); true if it opened or
  // closed the worker's circuit.
  bool set_status(Worker& worker, std::string_view status) const;

  // Ids of the workers silent past their expiry.
  std::vector<Identity> expired(Clock::time_point now) const;
  std::vector<Identity> ids() const;
  // The service's workers, in registration order (draining ones included).
  const std::vector<Worker*>& of_service(const std::string& service) const;
  // Whether any worker of the service may still take work, i.e. is not draining.
  bool has_live_worker(const std::string& service) const;
  // How many of the service's live workers get no requests because their circuit is open.
  std::size_t ejected_workers(const std::string& service) const;
  // The worker with free credit and the lowest share of its capacity in use; null if none.
  Worker* least_loaded(const std::string& service, bool skip_open_circuits) const;

 private:
  Clock::duration expire_after_;
  std::unordered_map<Identity, std::unique_ptr<Worker>> workers_;
  std::unordered_map<std::string, std::vector<Worker*>> by_service_;
};

// Whether a worker's status says its breaker fails every request fast; no status means no.
bool circuit_is_open(const std::optional<WorkerStatus>& status);

}  // namespace courier::broker
