// The dashboard's history: 5-second slots over 15 minutes, rolled by the time passed in, with
// latency percentiles estimated from a bucketed histogram.
#include "gateway/service_history.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "gateway/service_stats.hpp"

namespace courier::gateway {
namespace {

using namespace std::chrono_literals;
using Clock = ServiceHistory::Clock;

// A fixed wall-clock time on a slot boundary (2026-12-01T00:00:00Z), so tests never read the clock.
const Clock::time_point kT0{std::chrono::seconds(1796083200)};

TEST(ServiceHistory, EveryBucketHoldsTheValuesItIsNamedFor) {
  EXPECT_EQ(ServiceHistory::bucket_of(0), 0u);
  EXPECT_EQ(ServiceHistory::bucket_of(-1), 0u);
  EXPECT_EQ(ServiceHistory::bucket_of(std::nan("")), 0u);
  EXPECT_EQ(ServiceHistory::bucket_of(1e12), ServiceHistory::kBuckets - 1);
  for (double ms : {0.2, 1.0, 3.7, 42.0, 999.0, 60'000.0, 90'000.0}) {
    const auto b = ServiceHistory::bucket_of(ms);
    EXPECT_LE(ServiceHistory::bucket_lower(b), ms * (1 + 1e-9)) << ms;
    EXPECT_GT(ServiceHistory::bucket_lower(b + 1), ms * (1 - 1e-9)) << ms;
  }
}

TEST(ServiceHistory, PercentilesAreWithinTheBucketWidth) {
  std::array<std::uint32_t, ServiceHistory::kBuckets> counts{};
  EXPECT_EQ(ServiceHistory::percentile(counts, 0, 50), 0);
  // 98 fast requests at 10 ms, 2 slow at 2000 ms: p50 is near 10, p99 near 2000.
  counts[ServiceHistory::bucket_of(10)] = 98;
  counts[ServiceHistory::bucket_of(2000)] = 2;
  const double p50 = ServiceHistory::percentile(counts, 100, 50);
  const double p99 = ServiceHistory::percentile(counts, 100, 99);
  EXPECT_GT(p50, 10 / 1.3);
  EXPECT_LT(p50, 10 * 1.3);
  EXPECT_GT(p99, 2000 / 1.3);
  EXPECT_LT(p99, 2000 * 1.3);
}

TEST(ServiceHistory, CountsLandInTheSlotOfTheirTimeAndTheWindowEndsNow) {
  ServiceHistory h;
  h.record(kT0, 200, 5);
  h.record(kT0 + 1s, 503, 5);
  h.record(kT0 + 5s, 200, 100);  // the next slot
  const auto now = kT0 + 7s;
  const auto w = ServiceHistory::window(now);
  EXPECT_EQ(w["slot_s"], 5);
  EXPECT_DOUBLE_EQ(w["now"].get<double>(), 1796083207.0);
  // 180 slots ending with the one holding `now`: it started at kT0 + 5 s.
  EXPECT_EQ(w["start"].get<std::int64_t>(), 1796083205 - 179 * 5);
  const auto s = h.snapshot(now);
  ASSERT_EQ(s["requests"].size(), ServiceHistory::kSlots);
  ASSERT_EQ(s["p99_ms"].size(), ServiceHistory::kSlots);
  const auto last = ServiceHistory::kSlots - 1;
  EXPECT_EQ(s["requests"][last - 1], 2);
  EXPECT_EQ(s["errors"][last - 1], 1);
  EXPECT_EQ(s["requests"][last], 1);
  EXPECT_EQ(s["errors"][last], 0);
  EXPECT_NEAR(s["p50_ms"][last].get<double>(), 100, 26);
  EXPECT_TRUE(s["p50_ms"][0].is_null());
  EXPECT_EQ(s["requests"][0], 0);
}

TEST(ServiceHistory, SlotsOlderThanFifteenMinutesAreForgottenNotShownAgain) {
  ServiceHistory h;
  h.record(kT0, 200, 5);
  // 15 minutes later the ring has come round to the same slot: it starts again from zero.
  const auto later = kT0 + ServiceHistory::kSlot * ServiceHistory::kSlots;
  auto s = h.snapshot(later - 1s);
  EXPECT_EQ(s["requests"][0], 1);  // still inside the window, as its oldest slot
  s = h.snapshot(later);
  for (const auto& n : s["requests"]) EXPECT_EQ(n, 0);
  h.record(later, 200, 5);
  s = h.snapshot(later);
  EXPECT_EQ(s["requests"][ServiceHistory::kSlots - 1], 1);
}

TEST(ServiceHistory, AStaleSlotReadsAsEmpty) {
  ServiceHistory h;
  h.record(kT0, 200, 5);
  // An hour later nothing has been recorded: no slot of the old hour shows.
  const auto s = h.snapshot(kT0 + 1h);
  for (const auto& n : s["requests"]) EXPECT_EQ(n, 0);
  for (const auto& p : s["p99_ms"]) EXPECT_TRUE(p.is_null());
}

TEST(ServiceStats, HistoryIsOneDocumentForEveryConfiguredService) {
  ServiceStats stats({"rule-engine", "ai-gm"});
  stats.record("rule-engine", 200, 3, kT0);
  stats.record("unknown", 200, 1, kT0);  // ignored
  const auto h = stats.history(kT0 + 1s);
  EXPECT_EQ(h["scope"], "gateway");
  EXPECT_EQ(h["slot_s"], 5);
  ASSERT_EQ(h["services"].size(), 2u);
  EXPECT_EQ(h["services"]["rule-engine"]["requests"].back(), 1);
  EXPECT_EQ(h["services"]["ai-gm"]["requests"].back(), 0);
  // Bounded whatever the traffic: 180 slots of four numbers per service.
  stats.record("rule-engine", 200, 3, kT0);
  EXPECT_LT(stats.history(kT0).dump().size(), 2 * 4 * 180 * 8u);
}

}  // namespace
}  // namespace courier::gateway
