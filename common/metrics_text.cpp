#include "common/metrics_text.hpp"

#include <dirent.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "common/version.hpp"

namespace courier::metrics {

prometheus::MetricFamily& family(Families& out, std::string name, std::string help,
                                 prometheus::MetricType type) {
  out.push_back({std::move(name), std::move(help), type, {}});
  return out.back();
}

void add(prometheus::MetricFamily& family, Labels labels, double value) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  if (family.type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
}

HistogramData::HistogramData(std::vector<double> upper_bounds)
    : bounds(std::move(upper_bounds)), counts(bounds.size() + 1, 0) {}

void HistogramData::observe(double value) {
  const auto it = std::lower_bound(bounds.begin(), bounds.end(), value);  // le: value <= bound
  ++counts[static_cast<std::size_t>(it - bounds.begin())];
  sum += value;
  ++count;
}

void add(prometheus::MetricFamily& family, Labels labels, const HistogramData& h) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.histogram.sample_count = h.count;
  metric.histogram.sample_sum = h.sum;
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < h.counts.size(); ++i) {
    cumulative += h.counts[i];
    metric.histogram.bucket.push_back(
        {cumulative, i < h.bounds.size() ? h.bounds[i] : std::numeric_limits<double>::infinity()});
  }
  family.metric.push_back(std::move(metric));
}

std::vector<double> latency_buckets(std::chrono::milliseconds largest) {
  std::vector<double> out = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                             0.5,   1,      2.5,   5,    10,    30,   60};
  // Whole seconds, rounded up: 90 s -> a 90 bucket, 90.5 s -> 91.
  const double top = std::ceil(std::chrono::duration<double>(largest).count());
  if (top > out.back()) {
    // A step between 60 and a far larger top keeps the long tail readable.
    for (double step = 120; step < top; step *= 2) out.push_back(step);
    out.push_back(top);
  }
  return out;
}

namespace {

std::string read_file(const char* path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::size_t open_fds() {
  std::size_t count = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  return count > 0 ? count - 1 : 0;  // not the descriptor opendir itself holds
}

template <typename T>
bool parse_number(std::string_view text, T& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

void add_proc_stat(Families& out, std::string_view self_stat, std::string_view system_stat,
                   long clock_ticks, long page_size) {
  using prometheus::MetricType;
  if (clock_ticks <= 0 || page_size <= 0) return;
  // The command name is in parentheses and may hold anything: fields count from the last ')'.
  const auto paren = self_stat.rfind(')');
  if (paren == std::string_view::npos) return;
  std::vector<std::string_view> fields;  // fields[0] is field 3 of proc(5): the state
  for (std::size_t i = paren + 1; i < self_stat.size();) {
    while (i < self_stat.size() && (self_stat[i] == ' ' || self_stat[i] == '\n')) ++i;
    const auto end = self_stat.find_first_of(" \n", i);
    const auto stop = end == std::string_view::npos ? self_stat.size() : end;
    if (stop > i) fields.push_back(self_stat.substr(i, stop - i));
    i = stop;
  }
  const auto field = [&](std::size_t number, std::uint64_t& value) {  // proc(5) numbering
    return number >= 3 && number - 3 < fields.size() && parse_number(fields[number - 3], value);
  };
  std::uint64_t utime = 0, stime = 0, start = 0, vsize = 0, rss = 0;
  if (!field(14, utime) || !field(15, stime) || !field(22, start) || !field(23, vsize) ||
      !field(24, rss)) {
    return;
  }
  const double ticks = static_cast<double>(clock_ticks);
  add(family(out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds",
             MetricType::Counter),
      {}, static_cast<double>(utime + stime) / ticks);
  add(family(out, "process_resident_memory_bytes", "Resident memory size in bytes",
             MetricType::Gauge),
      {}, static_cast<double>(rss) * static_cast<double>(page_size));
  add(family(out, "process_virtual_memory_bytes", "Virtual memory size in bytes",
             MetricType::Gauge),
      {}, static_cast<double>(vsize));
  // The start time counts ticks from boot: /proc/stat's btime says when that was.
  const auto btime = system_stat.find("btime ");
  if (btime == std::string_view::npos) return;
  const auto line = system_stat.substr(btime + 6, system_stat.find('\n', btime) - btime - 6);
  std::uint64_t boot = 0;
  if (!parse_number(line, boot)) return;
  add(family(out, "process_start_time_seconds",
             "Start time of the process since unix epoch in seconds", MetricType::Gauge),
      {}, static_cast<double>(boot) + static_cast<double>(start) / ticks);
}

Families process_families(std::string_view component) {
  using prometheus::MetricType;
  Families out;
  add(family(out, "courier_build_info",
             "1, labelled with the component, the version and the source revision",
             MetricType::Gauge),
      {{"component", std::string(component)},
       {"revision", std::string(revision())},
       {"version", std::string(version())}},
      1);
  add_proc_stat(out, read_file("/proc/self/stat"), read_file("/proc/stat"), ::sysconf(_SC_CLK_TCK),
                ::sysconf(_SC_PAGESIZE));
  add(family(out, "process_open_fds", "Number of open file descriptors", MetricType::Gauge), {},
      static_cast<double>(open_fds()));
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    add(family(out, "process_max_fds", "Maximum number of open file descriptors",
               MetricType::Gauge),
        {}, static_cast<double>(limit.rlim_cur));
  }
  return out;
}

std::string serialize(const Families& families) {
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace courier::metrics
