// The gateway's Prometheus metrics: request counts and latency recorded as requests finish, plus
// gauges and the broker's stats snapshot turned into metrics at scrape time (text format 0.0.4).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/broker_client.hpp"

namespace courier::gateway {

inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Gateway state read at scrape time.
struct GatewaySnapshot {
  std::int64_t in_flight = 0;
  std::int64_t connections = 0;
  std::uint64_t bad_requests = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t rejected_connections = 0;
  std::uint64_t late_replies = 0;
  std::uint64_t failovers = 0;
  std::int64_t streams_open = 0;
  bool broker_connected = false;
};

class GatewayMetrics {
 public:
  GatewayMetrics();

  // Thread-safe. `service` must be a configured service name or "none" (bounded label values).
  void observe(std::string_view service, unsigned status, std::chrono::duration<double> elapsed);
  // A reply refused with 502 <SVC>_BAD_RESPONSE because it was not valid HTTP (or did not decode).
  // Thread-safe; `service` as for observe().
  void bad_response(std::string_view service);

  // A request whose client left before its response was complete (also observed as status 499).
  void cancelled(std::string_view service);
  // A streamed response ended: `outcome` is "complete", "truncated" or "cancelled".
  void stream_finished(std::string_view service, std::string_view outcome);

  // The exposition text: the recorded metrics, the snapshot, and each broker's STATS snapshot
  // (series labelled `broker` with its endpoint; a malformed snapshot adds nothing).
  std::string render(const GatewaySnapshot& snapshot,
                     const std::vector<BrokerStatus>& brokers) const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& duration_;
  prometheus::Family<prometheus::Counter>& bad_responses_;
  prometheus::Family<prometheus::Counter>& cancelled_;
  prometheus::Family<prometheus::Counter>& streams_;
};

}  // namespace courier::gateway
