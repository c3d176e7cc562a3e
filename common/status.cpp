#include "common/status.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

namespace courier {

using nlohmann::json;

namespace {

// The one place the keys are spelled. Fields read by the broker or the gateway are named here and
// in docs/protocol.md only.
namespace key {
constexpr const char* kCircuit = "circuit";
constexpr const char* kCircuitAccepting = "circuit_accepting";
constexpr const char* kCircuitFailureRate = "circuit_failure_rate";
constexpr const char* kCircuitWindowAttempts = "circuit_window_attempts";
constexpr const char* kCircuitWindowFailures = "circuit_window_failures";
constexpr const char* kCircuitOpened = "circuit_opened";
constexpr const char* kCircuitRetryInMs = "circuit_retry_in_ms";
constexpr const char* kCircuitFailures = "circuit_failures";
constexpr const char* kCircuitRejections = "circuit_rejections";
constexpr const char* kRequests = "requests";
constexpr const char* kAttempts = "attempts";
constexpr const char* kRetries = "retries";
constexpr const char* kErrorReplies = "error_replies";
constexpr const char* kBudgetRejections = "budget_rejections";

constexpr const char* kBrokerId = "broker_id";
constexpr const char* kGateways = "gateways";
constexpr const char* kServices = "services";
constexpr const char* kCounters = "counters";
constexpr const char* kWorkers = "workers";
constexpr const char* kCapacity = "capacity";
constexpr const char* kInFlight = "in_flight";
constexpr const char* kQueueDepth = "queue_depth";
constexpr const char* kMaxQueue = "max_queue";
constexpr const char* kCircuits = "circuits";
constexpr const char* kEjected = "ejected";
constexpr const char* kWorkerList = "worker_list";
constexpr const char* kId = "id";
constexpr const char* kDraining = "draining";
constexpr const char* kCompleted = "completed";
constexpr const char* kStatus = "status";
constexpr const char* kBroker = "broker";
}  // namespace key

// Worker names and ids may hold any bytes: invalid UTF-8 is replaced rather than thrown on.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Readers of one field each: a missing field, or one of the wrong type or out of range, leaves
// `out` at its default. None of them throws.
const json* field(const json& object, const char* name) {
  const auto it = object.find(name);
  return it == object.end() ? nullptr : &*it;
}

bool count_value(const json& j, std::uint64_t& out) {
  if (j.is_number_unsigned()) {
    const auto v = j.get<std::uint64_t>();
    if (v > kMaxStatsCount) return false;
    out = v;
    return true;
  }
  if (j.is_number_integer()) {
    const auto v = j.get<std::int64_t>();
    if (v < 0 || static_cast<std::uint64_t>(v) > kMaxStatsCount) return false;
    out = static_cast<std::uint64_t>(v);
    return true;
  }
  return false;  // a fraction is not a count
}

void read(const json& object, const char* name, std::uint64_t& out) {
  if (const json* j = field(object, name)) count_value(*j, out);
}

void read(const json& object, const char* name, bool& out) {
  if (const json* j = field(object, name); j && j->is_boolean()) out = j->get<bool>();
}

void read(const json& object, const char* name, std::optional<bool>& out) {
  if (const json* j = field(object, name); j && j->is_boolean()) out = j->get<bool>();
}

bool string_value(const json& j, std::string& out) {
  if (!j.is_string()) return false;
  const auto& s = j.get_ref<const std::string&>();
  if (s.size() > kMaxStatsString) return false;
  out = s;
  return true;
}

void read(const json& object, const char* name, std::string& out) {
  if (const json* j = field(object, name)) string_value(*j, out);
}

void read_rate(const json& object, const char* name, double& out) {
  const json* j = field(object, name);
  if (!j || !j->is_number()) return;
  const double v = j->get<double>();
  if (std::isfinite(v) && v >= 0 && v <= 1) out = v;
}

void read(const json& object, const char* name, StatsCounts& out) {
  const json* j = field(object, name);
  if (!j || !j->is_object()) return;
  for (const auto& [k, v] : j->items()) {
    if (out.size() >= kMaxStatsCounters) break;
    std::uint64_t n = 0;
    if (k.size() <= kMaxStatsString && count_value(v, n)) out[k] = n;
  }
}

WorkerStatus worker_status_from(const json& j) {
  WorkerStatus s;
  read(j, key::kCircuit, s.circuit);
  read(j, key::kCircuitAccepting, s.circuit_accepting);
  read_rate(j, key::kCircuitFailureRate, s.circuit_failure_rate);
  read(j, key::kCircuitWindowAttempts, s.circuit_window_attempts);
  read(j, key::kCircuitWindowFailures, s.circuit_window_failures);
  read(j, key::kCircuitOpened, s.circuit_opened);
  read(j, key::kCircuitRetryInMs, s.circuit_retry_in_ms);
  read(j, key::kCircuitFailures, s.circuit_failures);
  read(j, key::kCircuitRejections, s.circuit_rejections);
  read(j, key::kRequests, s.requests);
  read(j, key::kAttempts, s.attempts);
  read(j, key::kRetries, s.retries);
  read(j, key::kErrorReplies, s.error_replies);
  read(j, key::kBudgetRejections, s.budget_rejections);
  return s;
}

BrokerStats::Worker worker_from(const json& j) {
  BrokerStats::Worker w;
  read(j, key::kId, w.id);
  read(j, key::kCapacity, w.capacity);
  read(j, key::kInFlight, w.in_flight);
  read(j, key::kDraining, w.draining);
  read(j, key::kCompleted, w.completed);
  if (const json* s = field(j, key::kStatus); s && s->is_object()) {
    w.status = worker_status_from(*s);
  }
  read(j, key::kBroker, w.broker);
  return w;
}

BrokerStats::Service service_from(const json& j) {
  BrokerStats::Service s;
  read(j, key::kWorkers, s.workers);
  read(j, key::kCapacity, s.capacity);
  read(j, key::kInFlight, s.in_flight);
  read(j, key::kQueueDepth, s.queue_depth);
  read(j, key::kMaxQueue, s.max_queue);
  read(j, key::kCircuit, s.circuit);
  read(j, key::kCircuits, s.circuits);
  read(j, key::kEjected, s.ejected);
  if (const json* list = field(j, key::kWorkerList); list && list->is_array()) {
    for (const auto& w : *list) {
      if (s.worker_list.size() >= kMaxStatsWorkers) break;
      if (w.is_object()) s.worker_list.push_back(worker_from(w));
    }
  }
  read(j, key::kCounters, s.counters);
  return s;
}

// Parses without exceptions; a discarded (invalid) document is not an object either.
std::optional<json> parse_object(std::string_view text, std::size_t limit) {
  if (text.size() > limit) return std::nullopt;
  auto j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  return j;
}

}  // namespace

json to_json(const WorkerStatus& s) {
  json j = json::object();
  if (!s.circuit.empty()) j[key::kCircuit] = s.circuit;
  if (s.circuit_accepting) j[key::kCircuitAccepting] = *s.circuit_accepting;
  j[key::kCircuitFailureRate] = s.circuit_failure_rate;
  j[key::kCircuitWindowAttempts] = s.circuit_window_attempts;
  j[key::kCircuitWindowFailures] = s.circuit_window_failures;
  j[key::kCircuitOpened] = s.circuit_opened;
  j[key::kCircuitRetryInMs] = s.circuit_retry_in_ms;
  j[key::kCircuitFailures] = s.circuit_failures;
  j[key::kCircuitRejections] = s.circuit_rejections;
  j[key::kRequests] = s.requests;
  j[key::kAttempts] = s.attempts;
  j[key::kRetries] = s.retries;
  j[key::kErrorReplies] = s.error_replies;
  j[key::kBudgetRejections] = s.budget_rejections;
  return j;
}

json to_json(const BrokerStats::Worker& w) {
  json j = {{key::kId, w.id},
            {key::kCapacity, w.capacity},
            {key::kInFlight, w.in_flight},
            {key::kDraining, w.draining},
            {key::kCompleted, w.completed}};
  if (w.status) j[key::kStatus] = to_json(*w.status);
  if (!w.broker.empty()) j[key::kBroker] = w.broker;
  return j;
}

json to_json(const StatsCounts& counts) {
  json j = json::object();
  for (const auto& [name, n] : counts) j[name] = n;
  return j;
}

json to_json(const BrokerStats::Service& s) {
  json workers = json::array();
  for (const auto& w : s.worker_list) workers.push_back(to_json(w));
  return {{key::kWorkers, s.workers},
          {key::kCapacity, s.capacity},
          {key::kInFlight, s.in_flight},
          {key::kQueueDepth, s.queue_depth},
          {key::kMaxQueue, s.max_queue},
          {key::kCircuit, s.circuit},
          {key::kCircuits, to_json(s.circuits)},
          {key::kEjected, s.ejected},
          {key::kWorkerList, std::move(workers)},
          {key::kCounters, to_json(s.counters)}};
}

json to_json(const BrokerStats& stats) {
  json services = json::object();
  for (const auto& [name, s] : stats.services) services[name] = to_json(s);
  return {{key::kBrokerId, stats.broker_id},
          {key::kGateways, stats.gateways},
          {key::kServices, std::move(services)},
          {key::kCounters, to_json(stats.counters)}};
}

std::string encode(const WorkerStatus& status) { return dump(to_json(status)); }
std::string encode(const BrokerStats& stats) { return dump(to_json(stats)); }

std::optional<WorkerStatus> decode_worker_status(std::string_view text) {
  const auto j = parse_object(text, kMaxWorkerStatusBytes);
  if (!j) return std::nullopt;
  return worker_status_from(*j);
}

std::optional<BrokerStats> decode_broker_stats(std::string_view text) {
  const auto j = parse_object(text, kMaxBrokerStatsBytes);
  if (!j) return std::nullopt;
  BrokerStats stats;
  read(*j, key::kBrokerId, stats.broker_id);
  read(*j, key::kGateways, stats.gateways);
  if (const json* services = field(*j, key::kServices); services && services->is_object()) {
    for (const auto& [name, s] : services->items()) {
      if (stats.services.size() >= kMaxStatsServices) break;
      if (name.size() <= kMaxStatsString && s.is_object()) stats.services[name] = service_from(s);
    }
  }
  read(*j, key::kCounters, stats.counters);
  return stats;
}

}  // namespace courier
