// The per-service circuit breaker of a worker: trips on a failure *rate* over a sliding time window
// with a minimum volume, half-opens after a cool-down with a few probes. Pure logic: no I/O.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

namespace courier::workers {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using std::chrono::milliseconds;

enum class CircuitState { kClosed, kOpen, kHalfOpen };
const char* to_string(CircuitState state);

struct CircuitPolicy {
  int min_failures = 5;          // failures in the window before the rate counts; 0 turns it off
  int min_requests = 10;         // attempts in the window before the rate counts
  double failure_rate = 0.5;     // (0, 1]: failures / attempts in the window that open it
  milliseconds window{10'000};   // the sliding window, kept as ten buckets
  milliseconds cooldown{5'000};  // open, before half-open
  int half_open_probes = 3;      // attempts let through while half-open

  bool enabled() const { return min_failures > 0; }
};

// Attempts and failures seen within the window.
struct WindowCounts {
  int attempts = 0;
  int failures = 0;
  double failure_rate() const { return attempts == 0 ? 0.0 : double(failures) / attempts; }
};

// A change of state and the evidence for it: the counts over the span that opened it from closed
// (the whole window, or its recent part), the probes' counts when it left half-open, nothing when
// the cool-down ended.
struct CircuitTransition {
  CircuitState from = CircuitState::kClosed;
  CircuitState to = CircuitState::kClosed;
  WindowCounts evidence;
  milliseconds span{0};  // how far back `evidence` reaches (0 for probes)
};

// Closed: every attempt goes ahead; its result lands in the window, and a failure opens the
// circuit once the window holds at least `min_requests` attempts and `min_failures` failures and
// their ratio reaches `failure_rate`, or once its last two buckets (a fifth of it) do: an upstream
// that dies after heavy traffic must not wait for a whole window of successes to age out. Open:
// nothing goes ahead until `cooldown` has passed. Half-open: `half_open_probes` attempts go ahead;
// it closes as soon as their failure rate can no longer reach `failure_rate`, and reopens as soon
// as it has. Results of attempts admitted in an earlier state (a 60 s call that started before the
// circuit opened) count for nothing. Not thread-safe: one per service, used from one executor.
class CircuitBreaker {
 public:
  // What allow() hands out; record() takes it back with the attempt's result.
  struct Permit {
    std::uint64_t generation = 0;
    bool probe = false;
  };
  using Listener = std::function<void(const CircuitTransition&)>;

  explicit CircuitBreaker(CircuitPolicy policy, Listener on_transition = {});

  // A permit if an attempt may go ahead now; every permit must come back through record().
  std::optional<Permit> allow(TimePoint now);
  void record(const Permit& permit, bool failed, TimePoint now);

  // The state as of the last call; an open circuit whose cool-down has passed reports kOpen until
  // allow() is next called.
  CircuitState state() const { return state_; }
  // The state as the next allow() would see it: an open circuit whose cool-down has passed is
  // half-open (what the worker reports, so that the broker sends it the probes).
  CircuitState state(TimePoint now) const;
  // Whether allow() would hand out a permit now (without claiming one).
  bool admits(TimePoint now) const;
  // The closed window's counts as of `now` (the probes' while half-open).
  WindowCounts counts(TimePoint now) const;
  // How long until an open circuit lets a probe through; zero otherwise.
  milliseconds retry_in(TimePoint now) const;
  std::uint64_t times_opened() const { return times_opened_; }
  const CircuitPolicy& policy() const { return policy_; }

 private:
  struct Bucket {
    std::int64_t epoch = -1;  // which bucket_length-long slice of time it counts
    int attempts = 0;
    int failures = 0;
  };
  static constexpr std::size_t kBuckets = 10;
  static constexpr std::size_t kRecentBuckets = 2;

  // Attempts and failures in the newest `buckets` buckets (the current one included).
  WindowCounts counts_over(TimePoint now, std::size_t buckets) const;
  bool reaches_threshold(const WindowCounts& seen) const;

  std::int64_t epoch_of(TimePoint now) const;
  void move_to(CircuitState to, WindowCounts evidence, milliseconds span, TimePoint now);
  int probe_failures_to_reopen() const;

  CircuitPolicy policy_;
  Listener on_transition_;
  Clock::duration bucket_length_;
  std::array<Bucket, kBuckets> window_{};
  CircuitState state_ = CircuitState::kClosed;
  std::uint64_t generation_ = 0;  // bumped on every change of state
  TimePoint opened_at_{};
  int probes_admitted_ = 0;
  WindowCounts probes_;
  std::uint64_t times_opened_ = 0;
};

}  // namespace courier::workers
