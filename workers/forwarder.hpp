// Turns a request envelope into a reply envelope for one service: builds the upstream request,
// runs the retry loop behind the circuit breaker and retry budget, and maps failures to replies.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "common/asio.hpp"
#include "common/config.hpp"
#include "common/envelope.hpp"
#include "workers/circuit_breaker.hpp"
#include "workers/http_client.hpp"
#include "workers/retry_policy.hpp"

namespace courier::workers {

// The request to send upstream, or nullopt if the envelope's method, target or headers could not
// be sent safely (they come from the network; a CR or LF here would split the request).
std::optional<UpstreamRequest> build_upstream_request(const RequestEnvelope& request,
                                                      const ServiceConfig& service);

// An upstream response as a reply: status, end-to-end headers and body, unchanged otherwise. The
// upstream's Content-Length is kept: for HEAD it is the only length the client will see.
ReplyEnvelope make_upstream_reply(const UpstreamResponse& response);

// The steady-clock deadline for a request: its absolute deadline, or `fallback` from now if it
// carries none.
TimePoint request_deadline(std::uint64_t deadline_ms, std::chrono::system_clock::time_point now,
                           TimePoint steady_now, milliseconds fallback);

struct ForwarderStats {
  std::uint64_t requests = 0;
  std::uint64_t attempts = 0;  // upstream attempts; stale keep-alive replays are not counted
  std::uint64_t retries = 0;
  std::uint64_t error_replies = 0;       // replies Courier produced instead of the upstream
  std::uint64_t circuit_rejections = 0;  // requests failed fast by an open circuit
  std::uint64_t budget_rejections = 0;   // retries the retry budget refused
  std::uint64_t circuit_failures = 0;    // attempts the breaker counted as upstream failures
  // Requests answered 502 because the connection was lost after (part of) the request went out
  // and the request is not retry-safe: never sent twice, so the client must decide.
  std::uint64_t lost_after_sending = 0;
};

// True if the breaker counts this upstream attempt against the upstream: it was not reached, did
// not answer in time or answered garbage, or answered one of `failure_statuses`. A timeout of an
// attempt that had less than half the service timeout (`short_budget`: the client asked for a
// short deadline) says nothing about the upstream and does not count.
bool counts_as_upstream_failure(const FetchResult& fetch,
                                const std::vector<unsigned>& failure_statuses, bool short_budget);

// What the worker's status (and so /services and /metrics) shows of its breaker.
struct CircuitStatus {
  CircuitState state = CircuitState::kClosed;
  bool enabled = true;
  WindowCounts window;       // the closed window's counts, the probes' while half-open
  std::uint64_t opened = 0;  // times it opened
  milliseconds retry_in{0};  // until an open circuit half-opens
  bool accepting = true;     // an attempt would go ahead now (false: open, or every probe out)
};

// Forwards requests for one service. Not thread-safe: all calls must come from `executor` (one
// thread or strand), which also runs the connection pool.
class Forwarder {
 public:
  Forwarder(asio::any_io_executor executor, const ServiceConfig& service, std::string worker_id,
            std::uint64_t seed);

  asio::awaitable<ReplyEnvelope> forward(RequestEnvelope request);

  const ServiceConfig& service() const { return service_; }
  const ForwarderStats& stats() const { return stats_; }
  // At shutdown, before the io_context goes: the forwarder then holds no I/O object of its own.
  void close_idle() { pool_.close_idle(); }
  CircuitStatus circuit_status(TimePoint now) const;

 private:
  struct Attempt;
  struct Progress {
    std::uint32_t attempts = 0;
    std::chrono::microseconds upstream_time{0};
  };

  asio::awaitable<ReplyEnvelope> run_attempts(const RequestEnvelope& request, TimePoint deadline,
                                              Progress& progress);
  Attempt classify(FetchResult result, std::chrono::system_clock::time_point now) const;
  ReplyEnvelope final_reply(Attempt attempt, TimePoint deadline) const;
  void log_attempt(const RequestEnvelope& request, const Attempt& attempt, int number,
                   std::chrono::microseconds took) const;
  void log_transition(const CircuitTransition& transition) const;

  asio::any_io_executor executor_;
  ServiceConfig service_;
  std::string worker_id_;
  ConnectionPool pool_;
  RetryPolicy policy_;
  RetryBudget budget_;
  CircuitBreaker breaker_;
  std::mt19937_64 rng_;
  ForwarderStats stats_;
};

}  // namespace courier::workers
