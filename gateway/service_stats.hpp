// Per-service request counts, recent latency percentiles and a 15-minute history as the gateway
// sees them, for /services, /services/history and the dashboard. Thread-safe; recording is one
// short critical section.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "gateway/service_history.hpp"

namespace courier::gateway {

class LatencyWindow {
 public:
  static constexpr std::size_t kSize = 2048;  // the most recent requests
  void record(double ms);
  // Nearest-rank percentile (0 < p <= 100) over the window; 0 when empty.
  double percentile(double p) const;
  std::size_t count() const { return std::min(recorded_, kSize); }

 private:
  std::array<double, kSize> samples_{};
  std::size_t recorded_ = 0;
};

class ServiceStats {
 public:
  explicit ServiceStats(const std::vector<std::string>& services);
  void record(const std::string& service, unsigned status, double ms);
  void record(const std::string& service, unsigned status, double ms,
              ServiceHistory::Clock::time_point now);
  // {"requests", "errors" (status >= 500), "latency_ms": {"p50", "p99"}} for one service.
  nlohmann::json snapshot(const std::string& service) const;
  // Every service's ServiceHistory, one document: ServiceHistory::window(now) plus
  // "scope": "gateway" (what this gateway saw, not the whole system) and
  // "services": {name: ServiceHistory::snapshot(now)}.
  nlohmann::json history(ServiceHistory::Clock::time_point now) const;

 private:
  struct Entry {
    mutable std::mutex mutex;
    std::uint64_t requests = 0;
    std::uint64_t errors = 0;
    LatencyWindow latency;
    ServiceHistory history;
  };
  std::map<std::string, std::unique_ptr<Entry>> entries_;  // fixed after construction
};

}  // namespace courier::gateway
