#include "workers/circuit_breaker.hpp"

#include <algorithm>
#include <cmath>

namespace courier::workers {

const char* to_string(CircuitState state) {
  switch (state) {
    case CircuitState::kClosed:
      return "closed";
    case CircuitState::kOpen:
      return "open";
    case CircuitState::kHalfOpen:
      return "half-open";
  }
  return "unknown";
}

CircuitBreaker::CircuitBreaker(CircuitPolicy policy, Listener on_transition)
    : policy_(policy),
      on_transition_(std::move(on_transition)),
      bucket_length_(std::max<Clock::duration>(policy.window / kBuckets, milliseconds{1})) {
  policy_.min_requests = std::max(policy_.min_requests, 1);
  policy_.half_open_probes = std::max(policy_.half_open_probes, 1);
  policy_.failure_rate = std::clamp(policy_.failure_rate, 0.0, 1.0);
}

std::int64_t CircuitBreaker::epoch_of(TimePoint now) const {
  return static_cast<std::int64_t>(now.time_since_epoch() / bucket_length_);
}

std::optional<CircuitBreaker::Permit> CircuitBreaker::allow(TimePoint now) {
  if (!policy_.enabled()) return Permit{generation_, false};
  if (state_ == CircuitState::kOpen) {
    if (now - opened_at_ < policy_.cooldown) return std::nullopt;
    move_to(CircuitState::kHalfOpen, {}, milliseconds{0}, now);
  }
  if (state_ == CircuitState::kHalfOpen) {
    if (probes_admitted_ >= policy_.half_open_probes) return std::nullopt;
    ++probes_admitted_;
    return Permit{generation_, true};
  }
  return Permit{generation_, false};
}

void CircuitBreaker::record(const Permit& permit, bool failed, TimePoint now) {
  if (!policy_.enabled() || permit.generation != generation_) return;
  if (state_ == CircuitState::kHalfOpen && permit.probe) {
    ++probes_.attempts;
    probes_.failures += failed;
    const int reopen_at = probe_failures_to_reopen();
    if (probes_.failures >= reopen_at) {
      move_to(CircuitState::kOpen, probes_, milliseconds{0}, now);
    } else if (probes_.attempts - probes_.failures > policy_.half_open_probes - reopen_at) {
      // Even if every probe still out fails, the rate stays below the threshold.
      move_to(CircuitState::kClosed, probes_, milliseconds{0}, now);
    }
    return;
  }
  if (state_ != CircuitState::kClosed || permit.probe) return;
  const auto epoch = epoch_of(now);
  auto& bucket = window_[static_cast<std::size_t>(epoch) % kBuckets];
  if (bucket.epoch != epoch) bucket = Bucket{epoch, 0, 0};
  ++bucket.attempts;
  bucket.failures += failed;
  if (!failed) return;
  const auto span = [&](std::size_t buckets) {
    return std::chrono::duration_cast<milliseconds>(bucket_length_ * buckets);
  };
  if (const auto whole = counts_over(now, kBuckets); reaches_threshold(whole)) {
    move_to(CircuitState::kOpen, whole, span(kBuckets), now);
  } else if (const auto recent = counts_over(now, kRecentBuckets); reaches_threshold(recent)) {
    move_to(CircuitState::kOpen, recent, span(kRecentBuckets), now);
  }
}

bool CircuitBreaker::reaches_threshold(const WindowCounts& seen) const {
  return seen.attempts >= policy_.min_requests && seen.failures >= policy_.min_failures &&
         seen.failure_rate() >= policy_.failure_rate;
}

WindowCounts CircuitBreaker::counts(TimePoint now) const {
  if (state_ == CircuitState::kHalfOpen) return probes_;
  return counts_over(now, kBuckets);
}

WindowCounts CircuitBreaker::counts_over(TimePoint now, std::size_t buckets) const {
  const auto newest = epoch_of(now);
  WindowCounts out;
  for (const auto& b : window_) {
    if (b.epoch > newest - static_cast<std::int64_t>(buckets) && b.epoch <= newest) {
      out.attempts += b.attempts;
      out.failures += b.failures;
    }
  }
  return out;
}

CircuitState CircuitBreaker::state(TimePoint now) const {
  if (state_ == CircuitState::kOpen && now - opened_at_ >= policy_.cooldown) {
    return CircuitState::kHalfOpen;
  }
  return state_;
}

bool CircuitBreaker::admits(TimePoint now) const {
  if (!policy_.enabled()) return true;
  switch (state(now)) {
    case CircuitState::kClosed:
      return true;
    case CircuitState::kOpen:
      return false;
    case CircuitState::kHalfOpen:
      // Once the cool-down has passed, allow() starts a fresh half-open phase.
      return state_ == CircuitState::kOpen || probes_admitted_ < policy_.half_open_probes;
  }
  return true;
}

milliseconds CircuitBreaker::retry_in(TimePoint now) const {
  if (state_ != CircuitState::kOpen) return milliseconds{0};
  const auto left = policy_.cooldown - (now - opened_at_);
  return std::max(std::chrono::ceil<milliseconds>(left), milliseconds{0});
}

int CircuitBreaker::probe_failures_to_reopen() const {
  // The smallest number of failed probes whose share reaches the rate (the epsilon keeps 0.5 * 4
  // at 2 instead of 3 after rounding).
  const double exact = policy_.failure_rate * policy_.half_open_probes;
  return std::max(1, static_cast<int>(std::ceil(exact - 1e-9)));
}

void CircuitBreaker::move_to(CircuitState to, WindowCounts evidence, milliseconds span,
                             TimePoint now) {
  const auto from = state_;
  state_ = to;
  ++generation_;
  switch (to) {
    case CircuitState::kOpen:
      opened_at_ = now;
      ++times_opened_;
      break;
    case CircuitState::kHalfOpen:
      probes_admitted_ = 0;
      probes_ = {};
      break;
    case CircuitState::kClosed:
      window_.fill(Bucket{});  // a fresh start: failures from before the outage are history
      break;
  }
  if (on_transition_) on_transition_({from, to, evidence, span});
}

}  // namespace courier::workers
