#include "broker/service_queues.hpp"

#include <algorithm>

namespace courier::broker {

ServiceQueues::ServiceQueues(ServiceQueuesOptions options) : options_(std::move(options)) {}

ServiceQueue& ServiceQueues::get(const std::string& name, Clock::time_point now) {
  auto& slot = services_[name];
  if (!slot) {
    slot = std::make_unique<ServiceQueue>();
    slot->name = name;
    const auto it = options_.max_queue.find(name);
    slot->max_queue = it == options_.max_queue.end() ? options_.default_max_queue : it->second;
    slot->no_workers_since = now;
  }
  return *slot;
}

bool ServiceQueues::admits(const std::string& name, std::size_t max_services) const {
  return services_.size() < std::min(max_services, kMaxServices) || services_.count(name) > 0;
}

ServiceQueues::Fate ServiceQueues::fate(const ServiceQueue& queue, const Request& request,
                                        bool has_live_worker, Clock::time_point now) const {
  if (request.deadline <= now) return Fate::kExpired;
  // The grace rides through a worker restart: it counts from when the request could last have
  // been served, not from when it arrived.
  const auto waiting_since = std::max(request.enqueued, queue.no_workers_since);
  if (!has_live_worker && now - waiting_since >= options_.no_worker_grace) return Fate::kNoWorkers;
  return Fate::kWaits;
}

void ServiceQueues::requeue_front(ServiceQueue& queue, const std::vector<std::string>& keys) {
  queue.keys.insert(queue.keys.begin(), keys.begin(), keys.end());
}

void ServiceQueues::drop_stale(ServiceQueue& queue, const InFlightTable& table) {
  std::erase_if(queue.keys, [&](const std::string& key) { return !table.is_queued(key); });
}

std::size_t ServiceQueues::depth(const ServiceQueue& queue, const InFlightTable& table) {
  return static_cast<std::size_t>(
      std::count_if(queue.keys.begin(), queue.keys.end(),
                    [&](const std::string& key) { return table.is_queued(key); }));
}

std::vector<Request> ServiceQueues::take_all(ServiceQueue& queue, InFlightTable& table) {
  std::vector<Request> taken;
  for (const auto& key : queue.keys) {
    Request* request = table.find(key);
    if (!request || request->worker) continue;
    taken.push_back(std::move(*request));
    table.erase(key);
  }
  queue.keys.clear();
  return taken;
}

}  // namespace courier::broker
