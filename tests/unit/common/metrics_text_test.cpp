// The scrape-time exposition helpers: histograms from plain counts, buckets that reach the longest
// timeout, /proc parsing that survives odd command names and garbage.
#include "common/metrics_text.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace courier::metrics {
namespace {

using namespace std::chrono_literals;

TEST(LatencyBuckets, ReachTheLongestTimeoutAndStaySorted) {
  EXPECT_EQ(latency_buckets(10s).back(), 60);
  const auto b = latency_buckets(90s);
  EXPECT_EQ(b.back(), 90);
  EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
  const auto big = latency_buckets(600'500ms);
  EXPECT_EQ(big.back(), 601);
  EXPECT_TRUE(std::adjacent_find(big.begin(), big.end()) == big.end());
}

TEST(HistogramData, CountsAValueOnABoundInThatBucketAndRendersCumulatively) {
  HistogramData h({1, 2});
  h.observe(1);
  h.observe(1.5);
  h.observe(5);
  Families out;
  add(family(out, "h_seconds", "help", prometheus::MetricType::Histogram), {{"a", "b"}}, h);
  const auto text = serialize(out);
  EXPECT_NE(text.find("h_seconds_bucket{a=\"b\",le=\"1\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("h_seconds_bucket{a=\"b\",le=\"2\"} 2"), std::string::npos) << text;
  EXPECT_NE(text.find("h_seconds_bucket{a=\"b\",le=\"+Inf\"} 3"), std::string::npos) << text;
  EXPECT_NE(text.find("h_seconds_count{a=\"b\"} 3"), std::string::npos) << text;
}

TEST(ProcStat, ReadsFieldsAfterACommandNameWithSpacesAndParentheses) {
  // Fields 3.. of proc(5); utime 14 = 300, stime 15 = 100, starttime 22 = 1000, vsize 23, rss 24.
  const std::string stat =
      "42 (a) b (c) S 1 1 1 0 -1 0 0 0 0 0 300 100 0 0 20 0 1 0 1000 8192 3 0 0\n";
  Families out;
  add_proc_stat(out, stat, "cpu 1 2 3\nbtime 1700000000\n", 100, 4096);
  const auto text = serialize(out);
  EXPECT_NE(text.find("process_cpu_seconds_total 4"), std::string::npos) << text;
  EXPECT_NE(text.find("process_resident_memory_bytes 12288"), std::string::npos) << text;
  EXPECT_NE(text.find("process_start_time_seconds 1700000010"), std::string::npos) << text;
}

TEST(ProcStat, GarbageAddsNothing) {
  for (const char* stat : {"", "no paren", "1 (x) S 1 2", "1 (x) S a b c d e f g h i j k l m n"}) {
    Families out;
    add_proc_stat(out, stat, "btime 1\n", 100, 4096);
    EXPECT_TRUE(out.empty()) << stat;
  }
}

TEST(ProcessFamilies, NameTheComponentAndReadThisProcess) {
  const auto text = serialize(process_families("broker"));
  EXPECT_NE(text.find("courier_build_info{component=\"broker\""), std::string::npos) << text;
  EXPECT_NE(text.find("process_open_fds "), std::string::npos) << text;
  EXPECT_NE(text.find("process_resident_memory_bytes "), std::string::npos) << text;
}

}  // namespace
}  // namespace courier::metrics
