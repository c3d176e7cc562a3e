// The broker's Prometheus series, from its STATS snapshot: per-service queue, pool and dispatch
// series, gateways, and the broker-wide event counters. Served on broker.admin_listen.
#pragma once

#include <string>

#include "common/metrics_text.hpp"
#include "common/status.hpp"

namespace courier::broker {

// Appends the broker's series for `stats` to `out` (labels: service; the broker's own id is the
// scrape target's business, so sums over brokers count each once).
void add_broker_metrics(metrics::Families& out, const BrokerStats& stats);

}  // namespace courier::broker
