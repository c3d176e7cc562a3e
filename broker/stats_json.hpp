// The JSON of the broker's STATS reply. Gateways merge it into /services and tests read it, so
// its keys change only together with docs/protocol.md.
#pragma once

#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "broker/counters.hpp"
#include "broker/in_flight_table.hpp"
#include "broker/service_queues.hpp"
#include "broker/worker_registry.hpp"

namespace courier::broker {

nlohmann::json counters_json(const Counters& counters);

nlohmann::json stats_json(const std::string& broker_id, std::size_t gateways,
                          const ServiceQueues& queues, const WorkerRegistry& workers,
                          const InFlightTable& requests, const Counters& counters);

}  // namespace courier::broker
