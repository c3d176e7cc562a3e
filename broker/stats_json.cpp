#include "broker/stats_json.hpp"

#include <nlohmann/json.hpp>

namespace courier::broker {

using nlohmann::json;

json counters_json(const Counters& c) {
  return json{{"requests", c.requests},
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
              {"workers_lost", c.workers_lost}};
}

namespace {

json service_json(const ServiceQueue& svc, const WorkerRegistry& registry,
                  const InFlightTable& requests) {
  json workers = json::array();
  std::uint64_t capacity = 0, in_flight = 0, live = 0;
  std::string circuit;             // every worker's breaker state if they agree, else "mixed"
  json circuits = json::object();  // how many workers are in each breaker state
  for (const Worker* w : registry.of_service(svc.name)) {
    json entry = {{"id", w->name},
                  {"capacity", w->capacity},
                  {"in_flight", w->in_flight},
                  {"draining", w->draining},
                  {"completed", w->completed}};
    if (!w->status.empty()) {
      auto status = json::parse(w->status, nullptr, false);
      if (status.is_object()) {
        // The status comes from the network: a field of the wrong type is ignored, not trusted.
        const auto it = status.find("circuit");
        if (it != status.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
          const auto& state = it->get_ref<const std::string&>();
          circuit = circuit.empty() || circuit == state ? state : "mixed";
          circuits[state] = circuits.value(state, 0) + 1;
        }
        entry["status"] = std::move(status);
      }
    }
    workers.push_back(std::move(entry));
    if (!w->draining) {
      capacity += w->capacity;
      ++live;
    }
    in_flight += w->in_flight;
  }
  // Per service, only the counters that can be told apart by service.
  json c = counters_json(svc.counters);
  for (const char* k :
       {"requests", "malformed", "late_replies", "duplicate_requests", "rerouted_requests",
        "unroutable", "gateway_gone_drops", "orphans", "workers_lost"}) {
    c.erase(k);
  }
  return {{"workers", live},
          {"capacity", capacity},
          {"in_flight", in_flight},
          {"queue_depth", ServiceQueues::depth(svc, requests)},
          {"max_queue", svc.max_queue},
          {"circuit", circuit.empty() ? "unknown" : circuit},
          {"circuits", std::move(circuits)},
          // Workers the broker is sending nothing while others can serve.
          {"ejected", registry.ejected_workers(svc.name)},
          {"worker_list", std::move(workers)},
          {"counters", std::move(c)}};
}

}  // namespace

json stats_json(const std::string& broker_id, std::size_t gateways, const ServiceQueues& queues,
                const WorkerRegistry& workers, const InFlightTable& requests,
                const Counters& counters) {
  json services = json::object();
  for (const auto& [name, svc] : queues) services[name] = service_json(*svc, workers, requests);
  return json{{"broker_id", broker_id},
              {"gateways", gateways},
              {"services", std::move(services)},
              {"counters", counters_json(counters)}};
}

}  // namespace courier::broker
