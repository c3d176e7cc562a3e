// The two JSON contracts that cross processes, typed: a worker's status (carried by its HEARTBEAT)
// and the broker's STATS snapshot (read by the gateways), each with the one codec that names keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace courier {

// Every frame is hostile input: what a decoder keeps is bounded whatever the text holds, so a
// buggy, old or malicious peer cannot make the broker or the gateway hold more than this.
inline constexpr std::size_t kMaxWorkerStatusBytes = 4096;      // the broker drops larger ones
inline constexpr std::size_t kMaxBrokerStatsBytes = 16u << 20;  // about 40k workers' entries
inline constexpr std::size_t kMaxStatsString = 256;             // ids, names, states
inline constexpr std::size_t kMaxStatsServices = 1024;
inline constexpr std::size_t kMaxStatsWorkers = 4096;  // per service
inline constexpr std::size_t kMaxStatsCounters = 64;   // per counter map
// Counts above 2^53 are not integers a double (Prometheus, the dashboard) can hold; below it, the
// gateway's sums over brokers cannot overflow either.
inline constexpr std::uint64_t kMaxStatsCount = std::uint64_t{1} << 53;

// A worker's self-report. The broker acts on `fails_fast()` only; the rest is for stats.
struct WorkerStatus {
  std::string circuit;  // "closed", "open", "half-open" or "disabled"; empty: not reported
  // False while the breaker would fail every request fast; unset from a worker that does not say.
  std::optional<bool> circuit_accepting;
  double circuit_failure_rate = 0;  // [0, 1]
  std::uint64_t circuit_window_attempts = 0;
  std::uint64_t circuit_window_failures = 0;
  std::uint64_t circuit_opened = 0;
  std::uint64_t circuit_retry_in_ms = 0;
  std::uint64_t circuit_failures = 0;
  std::uint64_t circuit_rejections = 0;
  std::uint64_t requests = 0;
  std::uint64_t attempts = 0;
  std::uint64_t retries = 0;
  std::uint64_t error_replies = 0;
  std::uint64_t budget_rejections = 0;

  // The breaker fails every request fast: `circuit_accepting` false or, from a worker that does
  // not send it, `circuit` "open".
  bool fails_fast() const { return circuit_accepting ? !*circuit_accepting : circuit == "open"; }
  bool operator==(const WorkerStatus&) const = default;
};

// Event counters by name: open-ended, so a newer broker's counter reaches /metrics unchanged.
using StatsCounts = std::map<std::string, std::uint64_t>;

// The broker's STATS reply.
struct BrokerStats {
  struct Worker {
    std::string id;  // the worker's name
    std::uint64_t capacity = 0;
    std::uint64_t in_flight = 0;
    bool draining = false;
    std::uint64_t completed = 0;
    std::optional<WorkerStatus> status;  // none until a heartbeat carried a readable one
    // Only in the gateway's merged view (/services): the broker that lists the worker.
    std::string broker;
    bool operator==(const Worker&) const = default;
  };
  struct Service {
    std::uint64_t workers = 0;  // live (not draining)
    std::uint64_t capacity = 0;
    std::uint64_t in_flight = 0;
    std::uint64_t queue_depth = 0;
    std::uint64_t max_queue = 0;
    std::string circuit = "unknown";  // the workers' breaker state if they agree, else "mixed"
    StatsCounts circuits;             // workers in each breaker state
    std::uint64_t ejected = 0;        // live workers sent nothing while others can serve
    std::vector<Worker> worker_list;
    StatsCounts counters;
    bool operator==(const Service&) const = default;
  };

  std::string broker_id;
  std::uint64_t gateways = 0;
  std::map<std::string, Service> services;
  StatsCounts counters;
  bool operator==(const BrokerStats&) const = default;
};

std::string encode(const WorkerStatus& status);
std::string encode(const BrokerStats& stats);
// Never throw: text that is not a JSON object (or is too long) gives nullopt; a field that is
// missing, of the wrong type or out of range takes its default; unknown fields are ignored.
std::optional<WorkerStatus> decode_worker_status(std::string_view text);
std::optional<BrokerStats> decode_broker_stats(std::string_view text);

// The JSON forms, for documents that embed them (the gateway's /services).
nlohmann::json to_json(const WorkerStatus& status);
nlohmann::json to_json(const BrokerStats::Worker& worker);
nlohmann::json to_json(const BrokerStats::Service& service);
nlohmann::json to_json(const StatsCounts& counts);
nlohmann::json to_json(const BrokerStats& stats);

}  // namespace courier
