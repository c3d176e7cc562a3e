// When and how long to wait before retrying an upstream attempt, plus the retry budget that stops
// retries from amplifying an outage (the circuit breaker is in circuit_breaker.hpp). Pure logic.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string_view>

namespace courier::workers {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using std::chrono::milliseconds;

enum class AttemptOutcome {
  kSuccess,
  kConnectFailed,        // never reached the upstream: always safe to repeat
  kResetBeforeResponse,  // the upstream may have seen the request but sent nothing back
  kTimeout,
  kRetryableStatus,  // 429, 502, 503, 504
  kOtherStatus,      // any other upstream status, including 4xx and 500
  kBadResponse,      // unparseable or truncated response
};
const char* to_string(AttemptOutcome outcome);

// Classifies an upstream status: 429/502/503/504 say "try elsewhere or later"; the rest are
// answers.
AttemptOutcome classify_status(unsigned status);

struct RetryPolicy {
  int max_attempts = 3;  // attempts in all, the first included
  milliseconds min_wait{1'000};
  milliseconds max_wait{10'000};
};

struct FinishedAttempt {
  AttemptOutcome outcome = AttemptOutcome::kSuccess;
  int attempts_made = 1;  // including this one
  bool retry_safe = false;
  std::optional<milliseconds> retry_after;  // from the upstream's Retry-After header
};

struct RetryDecision {
  bool retry = false;
  milliseconds wait{0};
  const char* reason = "";  // static text for logs
};

// Decides whether to make another attempt and how long to wait first. `deadline` is the request's:
// a retry that could not start before it is pointless. An upstream's Retry-After is never cut
// short: the wait is at least that long, and when that is beyond max_wait or the deadline there is
// no retry (the upstream's answer, Retry-After included, goes back to the client).
RetryDecision decide_retry(const RetryPolicy& policy, const FinishedAttempt& attempt, TimePoint now,
                           TimePoint deadline, std::mt19937_64& rng);

// Exponential backoff with jitter, kept within [min_wait, max_wait]: the ceiling doubles with
// every attempt so that clients desynchronise instead of retrying in lockstep.
milliseconds backoff_wait(const RetryPolicy& policy, int attempts_made, std::mt19937_64& rng);

// Retry-After as delta-seconds or IMF-fixdate; nullopt when absent or malformed. A date in the
// past means "now" (zero).
std::optional<milliseconds> parse_retry_after(std::string_view value,
                                              std::chrono::system_clock::time_point now);

// Caps concurrent retries at a share of active requests, so that a failing upstream sees at most
// (1 + ratio) times its normal load instead of max_attempts times. Not thread-safe: one per
// service, used from one executor.
class RetryBudget {
 public:
  RetryBudget(double ratio, int min_retries);

  void request_started() { ++active_requests_; }
  void request_finished();
  bool try_acquire_retry();
  void release_retry();

  int active_requests() const { return active_requests_; }
  int retries_in_flight() const { return retries_in_flight_; }

 private:
  double ratio_;
  int min_retries_;
  int active_requests_ = 0;
  int retries_in_flight_ = 0;
};

}  // namespace courier::workers
