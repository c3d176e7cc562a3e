// The gateway's Prometheus metrics: request counts and latency recorded as requests finish, plus
// its own gauges and its view of each broker link at scrape time (text format 0.0.4). The broker's
// and the workers' series come from their own admin ports (docs/operations.md, "Metrics").
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/config.hpp"
#include "common/metrics_text.hpp"
#include "common/stamps.hpp"
#include "gateway/broker_client.hpp"
#include "gateway/request_mapper.hpp"

namespace courier::gateway {

inline constexpr std::string_view kMetricsContentType = metrics::kContentType;

// The latency buckets for these settings: up to the longest service timeout plus `slack` (the
// gateway waits that much longer than the request's deadline).
std::vector<double> gateway_latency_buckets(const Settings& settings,
                                            std::chrono::milliseconds slack);
// The per-hop buckets: from 10 µs, finely up to 500 µs (a hop on loopback takes tens to hundreds
// of µs), then the latency buckets up to their top (an upstream hop is as long as the upstream).
std::vector<double> hop_buckets(const std::vector<double>& latency_buckets);

// The Courier error code of a response Courier produced ({"status":"error","code":...} with a
// code from the catalogue, common/errors.hpp, for one of `settings`' services), or "" for any other
// response, an upstream's included: a bounded set of label values whatever the upstreams send.
std::string courier_error_code(const HttpResponse& response, const Settings& settings);

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
  explicit GatewayMetrics(
      std::vector<double> latency_buckets = metrics::latency_buckets(std::chrono::seconds(60)));

  // Thread-safe. `service` must be a configured service name or "none" (no service matched:
  // 400/401/404/413/431 before routing); `code` a courier_error_code() ("" for none). A 504 whose
  // code is a *_TIMEOUT (the gateway's deadline, the broker's queue or the worker's upstream)
  // counts in courier_gateway_timeouts_total too.
  void observe(std::string_view service, unsigned status, std::string_view code,
               std::chrono::duration<double> elapsed);
  void observe(std::string_view service, unsigned status, std::chrono::duration<double> elapsed) {
    observe(service, status, "", elapsed);
  }
  // A reply refused with 502 <SVC>_BAD_RESPONSE because it was not valid HTTP (or did not decode).
  // Thread-safe; `service` as for observe().
  void bad_response(std::string_view service);

  // A request whose client left before its response was complete (also observed as status 499).
  void cancelled(std::string_view service);
  // A streamed response ended: `outcome` is "complete", "truncated" or "cancelled".
  void stream_finished(std::string_view service, std::string_view outcome);
  // A reply's STAMPS, all slots written: each hop (gateway/hops.hpp) into
  // courier_gateway_hop_seconds; a hop that cannot be believed (missing, out of order, too long)
  // counts in courier_gateway_hop_stamps_unusable_total instead. Thread-safe.
  void observe_hops(std::string_view service, const protocol::Stamps& stamps);

  // The exposition text: courier_build_info and process_*, the recorded metrics, the snapshot,
  // and courier_gateway_broker_up per broker link.
  std::string render(const GatewaySnapshot& snapshot,
                     const std::vector<BrokerStatus>& brokers) const;

 private:
  std::vector<double> latency_buckets_;
  std::vector<double> hop_buckets_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& duration_;
  prometheus::Family<prometheus::Counter>& bad_responses_;
  prometheus::Family<prometheus::Counter>& cancelled_;
  prometheus::Family<prometheus::Counter>& streams_;
  prometheus::Family<prometheus::Counter>& timeouts_;
  prometheus::Family<prometheus::Histogram>& hops_;
  prometheus::Family<prometheus::Counter>& hops_unusable_;
  // Each service's series, found without building a label set (or any string) per request; each
  // created on its first use, as Family::Add would. Guarded by series_mutex_.
  struct RequestCounter {
    unsigned status = 0;
    std::string code;
    prometheus::Counter* counter = nullptr;
  };
  struct ServiceSeries {
    prometheus::Histogram* duration = nullptr;
    prometheus::Counter* timeouts = nullptr;
    std::vector<RequestCounter> requests;  // by status and code: a handful per service
    std::array<prometheus::Histogram*, 12> hops{};
    prometheus::Counter* unusable = nullptr;
  };
  struct NameHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  ServiceSeries& series_for(std::string_view service);  // series_mutex_ held
  std::mutex series_mutex_;
  std::unordered_map<std::string, ServiceSeries, NameHash, std::equal_to<>> series_;
};

}  // namespace courier::gateway
