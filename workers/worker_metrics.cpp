#include "workers/worker_metrics.hpp"

#include <algorithm>

namespace courier::workers {

void add_worker_metrics(metrics::Families& out, const WorkerMetricsSnapshot& s) {
  using prometheus::MetricType;
  const metrics::Labels service = {{"service", s.service}};
  const auto series = [&](const char* name, const char* help, MetricType type, double value) {
    metrics::add(metrics::family(out, name, help, type), service, value);
  };
  const auto counter = [&](const char* name, const char* help, std::uint64_t value) {
    series(name, help, MetricType::Counter, static_cast<double>(value));
  };
  const auto gauge = [&](const char* name, const char* help, double value) {
    series(name, help, MetricType::Gauge, value);
  };
  const auto& f = s.forwarder;
  counter("courier_worker_requests_total", "Requests the worker ran through its forwarder",
          f.requests);
  counter("courier_worker_attempts_total",
          "Upstream attempts (retries included; stale keep-alive replays not)", f.attempts);
  counter("courier_worker_retries_total", "Attempts that were retries", f.retries);
  counter("courier_worker_error_replies_total",
          "Replies the worker produced instead of the upstream (Courier error codes)",
          f.error_replies);
  counter("courier_worker_budget_rejections_total", "Retries the retry budget refused",
          f.budget_rejections);
  counter("courier_worker_lost_after_sending_total",
          "Requests answered 502 as the connection was lost after sending (not retry-safe)",
          f.lost_after_sending);
  counter("courier_worker_cancelled_total", "Requests cancelled by their client", f.cancelled);
  counter("courier_worker_streams_total", "Replies streamed to the client", f.streams);
  {
    auto& aborts = metrics::family(out, "courier_worker_stream_aborts_total",
                                   "Streams that ended with ABORT, by reason", MetricType::Counter);
    for (const auto& [reason, count] : f.stream_aborts_by_reason) {
      metrics::add(aborts, {{"service", s.service}, {"reason", reason}},
                   static_cast<double>(count));
    }
  }
  {
    auto& latency = metrics::family(out, "courier_worker_upstream_duration_seconds",
                                    "Upstream attempt durations, by outcome (ok: a response of "
                                    "any status; streamed: to the stream's end)",
                                    MetricType::Histogram);
    for (const auto& [outcome, histogram] : f.upstream_seconds) {
      metrics::add(latency, {{"service", s.service}, {"outcome", outcome}}, histogram);
    }
  }
  // The breaker: one series per state, 1 for the current one.
  {
    const std::string current = s.circuit.enabled ? to_string(s.circuit.state) : "disabled";
    auto& state = metrics::family(out, "courier_worker_circuit_state",
                                  "1 for the state the circuit breaker is in (closed, open, "
                                  "half-open, disabled)",
                                  MetricType::Gauge);
    for (const char* name : {"closed", "open", "half-open", "disabled"}) {
      metrics::add(state, {{"service", s.service}, {"state", name}}, current == name ? 1 : 0);
    }
  }
  gauge("courier_worker_circuit_failure_rate",
        "Share of the breaker window's upstream attempts that failed",
        s.circuit.window.failure_rate());
  gauge("courier_worker_circuit_window_attempts",
        "Upstream attempts in the breaker's window (probes while half-open)",
        static_cast<double>(std::max(0, s.circuit.window.attempts)));
  counter("courier_worker_circuit_opened_total", "Times the circuit opened", s.circuit.opened);
  counter("courier_worker_circuit_rejections_total", "Requests the open circuit failed fast",
          f.circuit_rejections);
  counter("courier_worker_circuit_failures_total",
          "Upstream attempts the breaker counted as failures", f.circuit_failures);
  // The pool of keep-alive connections to the upstream.
  gauge("courier_worker_pool_idle_connections", "Idle keep-alive connections to the upstream",
        static_cast<double>(s.idle_connections));
  gauge("courier_worker_pool_open_connections",
        "Connections to the upstream that exist, idle or in use",
        static_cast<double>(s.open_connections));
  counter("courier_worker_pool_connections_opened_total", "Connections opened to the upstream",
          s.pool.connections_opened);
  counter("courier_worker_pool_connections_reused_total", "Requests sent on a pooled connection",
          s.pool.connections_reused);
  counter("courier_worker_pool_stale_replays_total",
          "Pooled connections found closed and the request sent again on a new one",
          s.pool.stale_replays);
  gauge("courier_worker_in_flight", "Requests held, running or waiting for a slot",
        static_cast<double>(s.in_flight));
  gauge("courier_worker_concurrency", "Requests run at once at most",
        static_cast<double>(s.concurrency));
  gauge("courier_worker_brokers", "Brokers configured", static_cast<double>(s.brokers));
  gauge("courier_worker_brokers_alive", "Brokers that answer heartbeats",
        static_cast<double>(s.brokers_alive));
  counter("courier_worker_malformed_requests_total",
          "REQUEST messages dropped or refused as malformed", s.malformed_requests);
  counter("courier_worker_ignored_controls_total",
          "CREDIT and CANCEL messages for a request the worker does not hold from that broker",
          s.ignored_controls);
  counter("courier_worker_excess_credits_total",
          "CREDIT messages that would have raised a stream's credit past its cap",
          s.excess_credits);
}

}  // namespace courier::workers
