// Turns a request envelope into a reply envelope for one service: builds the upstream request,
// runs the retry loop behind the circuit breaker and retry budget, and maps failures to replies.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "common/asio.hpp"
#include "common/config.hpp"
#include "common/envelope.hpp"
#include "common/metrics_text.hpp"
#include "workers/cancellation.hpp"
#include "workers/circuit_breaker.hpp"
#include "workers/http_client.hpp"
#include "workers/reply_stream.hpp"
#include "workers/retry_policy.hpp"

namespace courier::workers {

// The request to send upstream, or nullopt if the envelope's method, target or headers could not
// be sent safely (they come from the network; a CR or LF here would split the request).
std::optional<UpstreamRequest> build_upstream_request(const RequestEnvelope& request,
                                                      const ServiceConfig& service);

// An upstream response as a reply: status, end-to-end headers and body, unchanged otherwise. The
// upstream's Content-Length is kept: for HEAD it is the only length the client will see.
ReplyEnvelope make_upstream_reply(const UpstreamResponse& response);
// The same without a body: the HEAD of a streamed reply.
ReplyEnvelope make_upstream_head(const UpstreamHead& head);

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
  std::uint64_t streams = 0;        // replies streamed (a HEAD went out)
  std::uint64_t stream_aborts = 0;  // of those, ended by ABORT (cancelled ones included)
  std::uint64_t cancelled = 0;      // requests cancelled by their client, wherever they were
  // Streams that did not complete, by reason: upstream_failed, idle_timeout, duration_cap,
  // client_not_reading, cancelled, send_failed.
  std::map<std::string, std::uint64_t> stream_aborts_by_reason;
  // Upstream attempts' durations in seconds by outcome (attempt_outcome_label), for /metrics.
  std::map<std::string, metrics::HistogramData> upstream_seconds;
};

// The outcome label of an upstream attempt: ok (a response, any status), connect_failed, reset,
// timeout, bad_response, cancelled, or streamed (its duration runs to the stream's end).
const char* attempt_outcome_label(const FetchResult& fetch);

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
// When the last attempt's request went out and its response head came back (Unix epoch µs; 0
// when it never got that far): the worker's STAMPS slots kUpstreamSent and kUpstreamFirstByte.
struct UpstreamMarks {
  std::uint64_t sent_us = 0;
  std::uint64_t head_us = 0;
};

// Holds one request's place in the service's retry budget (forwarder.cpp).
class BudgetLease;

class Forwarder {
 public:
  Forwarder(asio::any_io_executor executor, const ServiceConfig& service, std::string worker_id,
            std::uint64_t seed);

  // Never streams and cannot be cancelled: every response is read whole.
  asio::awaitable<ReplyEnvelope> forward(RequestEnvelope request);
  // Streams a response that should_stream() picks to `stream` and leaves `reply` empty: its
  // HEAD and then END or ABORT went there. Otherwise `reply` is the reply to send, as above. A
  // `cancel` stops the request wherever it is and the reply is 499 CLIENT_CLOSED_REQUEST (ABORT
  // "cancelled" once streaming). `request` and `reply` must outlive the returned awaitable (the
  // caller awaits it at once); the reply is written there rather than returned so that it takes
  // no room in the frames of a request that waits.
  asio::awaitable<void> forward(const RequestEnvelope& request, ReplyStream& stream,
                                Cancellation& cancel, std::optional<ReplyEnvelope>& reply,
                                UpstreamMarks* marks = nullptr);
  asio::awaitable<void> forward(RequestEnvelope&& request, ReplyStream& stream,
                                Cancellation& cancel, std::optional<ReplyEnvelope>& reply,
                                UpstreamMarks* marks = nullptr) = delete;
  // Counts and logs a request cancelled before it reached the forwarder (`where` it waited).
  void note_cancelled(const RequestEnvelope& request, std::string_view where);
  // The worker's access record of a request that was decoded (common/access_log): `reply` is
  // what went back, `started` when the worker took it.
  void log_access(const RequestEnvelope& request, const ReplyEnvelope& reply,
                  TimePoint started) const;

  const ServiceConfig& service() const { return service_; }
  const ForwarderStats& stats() const { return stats_; }
  // At shutdown, before the io_context goes: the forwarder then holds no I/O object of its own.
  void close_idle() { pool_.close_idle(); }
  const ConnectionPool& pool() const { return pool_; }
  CircuitStatus circuit_status(TimePoint now) const;

 private:
  struct Attempt;
  struct Progress {
    std::uint32_t attempts = 0;
    std::chrono::microseconds upstream_time{0};
    // Set when the reply was streamed: for the access record.
    unsigned stream_status = 0;
    std::uint64_t stream_bytes = 0;
    std::optional<FetchResult::StreamEnd> stream_end;
    UpstreamMarks marks;  // of the last attempt
  };

  // The whole forward, retries included, in one coroutine frame (what a request waiting on its
  // upstream holds here); the reply goes to `out`, left empty when it streamed. `stream` and
  // `cancel` may be null.
  asio::awaitable<void> run_attempts(const RequestEnvelope& request, ReplyStream* stream,
                                     Cancellation* cancel, std::optional<ReplyEnvelope>& out,
                                     UpstreamMarks* marks);
  // The wait between two attempts, ended early by `cancel`. A coroutine of its own so that its
  // timer takes room only while a request backs off, not in the frame of every waiting request.
  asio::awaitable<void> back_off(std::chrono::milliseconds wait, Cancellation* cancel);
  // The steps of run_attempts between its waits (see there why they are functions of their own).
  // What one attempt may do, fixed for the request.
  struct AttemptTerms {
    bool retry_safe = false;
    bool short_budget = false;
    TimePoint deadline{};
  };
  // After an attempt: whether it counts against the circuit, and whether to try again after
  // `wait` (the attempt is then `last`); otherwise `out` holds the reply, or it streamed.
  struct Next {
    bool failed = false;
    bool retry = false;
    std::chrono::milliseconds wait{0};
  };
  // A request refused before any attempt (it cannot be forwarded, or it was cancelled).
  std::optional<ReplyEnvelope> refuse_early(const RequestEnvelope& request, bool can_forward,
                                            Cancellation* cancel);
  // No attempt can start (deadline passed, circuit open): the reply.
  ReplyEnvelope no_attempt(TimePoint now, TimePoint deadline, std::optional<Attempt>& last);
  Next after_fetch(const RequestEnvelope& request, FetchResult fetched,
                   std::chrono::microseconds took, AttemptTerms terms, Progress& progress,
                   BudgetLease& lease, std::optional<Attempt>& last,
                   std::optional<ReplyEnvelope>& out);
  // Every reply run_attempts returns passes here: counted, stamped, logged.
  void finish(const RequestEnvelope& request, std::optional<ReplyEnvelope>& reply,
              const Progress& progress, TimePoint started, UpstreamMarks* marks);
  // The fields the forwarder owns in every reply it makes, the HEAD of a stream included.
  void stamp(ReplyEnvelope& reply, const RequestEnvelope& request, std::uint32_t attempts,
             std::chrono::microseconds upstream_time) const;
  ReplyEnvelope cancelled_reply(const RequestEnvelope& request, std::string_view where);
  Attempt classify(FetchResult result, std::chrono::system_clock::time_point now) const;
  ReplyEnvelope final_reply(Attempt attempt, TimePoint deadline) const;
  void log_stream(const RequestEnvelope& request, const Progress& progress,
                  TimePoint started) const;
  void log_attempt(const RequestEnvelope& request, const Attempt& attempt, int number,
                   std::chrono::microseconds took) const;
  void log_transition(const CircuitTransition& transition) const;
  void observe_attempt(const FetchResult& fetch, std::chrono::microseconds took);

  asio::any_io_executor executor_;
  ServiceConfig service_;
  std::string worker_id_;
  ConnectionPool pool_;
  RetryPolicy policy_;
  RetryBudget budget_;
  CircuitBreaker breaker_;
  std::mt19937_64 rng_;
  ForwarderStats stats_;
  std::vector<double> latency_buckets_;
};

}  // namespace courier::workers
