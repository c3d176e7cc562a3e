// The broker's STATS reply, built from its live state as a typed BrokerStats (common/status.hpp
// encodes it). Gateways merge it into /services and /metrics; its counter names are spelled here.
#pragma once

#include <cstddef>
#include <string>

#include "broker/counters.hpp"
#include "broker/in_flight_table.hpp"
#include "broker/service_queues.hpp"
#include "broker/worker_registry.hpp"
#include "common/status.hpp"

namespace courier::broker {

// The worker list of a snapshot is bounded so that one STATS answer stays small (a few hundred
// KiB) whatever peers register; per-service totals always count every worker.
inline constexpr std::size_t kMaxListedWorkersPerService = 256;
inline constexpr std::size_t kMaxListedWorkers = 1024;

StatsCounts counter_counts(const Counters& counters);

BrokerStats stats_snapshot(const std::string& broker_id, std::size_t gateways,
                           const ServiceQueues& queues, const WorkerRegistry& workers,
                           const InFlightTable& requests, const Counters& counters);

}  // namespace courier::broker
