// The per-hop breakdown of a reply's STAMPS, and its histograms in the gateway's /metrics.
#include "gateway/hops.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "gateway/metrics.hpp"
#include "tests/unit/gateway/prometheus_text.hpp"

namespace courier::gateway {
namespace {

namespace pt = courier::testing::prometheus_text;
using protocol::Stamps;

// A round trip whose instants are 1 s after the epoch plus (slot + 1) * 10 µs, except the
// upstream, which takes 5 ms.
Stamps path_stamps() {
  Stamps s;
  std::uint64_t t = 1'000'000;
  for (std::size_t i = 0; i < protocol::kStampCount; ++i) {
    t += i == static_cast<std::size_t>(Stamp::kUpstreamFirstByte) ? 5'000 : 10;
    s.us[i] = t;
  }
  return s;
}

TEST(Hops, NamesAreUniqueAndConsecutiveHopsTileTheRoundTrip) {
  std::set<std::string_view> names;
  for (const auto& hop : kHops) EXPECT_TRUE(names.insert(hop.name).second) << hop.name;
  // Every hop but "total" starts where the one before it ended; "total" spans them all.
  for (std::size_t i = 1; i + 1 < kHops.size(); ++i) EXPECT_EQ(kHops[i].from, kHops[i - 1].to);
  EXPECT_EQ(kHops.front().from, Stamp::kGatewayIn);
  EXPECT_EQ(kHops[kHops.size() - 2].to, Stamp::kGatewayOut);
  EXPECT_EQ(kHops.back().name, "total");
}

TEST(Hops, BreakdownSumsToTheTotal) {
  const auto hops = breakdown(path_stamps());
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i + 1 < kHops.size(); ++i) {
    ASSERT_TRUE(hops[i].has_value()) << kHops[i].name;
    sum += *hops[i];
  }
  EXPECT_EQ(hops[5], 5'000u);  // upstream
  EXPECT_EQ(hops[0], 10u);     // gateway
  ASSERT_TRUE(hops.back().has_value());
  EXPECT_EQ(sum, *hops.back());
}

TEST(Hops, MissingReversedOrImplausibleInstantsGiveNoDuration) {
  auto s = path_stamps();
  s[Stamp::kBrokerIn] = 0;  // an old broker did not stamp
  auto hops = breakdown(s);
  EXPECT_FALSE(hops[1].has_value());  // gateway_to_broker
  EXPECT_FALSE(hops[2].has_value());  // broker
  EXPECT_TRUE(hops[3].has_value());
  EXPECT_TRUE(hops.back().has_value());

  s = path_stamps();
  s[Stamp::kWorkerIn] = s[Stamp::kBrokerOut] - 1;  // a worker clock behind the broker's
  hops = breakdown(s);
  EXPECT_FALSE(hops[3].has_value());
  EXPECT_TRUE(hops[4].has_value());

  s = path_stamps();
  s[Stamp::kWorkerOut] = s[Stamp::kUpstreamFirstByte] + kMaxHopUs + 1;
  EXPECT_FALSE(breakdown(s)[6].has_value());
  s[Stamp::kWorkerOut] = s[Stamp::kUpstreamFirstByte] + kMaxHopUs;
  EXPECT_EQ(breakdown(s)[6], kMaxHopUs);

  s.us.fill(~0ull);  // forged: every slot at the end of time
  for (const auto& d : breakdown(s)) EXPECT_EQ(d, 0u);
  s.us.fill(0);
  for (const auto& d : breakdown(s)) EXPECT_FALSE(d.has_value());
}

TEST(Hops, MetricsObserveEachHopAndCountTheUnusable) {
  GatewayMetrics m;
  m.observe_hops("ai-gm", path_stamps());
  m.observe_hops("ai-gm", path_stamps());
  auto partial = path_stamps();
  partial[Stamp::kBrokerReplyIn] = 0;
  m.observe_hops("ai-gm", partial);
  const auto text = m.render({}, {});
  const auto parsed = pt::parse(text);
  ASSERT_EQ(parsed.error, "") << text;
  EXPECT_EQ(parsed.types.at("courier_gateway_hop_seconds"), "histogram");
  EXPECT_EQ(parsed.value("courier_gateway_hop_seconds_count",
                         {{"service", "ai-gm"}, {"hop", "upstream"}}),
            3);
  EXPECT_EQ(parsed.value("courier_gateway_hop_seconds_count",
                         {{"service", "ai-gm"}, {"hop", "worker_to_broker"}}),
            2);
  EXPECT_EQ(parsed.value("courier_gateway_hop_seconds_count",
                         {{"service", "ai-gm"}, {"hop", "broker_reply"}}),
            2);
  EXPECT_EQ(parsed.value("courier_gateway_hop_stamps_unusable_total", {{"service", "ai-gm"}}), 2);
  // 10 µs hops fall in the first bucket; the 5 ms upstream does not.
  EXPECT_EQ(parsed.value("courier_gateway_hop_seconds_bucket",
                         {{"service", "ai-gm"}, {"hop", "gateway"}, {"le", "1e-05"}}),
            3);
  EXPECT_EQ(parsed.value("courier_gateway_hop_seconds_bucket",
                         {{"service", "ai-gm"}, {"hop", "upstream"}, {"le", "0.001"}}),
            0);
  const auto sum =
      parsed.value("courier_gateway_hop_seconds_sum", {{"service", "ai-gm"}, {"hop", "upstream"}});
  ASSERT_TRUE(sum.has_value());
  EXPECT_NEAR(*sum, 0.015, 1e-9);
}

TEST(Hops, BucketsStartAtTenMicrosecondsAndReachTheLatencyTop) {
  const std::vector<double> latency = {0.0005, 0.001, 0.01, 1, 95};
  const auto b = hop_buckets(latency);
  EXPECT_EQ(b.front(), 0.00001);
  EXPECT_EQ(b.back(), 95);
  for (std::size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]);
}

}  // namespace
}  // namespace courier::gateway
