#include "workers/retry_policy.hpp"

#include <gtest/gtest.h>

#include <set>

#include "common/http_headers.hpp"

namespace courier::workers {
namespace {

using namespace std::chrono_literals;

const TimePoint kNow = TimePoint{} + 1h;
const TimePoint kFarDeadline = kNow + 60s;
const RetryPolicy kPolicy{3, 100ms, 1'000ms};

FinishedAttempt attempt(AttemptOutcome outcome, int attempts_made = 1, bool retry_safe = true) {
  return {outcome, attempts_made, retry_safe, std::nullopt};
}

TEST(RetryPolicy, RetriesEachRetryableOutcomeForRetrySafeRequests) {
  std::mt19937_64 rng(1);
  for (auto outcome : {AttemptOutcome::kConnectFailed, AttemptOutcome::kResetBeforeResponse,
                       AttemptOutcome::kTimeout, AttemptOutcome::kRetryableStatus}) {
    EXPECT_TRUE(decide_retry(kPolicy, attempt(outcome), kNow, kFarDeadline, rng).retry)
        << to_string(outcome);
  }
}

TEST(RetryPolicy, NeverRetriesFinalOutcomes) {
  std::mt19937_64 rng(1);
  for (auto outcome :
       {AttemptOutcome::kSuccess, AttemptOutcome::kOtherStatus, AttemptOutcome::kBadResponse}) {
    EXPECT_FALSE(decide_retry(kPolicy, attempt(outcome), kNow, kFarDeadline, rng).retry)
        << to_string(outcome);
  }
}

TEST(RetryPolicy, DoesNotRetryPostAfterUpstreamSawIt) {
  std::mt19937_64 rng(1);
  for (auto outcome : {AttemptOutcome::kResetBeforeResponse, AttemptOutcome::kTimeout,
                       AttemptOutcome::kRetryableStatus}) {
    const auto decision =
        decide_retry(kPolicy, attempt(outcome, 1, false), kNow, kFarDeadline, rng);
    EXPECT_FALSE(decision.retry) << to_string(outcome);
    EXPECT_STREQ(decision.reason, "request is not retry-safe");
  }
}

TEST(RetryPolicy, RetriesPostThatNeverReachedUpstream) {
  std::mt19937_64 rng(1);
  EXPECT_TRUE(decide_retry(kPolicy, attempt(AttemptOutcome::kConnectFailed, 1, false), kNow,
                           kFarDeadline, rng)
                  .retry);
}

TEST(RetryPolicy, RetriesPostWithIdempotencyKey) {
  EXPECT_FALSE(is_retry_safe("POST", {{"Content-Type", "application/json"}}));
  EXPECT_TRUE(is_retry_safe("POST", {{"idempotency-key", "abc"}}));
  EXPECT_TRUE(is_retry_safe("PATCH", {{"Idempotency-Key", "abc"}}));
}

TEST(RetryPolicy, TreatsIdempotentMethodsAsRetrySafe) {
  for (auto method : {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"}) {
    EXPECT_TRUE(is_retry_safe(method, {})) << method;
  }
  EXPECT_FALSE(is_retry_safe("PATCH", {}));
  EXPECT_FALSE(is_retry_safe("get", {}));  // methods are case-sensitive
}

TEST(RetryPolicy, StopsAtMaxAttempts) {
  std::mt19937_64 rng(1);
  EXPECT_TRUE(
      decide_retry(kPolicy, attempt(AttemptOutcome::kRetryableStatus, 2), kNow, kFarDeadline, rng)
          .retry);
  const auto decision =
      decide_retry(kPolicy, attempt(AttemptOutcome::kRetryableStatus, 3), kNow, kFarDeadline, rng);
  EXPECT_FALSE(decision.retry);
  EXPECT_STREQ(decision.reason, "attempts exhausted");
}

TEST(RetryPolicy, NeverWaitsPastDeadline) {
  std::mt19937_64 rng(1);
  // The first backoff is exactly min_wait (100 ms).
  EXPECT_TRUE(
      decide_retry(kPolicy, attempt(AttemptOutcome::kTimeout), kNow, kNow + 101ms, rng).retry);
  const auto decision =
      decide_retry(kPolicy, attempt(AttemptOutcome::kTimeout), kNow, kNow + 100ms, rng);
  EXPECT_FALSE(decision.retry);
  EXPECT_STREQ(decision.reason, "no time left before deadline");
}

TEST(RetryPolicy, BackoffStaysWithinBounds) {
  std::mt19937_64 rng(42);
  const RetryPolicy policy{10, 100ms, 1'000ms};
  for (int attempts_made = 1; attempts_made <= 40; ++attempts_made) {
    // The ceiling doubles: 100, 200, 400, 800, then max_wait.
    const auto ceiling =
        std::min<milliseconds>(1'000ms, 100ms * (1 << std::min(attempts_made - 1, 10)));
    for (int i = 0; i < 200; ++i) {
      const auto wait = backoff_wait(policy, attempts_made, rng);
      ASSERT_GE(wait, 100ms);
      ASSERT_LE(wait, ceiling) << "after attempt " << attempts_made;
    }
  }
}

TEST(RetryPolicy, BackoffJittersOnceCeilingRises) {
  std::mt19937_64 rng(7);
  const RetryPolicy policy{10, 100ms, 10'000ms};
  EXPECT_EQ(backoff_wait(policy, 1, rng), 100ms);
  std::set<milliseconds::rep> seen;
  for (int i = 0; i < 50; ++i) seen.insert(backoff_wait(policy, 4, rng).count());
  EXPECT_GT(seen.size(), 10u);
}

TEST(RetryPolicy, BackoffIsReproducibleWithSameSeed) {
  std::mt19937_64 a(99), b(99);
  for (int n = 1; n < 6; ++n) EXPECT_EQ(backoff_wait(kPolicy, n, a), backoff_wait(kPolicy, n, b));
}

TEST(RetryPolicy, HonoursRetryAfter) {
  std::mt19937_64 rng(1);
  auto with_retry_after = attempt(AttemptOutcome::kRetryableStatus);
  with_retry_after.retry_after = 700ms;
  auto decision = decide_retry(kPolicy, with_retry_after, kNow, kFarDeadline, rng);
  EXPECT_TRUE(decision.retry);
  EXPECT_EQ(decision.wait, 700ms);

  with_retry_after.retry_after = 1'000ms;  // exactly max_wait
  decision = decide_retry(kPolicy, with_retry_after, kNow, kFarDeadline, rng);
  EXPECT_TRUE(decision.retry);
  EXPECT_EQ(decision.wait, 1'000ms);

  with_retry_after.retry_after = 10ms;  // never below the backoff
  decision = decide_retry(kPolicy, with_retry_after, kNow, kFarDeadline, rng);
  EXPECT_EQ(decision.wait, 100ms);
}

TEST(RetryPolicy, NeverRetriesSoonerThanRetryAfterEvenBeyondMaxWait) {
  std::mt19937_64 rng(1);
  auto with_retry_after = attempt(AttemptOutcome::kRetryableStatus);
  with_retry_after.retry_after = 5s;  // max_wait is 1 s: waiting less would ignore the upstream
  const auto decision = decide_retry(kPolicy, with_retry_after, kNow, kFarDeadline, rng);
  EXPECT_FALSE(decision.retry);
  EXPECT_STREQ(decision.reason, "retry-after beyond max wait");
}

TEST(RetryPolicy, DoesNotRetryWhenRetryAfterIsBeyondDeadline) {
  std::mt19937_64 rng(1);
  auto with_retry_after = attempt(AttemptOutcome::kRetryableStatus);
  with_retry_after.retry_after = 900ms;
  const auto decision = decide_retry(kPolicy, with_retry_after, kNow, kNow + 800ms, rng);
  EXPECT_FALSE(decision.retry);
  EXPECT_STREQ(decision.reason, "retry-after beyond deadline");
}

TEST(RetryPolicy, ClassifiesOnlyTryLaterStatusesAsRetryable) {
  EXPECT_EQ(classify_status(429), AttemptOutcome::kRetryableStatus);
  EXPECT_EQ(classify_status(502), AttemptOutcome::kRetryableStatus);
  EXPECT_EQ(classify_status(503), AttemptOutcome::kRetryableStatus);
  EXPECT_EQ(classify_status(504), AttemptOutcome::kRetryableStatus);
  EXPECT_EQ(classify_status(500), AttemptOutcome::kOtherStatus);
  EXPECT_EQ(classify_status(501), AttemptOutcome::kOtherStatus);
  EXPECT_EQ(classify_status(200), AttemptOutcome::kOtherStatus);
}

TEST(RetryAfter, ParsesDeltaSeconds) {
  const auto now = std::chrono::system_clock::now();
  EXPECT_EQ(parse_retry_after("120", now), 120s);
  EXPECT_EQ(parse_retry_after(" 0 ", now), 0s);
  EXPECT_EQ(parse_retry_after("", now), std::nullopt);
  EXPECT_EQ(parse_retry_after("-1", now), std::nullopt);
  EXPECT_EQ(parse_retry_after("1.5", now), std::nullopt);
  EXPECT_EQ(parse_retry_after("99999999999999999999", now), std::nullopt);
}

TEST(RetryAfter, ParsesImfFixdate) {
  // 1994-11-06 08:49:37 UTC is 784111777 seconds after the epoch.
  const auto now = std::chrono::system_clock::time_point{} + 784111777s - 30s;
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), 30s);
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now), 0s);  // past: now
  EXPECT_EQ(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), std::nullopt);
  EXPECT_EQ(parse_retry_after("Sun, 31 Feb 1994 08:49:37 GMT", now), std::nullopt);
}

TEST(RetryBudget, BudgetAllowsFloorThenRatio) {
  RetryBudget budget(0.2, 3);
  for (int i = 0; i < 10; ++i) budget.request_started();
  // 0.2 x 10 = 2 is below the floor of 3.
  EXPECT_TRUE(budget.try_acquire_retry());
  EXPECT_TRUE(budget.try_acquire_retry());
  EXPECT_TRUE(budget.try_acquire_retry());
  EXPECT_FALSE(budget.try_acquire_retry());

  for (int i = 0; i < 10; ++i) budget.request_started();  // 20 active: 0.2 x 20 = 4
  EXPECT_TRUE(budget.try_acquire_retry());
  EXPECT_FALSE(budget.try_acquire_retry());

  budget.release_retry();
  EXPECT_EQ(budget.retries_in_flight(), 3);
  EXPECT_TRUE(budget.try_acquire_retry());
}

TEST(RetryBudget, NeverGoesNegative) {
  RetryBudget budget(0.2, 0);
  budget.release_retry();
  budget.request_finished();
  EXPECT_EQ(budget.retries_in_flight(), 0);
  EXPECT_EQ(budget.active_requests(), 0);
  EXPECT_FALSE(budget.try_acquire_retry());
}

}  // namespace
}  // namespace courier::workers
