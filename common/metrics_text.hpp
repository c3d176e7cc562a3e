// Prometheus exposition built from values read at scrape time (snapshots of state another thread
// owns), plus the series every Courier process shows: courier_build_info and process_* metrics.
#pragma once

#include <prometheus/metric_family.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace courier::metrics {

inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

using Families = std::vector<prometheus::MetricFamily>;
using Labels = std::vector<prometheus::ClientMetric::Label>;

// A family appended to `out`; add series to the reference it returns before adding the next one.
prometheus::MetricFamily& family(Families& out, std::string name, std::string help,
                                 prometheus::MetricType type);
void add(prometheus::MetricFamily& family, Labels labels, double value);  // counter or gauge

// A histogram's state as plain numbers, for a snapshot: bucket counts are per bucket (not
// cumulative), the last one for values above every bound.
struct HistogramData {
  std::vector<double> bounds;
  std::vector<std::uint64_t> counts;  // bounds.size() + 1
  double sum = 0;
  std::uint64_t count = 0;

  explicit HistogramData(std::vector<double> upper_bounds = {});
  void observe(double value);
};
void add(prometheus::MetricFamily& family, Labels labels, const HistogramData& histogram);

// Latency bucket bounds in seconds, from 1 ms up to at least `largest` (the longest configured
// timeout), so that the slowest requests a setting allows still fall in a finite bucket.
std::vector<double> latency_buckets(std::chrono::milliseconds largest);

// courier_build_info{component,version,revision} 1 and, read from /proc/self, the standard
// process_* series (CPU seconds, resident and virtual memory, open and max descriptors, start
// time), as the Prometheus client libraries name them.
Families process_families(std::string_view component);

// The process metrics from the texts of /proc/self/stat and /proc/stat; `clock_ticks` and
// `page_size` as sysconf gives them. Pure, for tests; malformed text adds nothing.
void add_proc_stat(Families& out, std::string_view self_stat, std::string_view system_stat,
                   long clock_ticks, long page_size);

std::string serialize(const Families& families);

}  // namespace courier::metrics
