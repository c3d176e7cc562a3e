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

StatsCounts counter_counts(const Counters& counters);

BrokerStats stats_snapshot(const std::string& broker_id, std::size_t gateways,
                           const ServiceQueues& queues, const WorkerRegistry& workers,
                           const InFlightTable& requests, const Counters& counters);

}  // namespace courier::broker
