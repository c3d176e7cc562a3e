#include "gateway/broker_view.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <string>

namespace courier::gateway {

namespace {

using nlohmann::json;

void add_counts(StatsCounts& into, const StatsCounts& from) {
  for (const auto& [name, n] : from) into[name] += n;
}

}  // namespace

json merge_broker_stats(const std::vector<BrokerStatus>& brokers) {
  json list = json::array();
  std::map<std::string, BrokerStats::Service> services;
  StatsCounts counters;
  std::map<std::string, std::set<std::string>> live_workers;  // service -> worker names
  // service -> worker -> breaker state: a worker registered with two brokers is counted once.
  std::map<std::string, std::map<std::string, std::string>> circuit_states;
  std::uint64_t gateways = 0;
  for (const auto& b : brokers) {
    json entry = {{"endpoint", b.endpoint}, {"connected", b.connected}, {"pending", b.pending}};
    if (!b.connected || !b.stats) {
      list.push_back(std::move(entry));
      continue;
    }
    // Decoded (and bounded) once on arrival: every field here has its type.
    const BrokerStats& stats = *b.stats;
    entry["id"] = stats.broker_id;
    entry["gateways"] = stats.gateways;
    entry["counters"] = to_json(stats.counters);
    gateways = std::max(gateways, stats.gateways);
    add_counts(counters, stats.counters);
    for (const auto& [name, s] : stats.services) {
      auto& out = services[name];
      out.capacity += s.capacity;
      out.in_flight += s.in_flight;
      out.queue_depth += s.queue_depth;
      out.max_queue += s.max_queue;
      // Each broker takes the same workers out of its rotation: a worker counts once.
      out.ejected = std::max(out.ejected, s.ejected);
      if (out.circuit == "unknown") {
        out.circuit = s.circuit;
      } else if (s.circuit != "unknown" && s.circuit != out.circuit) {
        out.circuit = "mixed";
      }
      add_counts(out.counters, s.counters);
      for (auto w : s.worker_list) {
        if (!w.draining) live_workers[name].insert(w.id);
        if (w.status && !w.status->circuit.empty()) {
          circuit_states[name][w.id] = w.status->circuit;
        }
        w.broker = stats.broker_id;
        out.worker_list.push_back(std::move(w));
      }
    }
    list.push_back(std::move(entry));
  }
  json services_json = json::object();
  for (auto& [name, out] : services) {
    const auto it = live_workers.find(name);
    out.workers = it == live_workers.end() ? 0 : it->second.size();
    out.circuits.clear();
    for (const auto& [worker, state] : circuit_states[name]) ++out.circuits[state];
    services_json[name] = to_json(out);
  }
  return {{"brokers", std::move(list)},
          {"gateways", gateways},
          {"services", std::move(services_json)},
          {"counters", to_json(counters)}};
}

}  // namespace courier::gateway
