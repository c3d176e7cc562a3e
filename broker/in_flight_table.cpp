#include "broker/in_flight_table.hpp"

namespace courier::broker {

std::string key_of(const protocol::CorrelationId& id) {
  return std::string(reinterpret_cast<const char*>(id.data()), id.size());
}

InFlightTable::InFlightTable(int max_dispatches) : max_dispatches_(max_dispatches) {}

Request* InFlightTable::find(const std::string& key) {
  const auto it = requests_.find(key);
  return it == requests_.end() ? nullptr : &it->second;
}

const Request* InFlightTable::find(const std::string& key) const {
  const auto it = requests_.find(key);
  return it == requests_.end() ? nullptr : &it->second;
}

bool InFlightTable::is_queued(const std::string& key) const {
  const Request* request = find(key);
  return request && !request->worker;
}

void InFlightTable::insert(std::string key, Request request) {
  requests_.emplace(std::move(key), std::move(request));
}

void InFlightTable::erase(const std::string& key) { requests_.erase(key); }

std::size_t InFlightTable::in_flight() const {
  std::size_t n = 0;
  for (const auto& [key, r] : requests_) n += r.worker != nullptr;
  return n;
}

void InFlightTable::dispatched(Request& request, Worker& worker) const {
  request.worker = &worker;
  ++request.dispatches;
  ++worker.in_flight;
}

Request* InFlightTable::held_by(const std::string& key, const Worker& worker) {
  Request* request = find(key);
  return request && request->worker == &worker ? request : nullptr;
}

std::optional<Request> InFlightTable::complete(const std::string& key, Worker& worker) {
  const auto it = requests_.find(key);
  if (it == requests_.end() || it->second.worker != &worker) return std::nullopt;
  std::optional<Request> done(std::move(it->second));
  requests_.erase(it);
  done->worker = nullptr;
  --worker.in_flight;
  ++worker.completed;
  return done;
}

WorkerLoss InFlightTable::release(const Worker& worker, Clock::time_point now) {
  WorkerLoss loss;
  for (auto r = requests_.begin(); r != requests_.end();) {
    Request& request = r->second;
    if (request.worker != &worker) {
      ++r;
      continue;
    }
    request.worker = nullptr;
    const bool safe = request.flags & protocol::kFlagRetrySafe;
    if (request.cancelled) {
      ++loss.cancelled;
      r = requests_.erase(r);
    } else if (request.streaming) {
      // Even a retry-safe one: its client may have read part of the body already.
      loss.aborted.push_back(std::move(request));
      r = requests_.erase(r);
    } else if (safe && request.dispatches < max_dispatches_ && request.deadline > now) {
      loss.requeue.push_back(r->first);
      ++r;
    } else {
      loss.lost.push_back(std::move(request));
      r = requests_.erase(r);
    }
  }
  return loss;
}

std::vector<Request> InFlightTable::forget_orphans(Clock::time_point now,
                                                   std::chrono::milliseconds grace) {
  std::vector<Request> forgotten;
  erase_if([&](const std::string&, Request& request) {
    if (!request.worker || request.deadline + grace > now) return false;
    --request.worker->in_flight;
    forgotten.push_back(std::move(request));
    return true;
  });
  return forgotten;
}

std::vector<Request> InFlightTable::take_all() {
  std::vector<Request> all;
  all.reserve(requests_.size());
  for (auto& [key, request] : requests_) {
    if (request.worker) --request.worker->in_flight;
    all.push_back(std::move(request));
  }
  requests_.clear();
  return all;
}

}  // namespace courier::broker
