#include "gateway/metrics.hpp"

#include <prometheus/gauge.h>
#include <prometheus/text_serializer.h>

#include <set>
#include <utility>

#include "common/status.hpp"

namespace courier::gateway {

namespace {

const prometheus::Histogram::BucketBoundaries& latency_buckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  return kBuckets;
}

// Counters the broker reports are monotonic totals: exposed as counters set to the total.
void add_counters(prometheus::Family<prometheus::Counter>& family, const StatsCounts& counters,
                  const prometheus::Labels& base) {
  for (const auto& [name, value] : counters) {
    auto labels = base;
    labels["event"] = name;
    family.Add(labels).Increment(static_cast<double>(value));
  }
}

// The brokers' snapshots into a registry made for this scrape, so brokers, services and workers
// that disappeared do not linger as stale series. Every series carries its broker's endpoint:
// each broker's counters are monotonic on their own (a sum over brokers would drop whenever one
// disconnects, which Prometheus would read as a counter reset).
void add_broker_stats(prometheus::Registry& registry, const std::vector<BrokerStatus>& brokers) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  const auto gauge = [&](const char* name,
                         const char* help) -> prometheus::Family<prometheus::Gauge>& {
    return BuildGauge().Name(name).Help(help).Register(registry);
  };
  auto& up = gauge("courier_gateway_broker_up", "1 while the broker answers heartbeats");
  auto& gateways = gauge("courier_broker_gateways", "Gateways connected to the broker");
  auto& broker_events = BuildCounter()
                            .Name("courier_broker_events_total")
                            .Help("Broker-wide event counters, by event")
                            .Register(registry);
  struct PerService {
    std::uint64_t BrokerStats::Service::*field;
    prometheus::Family<prometheus::Gauge>& family;
  };
  using S = BrokerStats::Service;
  const PerService gauges[] = {
      {&S::workers, gauge("courier_broker_workers", "Live (not draining) workers, by service")},
      {&S::capacity, gauge("courier_broker_capacity", "Requests the live workers accept at once")},
      {&S::in_flight, gauge("courier_broker_in_flight", "Requests dispatched to workers")},
      {&S::queue_depth, gauge("courier_broker_queue_depth", "Requests waiting for a worker")},
      {&S::max_queue, gauge("courier_broker_max_queue", "Queue limit before 503 OVERLOADED")},
      {&S::ejected, gauge("courier_broker_ejected_workers",
                          "Live workers sent nothing because their circuit is open")},
  };
  auto& service_events = BuildCounter()
                             .Name("courier_broker_service_events_total")
                             .Help("Per-service broker event counters, by event")
                             .Register(registry);
  for (const auto& b : brokers) {
    const prometheus::Labels base = {{"broker", b.endpoint}};
    up.Add(base).Set(b.connected ? 1 : 0);
    if (!b.connected || !b.stats) continue;
    const BrokerStats& stats = *b.stats;
    gateways.Add(base).Set(static_cast<double>(stats.gateways));
    add_counters(broker_events, stats.counters, base);
    for (const auto& [service, entry] : stats.services) {
      auto labels = base;
      labels["service"] = service;
      for (const auto& g : gauges) g.family.Add(labels).Set(static_cast<double>(entry.*g.field));
      add_counters(service_events, entry.counters, labels);
    }
  }
}

// The circuit breaker of each worker, from the status its heartbeats carry. A worker registered
// with several brokers is one breaker: its series come once, from the first broker that lists it,
// so that sums over workers count each once.
void add_worker_circuits(prometheus::Registry& registry, const std::vector<BrokerStatus>& brokers) {
  const auto gauge = [&](const char* name, const char* help) -> auto& {
    return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
  };
  const auto counter = [&](const char* name, const char* help) -> auto& {
    return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
  };
  auto& state = gauge("courier_worker_circuit_state",
                      "1 for the state the worker's circuit breaker is in, by service and worker");
  auto& rate = gauge("courier_worker_circuit_failure_rate",
                     "Share of the breaker window's upstream attempts that failed");
  auto& attempts = gauge("courier_worker_circuit_window_attempts",
                         "Upstream attempts in the breaker's window (probes while half-open)");
  auto& opened =
      counter("courier_worker_circuit_opened_total", "Times the worker's circuit opened");
  auto& rejections = counter("courier_worker_circuit_rejections_total",
                             "Requests the worker's open circuit failed fast");
  auto& failures = counter("courier_worker_circuit_failures_total",
                           "Upstream attempts the breaker counted as failures");
  static constexpr const char* kStates[] = {"closed", "open", "half-open", "disabled"};
  std::set<std::pair<std::string, std::string>> seen;  // (service, worker)
  for (const auto& b : brokers) {
    if (!b.connected || !b.stats) continue;
    for (const auto& [service, entry] : b.stats->services) {
      for (const auto& w : entry.worker_list) {
        // Only a worker that names itself and reports its breaker has a breaker to show.
        if (w.id.empty() || !w.status || w.status->circuit.empty()) continue;
        if (!seen.emplace(service, w.id).second) continue;
        const WorkerStatus& status = *w.status;
        const prometheus::Labels labels = {{"service", service}, {"worker", w.id}};
        for (const char* name : kStates) {
          auto with_state = labels;
          with_state["state"] = name;
          state.Add(with_state).Set(status.circuit == name ? 1 : 0);
        }
        rate.Add(labels).Set(status.circuit_failure_rate);
        attempts.Add(labels).Set(static_cast<double>(status.circuit_window_attempts));
        opened.Add(labels).Increment(static_cast<double>(status.circuit_opened));
        rejections.Add(labels).Increment(static_cast<double>(status.circuit_rejections));
        failures.Add(labels).Increment(static_cast<double>(status.circuit_failures));
      }
    }
  }
}

}  // namespace

GatewayMetrics::GatewayMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("courier_gateway_requests_total")
                    .Help("HTTP requests answered by the gateway, by service and status")
                    .Register(*registry_)),
      duration_(prometheus::BuildHistogram()
                    .Name("courier_gateway_request_duration_seconds")
                    .Help("From a fully read request to its response written, by service")
                    .Register(*registry_)),
      bad_responses_(
          prometheus::BuildCounter()
              .Name("courier_gateway_bad_responses_total")
              .Help("Replies refused as invalid HTTP (502 <SVC>_BAD_RESPONSE), by service")
              .Register(*registry_)),
      cancelled_(prometheus::BuildCounter()
                     .Name("courier_gateway_cancelled_total")
                     .Help("Requests cancelled because the client left before the response was "
                           "complete, by service")
                     .Register(*registry_)),
      streams_(prometheus::BuildCounter()
                   .Name("courier_gateway_streams_total")
                   .Help("Streamed responses by service and outcome (complete, truncated, "
                         "cancelled)")
                   .Register(*registry_)) {}

void GatewayMetrics::observe(std::string_view service, unsigned status,
                             std::chrono::duration<double> elapsed) {
  const std::string svc(service);
  requests_.Add({{"service", svc}, {"status", std::to_string(status)}}).Increment();
  duration_.Add({{"service", svc}}, latency_buckets()).Observe(elapsed.count());
}

void GatewayMetrics::bad_response(std::string_view service) {
  bad_responses_.Add({{"service", std::string(service)}}).Increment();
}

void GatewayMetrics::cancelled(std::string_view service) {
  cancelled_.Add({{"service", std::string(service)}}).Increment();
}

void GatewayMetrics::stream_finished(std::string_view service, std::string_view outcome) {
  streams_.Add({{"service", std::string(service)}, {"outcome", std::string(outcome)}}).Increment();
}

std::string GatewayMetrics::render(const GatewaySnapshot& s,
                                   const std::vector<BrokerStatus>& brokers) const {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  prometheus::Registry scrape;
  const auto gauge = [&](const char* name, const char* help, double value) {
    BuildGauge().Name(name).Help(help).Register(scrape).Add({}).Set(value);
  };
  const auto counter = [&](const char* name, const char* help, double value) {
    BuildCounter().Name(name).Help(help).Register(scrape).Add({}).Increment(value);
  };
  gauge("courier_gateway_in_flight", "Requests being handled", static_cast<double>(s.in_flight));
  gauge("courier_gateway_connections", "Open client connections",
        static_cast<double>(s.connections));
  gauge("courier_gateway_streams_open", "Streamed responses being written",
        static_cast<double>(s.streams_open));
  gauge("courier_gateway_broker_connected", "1 while at least one broker answers heartbeats",
        s.broker_connected ? 1 : 0);
  counter("courier_gateway_bad_requests_total",
          "Requests refused while being read (400/413/431, and 401/404 before 100 Continue)",
          static_cast<double>(s.bad_requests));
  counter("courier_gateway_timeouts_total", "Requests answered 504 by the gateway's deadline",
          static_cast<double>(s.timeouts));
  counter("courier_gateway_rejected_connections_total", "Connections closed at the limit",
          static_cast<double>(s.rejected_connections));
  counter("courier_gateway_late_replies_total", "Replies that arrived after their deadline",
          static_cast<double>(s.late_replies));
  counter("courier_gateway_failovers_total",
          "Pending requests sent through another broker after theirs was lost",
          static_cast<double>(s.failovers));
  add_broker_stats(scrape, brokers);
  add_worker_circuits(scrape, brokers);

  auto families = registry_->Collect();
  auto more = scrape.Collect();
  families.insert(families.end(), std::make_move_iterator(more.begin()),
                  std::make_move_iterator(more.end()));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace courier::gateway
