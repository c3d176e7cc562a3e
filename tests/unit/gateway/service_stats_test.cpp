#include "gateway/service_stats.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace courier::gateway {
namespace {

TEST(LatencyWindow, NearestRankPercentiles) {
  LatencyWindow w;
  EXPECT_EQ(w.percentile(50), 0);
  for (int i = 1; i <= 100; ++i) w.record(i);
  EXPECT_EQ(w.percentile(50), 50);
  EXPECT_EQ(w.percentile(99), 99);
  EXPECT_EQ(w.percentile(100), 100);
}

TEST(LatencyWindow, KeepsOnlyTheMostRecentSamples) {
  LatencyWindow w;
  for (std::size_t i = 0; i < LatencyWindow::kSize; ++i) w.record(1000);
  for (std::size_t i = 0; i < LatencyWindow::kSize; ++i) w.record(1);
  EXPECT_EQ(w.percentile(99), 1);
}

TEST(ServiceStats, CountsRequestsAndServerErrorsPerService) {
  ServiceStats stats({"rule-engine", "ai-gm"});
  stats.record("rule-engine", 200, 3);
  stats.record("rule-engine", 404, 4);
  stats.record("rule-engine", 503, 5);
  stats.record("unknown", 200, 1);  // ignored
  const auto s = stats.snapshot("rule-engine");
  EXPECT_EQ(s["requests"], 3);
  EXPECT_EQ(s["errors"], 1);
  EXPECT_EQ(s["latency_ms"]["p50"], 4);
  EXPECT_EQ(stats.snapshot("ai-gm")["requests"], 0);
  EXPECT_TRUE(stats.snapshot("ai-gm")["latency_ms"].empty());
}

}  // namespace
}  // namespace courier::gateway
