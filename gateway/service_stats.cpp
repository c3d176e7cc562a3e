#include "gateway/service_stats.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace courier::gateway {

void LatencyWindow::record(double ms) { samples_[recorded_++ % kSize] = ms; }

double LatencyWindow::percentile(double p) const {
  const std::size_t n = count();
  if (n == 0) return 0;
  std::vector<double> sorted(samples_.begin(), samples_.begin() + static_cast<std::ptrdiff_t>(n));
  const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(n)));
  const auto index = std::clamp<std::size_t>(rank, 1, n) - 1;
  std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(index),
                   sorted.end());
  return sorted[index];
}

ServiceStats::ServiceStats(const std::vector<std::string>& services) {
  for (const auto& name : services) entries_.emplace(name, std::make_unique<Entry>());
}

void ServiceStats::record(const std::string& service, unsigned status, double ms) {
  record(service, status, ms, ServiceHistory::Clock::now());
}

void ServiceStats::record(const std::string& service, unsigned status, double ms,
                          ServiceHistory::Clock::time_point now) {
  const auto it = entries_.find(service);
  if (it == entries_.end()) return;
  Entry& e = *it->second;
  std::lock_guard lock(e.mutex);
  ++e.requests;
  if (status >= 500) ++e.errors;
  e.latency.record(ms);
  e.history.record(now, status, ms);
}

nlohmann::json ServiceStats::snapshot(const std::string& service) const {
  const auto it = entries_.find(service);
  if (it == entries_.end()) return nlohmann::json::object();
  const Entry& e = *it->second;
  std::lock_guard lock(e.mutex);
  nlohmann::json latency = nlohmann::json::object();
  if (e.latency.count() > 0) {
    latency = {{"p50", e.latency.percentile(50)}, {"p99", e.latency.percentile(99)}};
  }
  return {{"requests", e.requests}, {"errors", e.errors}, {"latency_ms", std::move(latency)}};
}

nlohmann::json ServiceStats::history(ServiceHistory::Clock::time_point now) const {
  auto out = ServiceHistory::window(now);
  out["scope"] = "gateway";
  auto services = nlohmann::json::object();
  for (const auto& [name, entry] : entries_) {
    ServiceHistory copy;  // summed outside the lock that recording takes
    {
      std::lock_guard lock(entry->mutex);
      copy = entry->history;
    }
    services[name] = copy.snapshot(now);
  }
  out["services"] = std::move(services);
  return out;
}

}  // namespace courier::gateway
