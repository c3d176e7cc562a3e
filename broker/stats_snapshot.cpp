#include "broker/stats_snapshot.hpp"

namespace courier::broker {

StatsCounts counter_counts(const Counters& c) {
  return {{"requests", c.requests},
          {"dispatched", c.dispatched},
          {"replies", c.replies},
          {"requeued", c.requeued},
          {"worker_lost", c.worker_lost_replies},
          {"expired", c.expired},
          {"rejected_overloaded", c.rejected_overloaded},
          {"rejected_no_workers", c.rejected_no_workers},
          {"malformed", c.malformed},
          {"late_replies", c.late_replies},
          {"duplicate_requests", c.duplicate_requests},
          {"rerouted_requests", c.rerouted_requests},
          {"unroutable", c.unroutable},
          {"gateway_gone_drops", c.gateway_gone_drops},
          {"orphans", c.orphans},
          {"stall_drops", c.stall_drops},
          {"workers_lost", c.workers_lost},
          {"streams", c.streams},
          {"stream_aborts", c.stream_aborts},
          {"cancelled_queued", c.cancelled_queued},
          {"cancelled_in_flight", c.cancelled_in_flight},
          {"foreign_cancels", c.foreign_cancels},
          {"malformed_shape", c.malformed_shape},
          {"malformed_field", c.malformed_field},
          {"malformed_misrouted", c.malformed_misrouted},
          {"malformed_status", c.malformed_status},
          {"handler_errors", c.handler_errors},
          {"refused_services", c.refused_services},
          {"refused_workers", c.refused_workers},
          {"refused_gateways", c.refused_gateways},
          {"foreign_ids", c.foreign_ids},
          {"peers_disconnected", c.peers_disconnected},
          {"curve_denied_gateways", c.curve_denied_gateways},
          {"curve_denied_workers", c.curve_denied_workers},
          {"loop_wakeups", c.loop_wakeups}};
}

namespace {

BrokerStats::Service service_snapshot(const ServiceQueue& svc, const WorkerRegistry& registry,
                                      const InFlightTable& requests, std::size_t& listed) {
  BrokerStats::Service out;
  std::string circuit;  // every worker's breaker state if they agree, else "mixed"
  for (const Worker* w : registry.of_service(svc.name)) {
    // The status was decoded (and its fields checked) once, when its heartbeat arrived. The list
    // is bounded (the totals below are not): the snapshot's size must not grow with what peers
    // register.
    if (out.worker_list.size() < kMaxListedWorkersPerService && listed < kMaxListedWorkers) {
      out.worker_list.push_back(
          {w->name, w->capacity, w->in_flight, w->draining, w->completed, w->status, {}});
      ++listed;
    }
    if (w->status && !w->status->circuit.empty()) {
      const auto& state = w->status->circuit;
      circuit = circuit.empty() || circuit == state ? state : "mixed";
      ++out.circuits[state];
    }
    if (!w->draining) {
      out.capacity += w->capacity;
      ++out.workers;
    }
    out.in_flight += w->in_flight;
  }
  out.queue_depth = ServiceQueues::depth(svc, requests);
  out.max_queue = svc.max_queue;
  if (!circuit.empty()) out.circuit = circuit;
  // Workers the broker is sending nothing while others can serve.
  out.ejected = registry.ejected_workers(svc.name);
  // Per service, only the counters that can be told apart by service.
  out.counters = counter_counts(svc.counters);
  for (const char* k : {"requests",
                        "malformed",
                        "late_replies",
                        "duplicate_requests",
                        "rerouted_requests",
                        "unroutable",
                        "gateway_gone_drops",
                        "orphans",
                        "workers_lost",
                        "malformed_shape",
                        "malformed_field",
                        "malformed_misrouted",
                        "malformed_status",
                        "handler_errors",
                        "refused_services",
                        "refused_workers",
                        "refused_gateways",
                        "foreign_ids",
                        "foreign_cancels",
                        "peers_disconnected",
                        "curve_denied_gateways",
                        "curve_denied_workers",
                        "loop_wakeups"}) {
    out.counters.erase(k);
  }
  return out;
}

}  // namespace

BrokerStats stats_snapshot(const std::string& broker_id, std::size_t gateways,
                           const ServiceQueues& queues, const WorkerRegistry& workers,
                           const InFlightTable& requests, const Counters& counters) {
  BrokerStats stats;
  stats.broker_id = broker_id;
  stats.gateways = gateways;
  std::size_t listed = 0;
  for (const auto& [name, svc] : queues) {
    if (stats.services.size() >= kMaxStatsServices) break;  // what a gateway would read at most
    stats.services.emplace(name, service_snapshot(*svc, workers, requests, listed));
  }
  stats.counters = counter_counts(counters);
  return stats;
}

}  // namespace courier::broker
