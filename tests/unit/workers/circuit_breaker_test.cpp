#include "workers/circuit_breaker.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace courier::workers {
namespace {

using namespace std::chrono_literals;

const TimePoint kNow = TimePoint{} + 1h;

CircuitPolicy policy() {
  CircuitPolicy p;
  p.min_failures = 5;
  p.min_requests = 10;
  p.failure_rate = 0.5;
  p.window = 10s;
  p.cooldown = 5s;
  p.half_open_probes = 3;
  return p;
}

// One attempt through the breaker: false if it was refused.
bool attempt(CircuitBreaker& breaker, bool failed, TimePoint now) {
  const auto permit = breaker.allow(now);
  if (!permit) return false;
  breaker.record(*permit, failed, now);
  return true;
}

CircuitBreaker opened_breaker(std::vector<CircuitTransition>* seen = nullptr) {
  CircuitBreaker breaker(policy(), [seen](const CircuitTransition& t) {
    if (seen) seen->push_back(t);
  });
  for (int i = 0; i < 10; ++i) attempt(breaker, true, kNow);
  return breaker;
}

TEST(CircuitBreaker, FewFailuresAmongManySuccessesNeverTripIt) {
  CircuitBreaker breaker(policy());
  // 10 % failures for a minute, far more than min_failures in every window.
  for (int i = 0; i < 6000; ++i) {
    const auto now = kNow + i * 10ms;
    ASSERT_TRUE(attempt(breaker, i % 10 == 0, now)) << "refused at attempt " << i;
  }
  EXPECT_EQ(breaker.state(), CircuitState::kClosed);
  EXPECT_EQ(breaker.times_opened(), 0u);
}

TEST(CircuitBreaker, OnePathFailingAlwaysBesideAHealthierOneDoesNotTripIt) {
  CircuitBreaker breaker(policy());
  // 40 % of attempts go to a path that always fails: below the 50 % rate.
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(attempt(breaker, i % 5 == 1 || i % 5 == 3, kNow + i * 20ms));
  }
  EXPECT_EQ(breaker.state(), CircuitState::kClosed);
}

TEST(CircuitBreaker, DeadUpstreamTripsItWithinTheWindow) {
  std::vector<CircuitTransition> seen;
  CircuitBreaker breaker(policy(), [&](const CircuitTransition& t) { seen.push_back(t); });
  // Connection refused at one attempt per 100 ms: open once the window holds 10 attempts.
  int refused_at = -1;
  for (int i = 0; i < 50 && refused_at < 0; ++i) {
    if (!attempt(breaker, true, kNow + i * 100ms)) refused_at = i;
  }
  EXPECT_EQ(refused_at, 10);
  EXPECT_EQ(breaker.state(), CircuitState::kOpen);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].from, CircuitState::kClosed);
  EXPECT_EQ(seen[0].to, CircuitState::kOpen);
  EXPECT_EQ(seen[0].evidence.attempts, 10);
  EXPECT_EQ(seen[0].evidence.failures, 10);
  EXPECT_DOUBLE_EQ(seen[0].evidence.failure_rate(), 1.0);
  EXPECT_EQ(seen[0].span, 10s);
}

TEST(CircuitBreaker, UpstreamDyingAfterHeavyTrafficTripsItWithinTwoBuckets) {
  std::vector<CircuitTransition> seen;
  CircuitBreaker breaker(policy(), [&](const CircuitTransition& t) { seen.push_back(t); });
  // Ten seconds of successes at 200 attempts/s fill the whole window...
  auto now = kNow;
  for (int i = 0; i < 2000; ++i, now += 5ms) attempt(breaker, false, now);
  // ...then every attempt is refused: the whole window would need 10 s to reach 50 %.
  const auto died = now;
  while (breaker.state() == CircuitState::kClosed && now - died < 10s) {
    attempt(breaker, true, now);
    now += 5ms;
  }
  EXPECT_EQ(breaker.state(), CircuitState::kOpen);
  EXPECT_LE(now - died, 2s);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].span, 2s) << "the recent part of the window opened it";
  EXPECT_GE(seen[0].evidence.failure_rate(), 0.5);
}

TEST(CircuitBreaker, NeedsTheMinimumVolumeBeforeTheRateCounts) {
  CircuitBreaker breaker(policy());
  for (int i = 0; i < 9; ++i) attempt(breaker, true, kNow);
  EXPECT_EQ(breaker.state(), CircuitState::kClosed) << "9 attempts are below min_requests";
  attempt(breaker, true, kNow);
  EXPECT_EQ(breaker.state(), CircuitState::kOpen);
}

TEST(CircuitBreaker, NeedsTheMinimumFailuresBeforeTheRateCounts) {
  auto p = policy();
  p.min_requests = 2;
  p.min_failures = 3;
  CircuitBreaker breaker(p);
  attempt(breaker, true, kNow);
  attempt(breaker, true, kNow);
  EXPECT_EQ(breaker.state(), CircuitState::kClosed) << "100 % of 2, but only 2 failures";
  attempt(breaker, true, kNow);
  EXPECT_EQ(breaker.state(), CircuitState::kOpen);
}

TEST(CircuitBreaker, FailuresOlderThanTheWindowAreForgotten) {
  CircuitBreaker breaker(policy());
  for (int i = 0; i < 9; ++i) attempt(breaker, true, kNow);
  EXPECT_EQ(breaker.counts(kNow).failures, 9);
  EXPECT_EQ(breaker.counts(kNow + 11s).failures, 0);
  attempt(breaker, true, kNow + 11s);
  EXPECT_EQ(breaker.state(), CircuitState::kClosed) << "the first nine left the window";
  EXPECT_EQ(breaker.counts(kNow + 11s).attempts, 1);
}

TEST(CircuitBreaker, SuccessesKeepTheRateBelowTheThreshold) {
  CircuitBreaker breaker(policy());
  for (int i = 0; i < 20; ++i) attempt(breaker, false, kNow);
  for (int i = 0; i < 19; ++i) attempt(breaker, true, kNow);
  EXPECT_EQ(breaker.state(), CircuitState::kClosed) << "19 of 39";
  attempt(breaker, true, kNow);
  EXPECT_EQ(breaker.state(), CircuitState::kOpen) << "20 of 40 reaches 50 %";
}

TEST(CircuitBreaker, OpenCircuitRefusesUntilTheCooldownEnds) {
  auto breaker = opened_breaker();
  EXPECT_FALSE(breaker.allow(kNow + 4'999ms));
  EXPECT_EQ(breaker.retry_in(kNow + 4s), 1s);
  EXPECT_EQ(breaker.state(kNow + 4s), CircuitState::kOpen);
  EXPECT_EQ(breaker.state(kNow + 5s), CircuitState::kHalfOpen) << "ready for probes";
  EXPECT_FALSE(breaker.admits(kNow + 4s));
  EXPECT_TRUE(breaker.admits(kNow + 5s));
  EXPECT_EQ(breaker.state(), CircuitState::kOpen) << "until an attempt comes";
  EXPECT_TRUE(breaker.allow(kNow + 5s));
  EXPECT_EQ(breaker.state(), CircuitState::kHalfOpen);
  EXPECT_EQ(breaker.retry_in(kNow + 5s), 0ms);
}

TEST(CircuitBreaker, HalfOpenAdmitsTheConfiguredNumberOfProbes) {
  auto breaker = opened_breaker();
  std::vector<CircuitBreaker::Permit> probes;
  for (int i = 0; i < 3; ++i) {
    auto permit = breaker.allow(kNow + 5s);
    ASSERT_TRUE(permit) << "probe " << i;
    EXPECT_TRUE(permit->probe);
    probes.push_back(*permit);
  }
  EXPECT_FALSE(breaker.admits(kNow + 5s));
  EXPECT_FALSE(breaker.allow(kNow + 5s)) << "a fourth attempt waits for the probes";
  EXPECT_EQ(breaker.state(), CircuitState::kHalfOpen);
}

TEST(CircuitBreaker, ProbesThatMostlySucceedCloseIt) {
  std::vector<CircuitTransition> seen;
  auto breaker = opened_breaker(&seen);
  const auto a = *breaker.allow(kNow + 5s);
  const auto b = *breaker.allow(kNow + 5s);
  const auto c = *breaker.allow(kNow + 5s);
  breaker.record(a, true, kNow + 6s);
  EXPECT_EQ(breaker.state(), CircuitState::kHalfOpen) << "one failure of three decides nothing";
  breaker.record(b, false, kNow + 6s);
  EXPECT_EQ(breaker.state(), CircuitState::kHalfOpen);
  breaker.record(c, false, kNow + 6s);
  EXPECT_EQ(breaker.state(), CircuitState::kClosed) << "two of three succeeded";
  ASSERT_EQ(seen.size(), 3u);  // opened, half-open, closed
  EXPECT_EQ(seen[2].from, CircuitState::kHalfOpen);
  EXPECT_EQ(seen[2].evidence.attempts, 3);
  EXPECT_EQ(seen[2].evidence.failures, 1);
  EXPECT_EQ(breaker.counts(kNow + 6s).attempts, 0) << "a closed circuit starts a fresh window";
  EXPECT_TRUE(attempt(breaker, false, kNow + 6s));
}

TEST(CircuitBreaker, ClosesAsSoonAsTheRemainingProbesCannotReopenIt) {
  auto breaker = opened_breaker();
  const auto a = *breaker.allow(kNow + 5s);
  const auto b = *breaker.allow(kNow + 5s);
  breaker.record(a, false, kNow + 6s);
  breaker.record(b, false, kNow + 6s);
  EXPECT_EQ(breaker.state(), CircuitState::kClosed) << "2 of 3 succeeded: the third cannot reopen";
}

TEST(CircuitBreaker, ProbesThatFailReopenItForAnotherCooldown) {
  auto breaker = opened_breaker();
  const auto a = *breaker.allow(kNow + 5s);
  const auto b = *breaker.allow(kNow + 5s);
  breaker.record(a, true, kNow + 6s);
  breaker.record(b, true, kNow + 6s);
  EXPECT_EQ(breaker.state(), CircuitState::kOpen) << "two of three failed: 67 % >= 50 %";
  EXPECT_EQ(breaker.times_opened(), 2u);
  EXPECT_FALSE(breaker.allow(kNow + 10s));
  EXPECT_TRUE(breaker.allow(kNow + 11s));
}

TEST(CircuitBreaker, OneProbeDecidesAlone) {
  auto p = policy();
  p.half_open_probes = 1;
  CircuitBreaker breaker(p);
  for (int i = 0; i < 10; ++i) attempt(breaker, true, kNow);
  ASSERT_TRUE(attempt(breaker, false, kNow + 5s));
  EXPECT_EQ(breaker.state(), CircuitState::kClosed);
}

TEST(CircuitBreaker, ResultsOfAttemptsAdmittedBeforeItOpenedCountForNothing) {
  auto breaker = CircuitBreaker(policy());
  const auto straggler = *breaker.allow(kNow);  // a long call that started while closed
  for (int i = 0; i < 10; ++i) attempt(breaker, true, kNow);
  ASSERT_EQ(breaker.state(), CircuitState::kOpen);
  breaker.record(straggler, true, kNow + 4s);
  EXPECT_TRUE(breaker.allow(kNow + 5s)) << "a late failure does not extend the cool-down";
  breaker.record(straggler, false, kNow + 5s);
  EXPECT_EQ(breaker.state(), CircuitState::kHalfOpen) << "nor does a late success count as a probe";
}

TEST(CircuitBreaker, ZeroMinimumFailuresTurnsItOff) {
  auto p = policy();
  p.min_failures = 0;
  CircuitBreaker breaker(p);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(attempt(breaker, true, kNow + i * 1ms));
  EXPECT_EQ(breaker.state(), CircuitState::kClosed);
  EXPECT_FALSE(breaker.policy().enabled());
}

}  // namespace
}  // namespace courier::workers
