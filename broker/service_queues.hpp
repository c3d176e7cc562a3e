// One bounded FIFO of waiting requests per service, and the rules for how long a request may wait:
// its deadline, and a grace period for a worker of its service to (re)appear.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "broker/counters.hpp"
#include "broker/in_flight_table.hpp"
#include "broker/now.hpp"

namespace courier::broker {

struct ServiceQueue {
  std::string name;
  std::deque<std::string> keys;  // request keys, oldest first; stale keys are skipped
  std::size_t max_queue = 0;
  Clock::time_point no_workers_since;  // when its last live worker left (or it was created)
  Counters counters;                   // the per-service subset that applies

  bool full() const { return keys.size() >= max_queue; }
};

struct ServiceQueuesOptions {
  std::size_t default_max_queue = 1024;
  std::map<std::string, std::size_t> max_queue;  // per service
  std::chrono::milliseconds no_worker_grace{1'000};
};

class ServiceQueues {
 public:
  // Service names come from the network: requests may create at most this many.
  static constexpr std::size_t kMaxServices = 1024;

  // What becomes of a queued request at a tick.
  enum class Fate { kWaits, kExpired, kNoWorkers };

  explicit ServiceQueues(ServiceQueuesOptions options);

  // The service's queue, created empty (its grace running from `now`) if it is new.
  ServiceQueue& get(const std::string& name, Clock::time_point now);
  // Whether a request may name this service without growing the table past `max_services`
  // (and never past kMaxServices).
  bool admits(const std::string& name, std::size_t max_services = kMaxServices) const;

  Fate fate(const ServiceQueue& queue, const Request& request, bool has_live_worker,
            Clock::time_point now) const;
  // Puts requests taken back from a lost worker ahead of newer ones (they have waited longest),
  // keeping their order.
  static void requeue_front(ServiceQueue& queue, const std::vector<std::string>& keys);
  // Forgets keys of requests no longer waiting, so that the queue depth stays truthful.
  static void drop_stale(ServiceQueue& queue, const InFlightTable& table);
  // Requests that wait, not counting stale keys.
  static std::size_t depth(const ServiceQueue& queue, const InFlightTable& table);
  // Empties the queue, taking its waiting requests out of `table`, oldest first.
  static std::vector<Request> take_all(ServiceQueue& queue, InFlightTable& table);

  auto begin() { return services_.begin(); }
  auto end() { return services_.end(); }
  auto begin() const { return services_.begin(); }
  auto end() const { return services_.end(); }

 private:
  ServiceQueuesOptions options_;
  std::map<std::string, std::unique_ptr<ServiceQueue>> services_;
};

}  // namespace courier::broker
