#include "gateway/service_history.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace courier::gateway {

namespace {

constexpr double kFirstBound = 0.1;  // ms: bucket 1 starts at 10^(1/10) times this
constexpr double kPerDecade = 10;

// Few digits are enough for a plot, and keep the JSON short.
double rounded(double v) { return std::round(v * 1000) / 1000; }

}  // namespace

std::int64_t ServiceHistory::slot_index(Clock::time_point t) {
  const auto since = t.time_since_epoch();
  auto index = std::chrono::duration_cast<std::chrono::seconds>(since).count() / kSlot.count();
  if (since.count() < 0) index = 0;  // a clock before 1970: one slot, not a negative index
  return index;
}

std::size_t ServiceHistory::bucket_of(double ms) {
  if (!(ms > kFirstBound)) return 0;  // also NaN
  const double b = std::floor(kPerDecade * std::log10(ms / kFirstBound));
  return static_cast<std::size_t>(std::clamp(b, 0.0, static_cast<double>(kBuckets - 1)));
}

double ServiceHistory::bucket_lower(std::size_t bucket) {
  return bucket == 0 ? 0 : kFirstBound * std::pow(10.0, static_cast<double>(bucket) / kPerDecade);
}

double ServiceHistory::percentile(const std::array<std::uint32_t, kBuckets>& counts,
                                  std::uint32_t total, double p) {
  if (total == 0) return 0;
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * total;
  double seen = 0;
  for (std::size_t b = 0; b < kBuckets; ++b) {
    if (counts[b] == 0) continue;
    if (seen + counts[b] >= rank) {
      // The open-ended last bucket has no upper bound to interpolate to: its lower bound.
      if (b + 1 == kBuckets) return bucket_lower(b);
      const double lo = bucket_lower(b), hi = bucket_lower(b + 1);
      return lo + (hi - lo) * std::clamp((rank - seen) / counts[b], 0.0, 1.0);
    }
    seen += counts[b];
  }
  return bucket_lower(kBuckets - 1);
}

void ServiceHistory::record(Clock::time_point now, unsigned status, double ms) {
  const auto index = slot_index(now);
  Slot& slot = slots_[static_cast<std::size_t>(index) % kSlots];
  if (slot.index != index) slot = Slot{index};
  // 2^32 requests in 5 s is beyond any gateway; saturate rather than wrap all the same.
  if (slot.requests == UINT32_MAX) return;
  ++slot.requests;
  if (status >= 500) ++slot.errors;
  ++slot.latency[bucket_of(ms)];
}

nlohmann::json ServiceHistory::window(Clock::time_point now) {
  const auto first = slot_index(now) - static_cast<std::int64_t>(kSlots) + 1;
  const double now_s = std::chrono::duration<double>(now.time_since_epoch()).count();
  return {{"start", std::max<std::int64_t>(first, 0) * kSlot.count()},
          {"slot_s", kSlot.count()},
          {"now", rounded(now_s)}};
}

nlohmann::json ServiceHistory::snapshot(Clock::time_point now) const {
  const auto last = slot_index(now);
  const auto first = last - static_cast<std::int64_t>(kSlots) + 1;
  auto requests = nlohmann::json::array();
  auto errors = nlohmann::json::array();
  auto p50 = nlohmann::json::array();
  auto p99 = nlohmann::json::array();
  for (auto index = first; index <= last; ++index) {
    if (index < 0) continue;
    const Slot& slot = slots_[static_cast<std::size_t>(index) % kSlots];
    if (slot.index != index || slot.requests == 0) {
      requests.push_back(0);
      errors.push_back(0);
      p50.push_back(nullptr);
      p99.push_back(nullptr);
      continue;
    }
    requests.push_back(slot.requests);
    errors.push_back(slot.errors);
    p50.push_back(rounded(percentile(slot.latency, slot.requests, 50)));
    p99.push_back(rounded(percentile(slot.latency, slot.requests, 99)));
  }
  return {{"requests", std::move(requests)},
          {"errors", std::move(errors)},
          {"p50_ms", std::move(p50)},
          {"p99_ms", std::move(p99)}};
}

}  // namespace courier::gateway
