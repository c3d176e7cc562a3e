// Several brokers' STATS snapshots seen as one system: what /services, /readyz and /metrics show.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "gateway/broker_client.hpp"

namespace courier::gateway {

// Merges the snapshots of the connected brokers into one document shaped like a single broker's
// (`services`, `counters`, `gateways`), plus `brokers`: one entry per configured broker.
// A worker registered with several brokers counts once in `workers` (by its name); capacity,
// in-flight, queue depth and counters add up (a worker splits its capacity between brokers).
nlohmann::json merge_broker_stats(const std::vector<BrokerStatus>& brokers);

}  // namespace courier::gateway
