#include "gateway/broker_view.hpp"

#include <map>
#include <set>
#include <string>

namespace courier::gateway {

namespace {

using nlohmann::json;

void add_numbers(json& into, const json& from) {
  if (!from.is_object()) return;
  for (const auto& [name, value] : from.items()) {
    if (!value.is_number()) continue;
    into[name] = into.value(name, 0.0) + value.get<double>();
  }
}

// Counts are integers: keep them integers in the JSON the dashboard and tests read.
void integral(json& j) {
  for (auto& [name, value] : j.items()) {
    if (value.is_number_float()) value = static_cast<std::int64_t>(value.get<double>());
  }
}

}  // namespace

double json_number(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

json merge_broker_stats(const std::vector<BrokerStatus>& brokers) {
  json list = json::array();
  json services = json::object();
  json counters = json::object();
  std::map<std::string, std::set<std::string>> live_workers;  // service -> worker names
  // service -> worker -> breaker state: a worker registered with two brokers is counted once.
  std::map<std::string, std::map<std::string, std::string>> circuit_states;
  double gateways = 0;
  for (const auto& b : brokers) {
    json entry = {{"endpoint", b.endpoint}, {"connected", b.connected}, {"pending", b.pending}};
    if (!b.connected || !b.stats) {
      list.push_back(std::move(entry));
      continue;
    }
    const json& stats = *b.stats;
    const auto id = stats.value("broker_id", std::string());
    entry["id"] = id;
    entry["gateways"] = stats.value("gateways", 0);
    entry["counters"] = stats.value("counters", json::object());
    gateways = std::max(gateways, json_number(stats, "gateways"));
    if (const auto it = stats.find("counters"); it != stats.end()) add_numbers(counters, *it);
    const auto svcs = stats.find("services");
    if (svcs != stats.end() && svcs->is_object()) {
      for (const auto& [name, s] : svcs->items()) {
        if (!s.is_object()) continue;
        auto& out = services[name];
        if (out.is_null()) {
          out = {{"workers", 0},
                 {"capacity", 0},
                 {"in_flight", 0},
                 {"queue_depth", 0},
                 {"max_queue", 0},
                 {"ejected", 0},
                 {"circuit", "unknown"},
                 {"circuits", json::object()},
                 {"worker_list", json::array()},
                 {"counters", json::object()}};
        }
        for (const char* k : {"capacity", "in_flight", "queue_depth", "max_queue"}) {
          out[k] = out[k].get<std::int64_t>() + static_cast<std::int64_t>(json_number(s, k));
        }
        // Each broker takes the same workers out of its rotation: a worker counts once.
        out["ejected"] = std::max(out["ejected"].get<std::int64_t>(),
                                  static_cast<std::int64_t>(json_number(s, "ejected")));
        const auto found = s.find("circuit");
        const std::string circuit =
            found != s.end() && found->is_string() ? found->get<std::string>() : "unknown";
        const auto seen = out["circuit"].get<std::string>();
        if (seen == "unknown") {
          out["circuit"] = circuit;
        } else if (circuit != "unknown" && circuit != seen) {
          out["circuit"] = "mixed";
        }
        if (const auto it = s.find("counters"); it != s.end()) add_numbers(out["counters"], *it);
        if (const auto it = s.find("worker_list"); it != s.end() && it->is_array()) {
          for (auto w : *it) {
            if (!w.is_object()) continue;
            const auto wid = w.find("id");
            const std::string worker =
                wid != w.end() && wid->is_string() ? wid->get<std::string>() : "";
            const auto draining = w.find("draining");
            if (draining == w.end() || !draining->is_boolean() || !draining->get<bool>()) {
              live_workers[name].insert(worker);
            }
            if (const auto st = w.find("status"); st != w.end() && st->is_object()) {
              const auto c = st->find("circuit");
              if (c != st->end() && c->is_string())
                circuit_states[name][worker] = c->get<std::string>();
            }
            w["broker"] = id;
            out["worker_list"].push_back(std::move(w));
          }
        }
      }
    }
    list.push_back(std::move(entry));
  }
  for (auto& [name, out] : services.items()) {
    const auto it = live_workers.find(name);
    out["workers"] = it == live_workers.end() ? 0 : it->second.size();
    integral(out["counters"]);
    json circuits = json::object();
    for (const auto& [worker, state] : circuit_states[name])
      circuits[state] = circuits.value(state, 0) + 1;
    out["circuits"] = std::move(circuits);
  }
  integral(counters);
  return {{"brokers", std::move(list)},
          {"gateways", static_cast<std::int64_t>(gateways)},
          {"services", std::move(services)},
          {"counters", std::move(counters)}};
}

}  // namespace courier::gateway
