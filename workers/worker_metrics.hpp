// The worker's Prometheus series: upstream attempts, retries and latency, its circuit breaker,
// connection pool, requests in flight, streams and cancellations. Served on worker.admin_listen
// from a snapshot the io thread takes (the forwarder is not thread-safe).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/metrics_text.hpp"
#include "workers/forwarder.hpp"

namespace courier::workers {

struct WorkerMetricsSnapshot {
  std::string service;
  ForwarderStats forwarder;
  CircuitStatus circuit;
  PoolStats pool;
  std::size_t idle_connections = 0;
  std::size_t open_connections = 0;
  std::int64_t in_flight = 0;     // requests held, running or waiting for a slot
  std::uint32_t concurrency = 0;  // requests run at once at most
  std::size_t brokers = 0;
  std::size_t brokers_alive = 0;
  std::uint64_t malformed_requests = 0;
  std::uint64_t ignored_controls = 0;
  std::uint64_t excess_credits = 0;
};

// Appends the worker's series (label service on each) to `out`.
void add_worker_metrics(metrics::Families& out, const WorkerMetricsSnapshot& snapshot);

}  // namespace courier::workers
