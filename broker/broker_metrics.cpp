#include "broker/broker_metrics.hpp"

#include <utility>
#include <vector>

namespace courier::broker {

namespace {

using prometheus::MetricType;
using S = BrokerStats::Service;

struct GaugeSeries {
  const char* name;
  const char* help;
  std::uint64_t S::*field;
};

constexpr GaugeSeries kGauges[] = {
    {"courier_broker_workers", "Live (not draining) workers, by service", &S::workers},
    {"courier_broker_capacity", "Requests the live workers accept at once, by service",
     &S::capacity},
    {"courier_broker_in_flight", "Requests dispatched to workers and not answered yet",
     &S::in_flight},
    {"courier_broker_queue_depth", "Requests waiting for a worker", &S::queue_depth},
    {"courier_broker_max_queue", "Queue limit before 503 <SVC>_OVERLOADED", &S::max_queue},
    {"courier_broker_ejected_workers",
     "Live workers sent nothing because their circuit is open while others can serve", &S::ejected},
};

// Per-service counters: series name, help, and the STATS counter(s) with the label they get.
struct CounterSeries {
  const char* name;
  const char* help;
  const char* label;                                      // nullptr: no label besides service
  std::vector<std::pair<const char*, const char*>> keys;  // STATS key, label value
};

const CounterSeries kCounters[] = {
    {"courier_broker_dispatched_total",
     "Requests sent to workers (requeues included)",
     nullptr,
     {{"dispatched", ""}}},
    {"courier_broker_replies_total", "Replies forwarded to gateways", nullptr, {{"replies", ""}}},
    {"courier_broker_requeued_total",
     "Requests put back in the queue after their worker was lost",
     nullptr,
     {{"requeued", ""}}},
    {"courier_broker_expired_total",
     "Requests answered 504 while still queued",
     nullptr,
     {{"expired", ""}}},
    {"courier_broker_rejected_total",
     "Requests refused with 503: queue full (overloaded), no worker (no_workers), queued while "
     "the broker stalled (stalled)",
     "reason",
     {{"rejected_overloaded", "overloaded"},
      {"rejected_no_workers", "no_workers"},
      {"stall_drops", "stalled"}}},
    {"courier_broker_worker_lost_total",
     "Requests answered 502 WORKER_LOST",
     nullptr,
     {{"worker_lost", ""}}},
    {"courier_broker_streams_total",
     "Requests a worker answered with a stream",
     nullptr,
     {{"streams", ""}}},
    {"courier_broker_stream_aborts_total",
     "Streams that reached their gateway as ABORT",
     nullptr,
     {{"stream_aborts", ""}}},
    {"courier_broker_cancels_total",
     "CANCELs from gateways: of a queued request (queued) or one at a worker (in_flight)",
     "where",
     {{"cancelled_queued", "queued"}, {"cancelled_in_flight", "in_flight"}}},
};

std::uint64_t count_of(const StatsCounts& counts, const char* key) {
  const auto it = counts.find(key);
  return it == counts.end() ? 0 : it->second;
}

}  // namespace

void add_broker_metrics(metrics::Families& out, const BrokerStats& stats) {
  metrics::add(metrics::family(out, "courier_broker_gateways", "Gateways known to the broker",
                               MetricType::Gauge),
               {}, static_cast<double>(stats.gateways));
  for (const auto& g : kGauges) {
    auto& f = metrics::family(out, g.name, g.help, MetricType::Gauge);
    for (const auto& [service, entry] : stats.services) {
      metrics::add(f, {{"service", service}}, static_cast<double>(entry.*g.field));
    }
  }
  for (const auto& c : kCounters) {
    auto& f = metrics::family(out, c.name, c.help, MetricType::Counter);
    for (const auto& [service, entry] : stats.services) {
      for (const auto& [key, value] : c.keys) {
        metrics::Labels labels = {{"service", service}};
        if (c.label) labels.push_back({c.label, value});
        metrics::add(f, std::move(labels), static_cast<double>(count_of(entry.counters, key)));
      }
    }
  }
  // Every broker-wide counter, open-ended (hostile peers, CURVE, ...): one family by event.
  auto& events = metrics::family(out, "courier_broker_events_total",
                                 "Broker-wide event counters (docs/operations.md), by event",
                                 MetricType::Counter);
  for (const auto& [name, value] : stats.counters) {
    metrics::add(events, {{"event", name}}, static_cast<double>(value));
  }
}

}  // namespace courier::broker
