// The last 15 minutes of one service's traffic as this gateway saw it, in 5-second slots (count,
// 5xx count, latency histogram), for the dashboard's plots. Pure: the caller passes the time.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>

namespace courier::gateway {

class ServiceHistory {
 public:
  using Clock = std::chrono::system_clock;  // the plots' time axis is wall-clock time
  static constexpr std::chrono::seconds kSlot{5};
  static constexpr std::size_t kSlots = 180;  // 15 minutes
  // Latency buckets: 10 per decade from 0.1 ms (each about 26 % wide), the last one open-ended
  // (from about 800 s): percentiles are estimated within a bucket, so to about a quarter.
  static constexpr std::size_t kBuckets = 70;

  void record(Clock::time_point now, unsigned status, double ms);

  // The window that ends with the slot holding `now`: {"start": unix seconds of its first slot,
  // "slot_s": 5, "now": unix seconds}. A slot's rate is its count over slot_s; the last slot's
  // (still filling) over now - its start.
  static nlohmann::json window(Clock::time_point now);
  // That window's slots, oldest first, every one present (no traffic: 0 and null):
  // {"requests": [...], "errors": [...] (status >= 500), "p50_ms": [...], "p99_ms": [...]}.
  nlohmann::json snapshot(Clock::time_point now) const;

  // The bucket `ms` falls in, and the estimate of the `p` (0..100) percentile of `counts`:
  // linear within the bucket holding the rank; 0 when empty. Exposed for the tests.
  static std::size_t bucket_of(double ms);
  static double bucket_lower(std::size_t bucket);
  static double percentile(const std::array<std::uint32_t, kBuckets>& counts, std::uint32_t total,
                           double p);

 private:
  struct Slot {
    std::int64_t index = -1;  // which kSlot-long stretch since the epoch this slot holds
    std::uint32_t requests = 0;
    std::uint32_t errors = 0;
    std::array<std::uint32_t, kBuckets> latency{};
  };
  static std::int64_t slot_index(Clock::time_point t);

  std::array<Slot, kSlots> slots_{};
};

}  // namespace courier::gateway
