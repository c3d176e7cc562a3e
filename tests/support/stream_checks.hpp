// Helpers shared by the streaming and cancellation integration tests: scripted bodies that are
// easy to tell apart, and the counters the gateway's /metrics and /services report.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/test_upstream.hpp"
#include "tests/unit/gateway/prometheus_text.hpp"

namespace courier::testing {

// `count` SSE events `gap` apart (the first at once): "id: k\ndata: <tag> event k\n\n".
inline std::vector<StreamPart> sse_events(std::string_view tag, int count,
                                          std::chrono::milliseconds gap) {
  std::vector<StreamPart> parts;
  for (int k = 0; k < count; ++k) {
    parts.push_back({k == 0 ? std::chrono::milliseconds(0) : gap,
                     "id: " + std::to_string(k) + "\ndata: " + std::string(tag) + " event " +
                         std::to_string(k) + "\n\n"});
  }
  return parts;
}

// `size` bytes naming their stream and part, so that bytes delivered to the wrong client, twice
// or out of order show in a comparison.
inline std::string tagged_bytes(std::string_view tag, int part, std::size_t size) {
  // Appended piece by piece: g++ 12 warns (-Wrestrict, a false positive) on the chained '+'.
  std::string unit(1, '[');
  unit.append(tag).append(1, '/').append(std::to_string(part)).append(1, ']');
  std::string out;
  while (out.size() < size) out += unit;
  out.resize(size);
  return out;
}

inline std::string joined(const std::vector<StreamPart>& parts) {
  std::string out;
  for (const auto& p : parts) out += p.bytes;
  return out;
}

// The sum of every sample named `name` (all label sets), or -1 when there is none.
inline double metric_sum(const std::string& text, std::string_view name) {
  const auto parsed = prometheus_text::parse(text);
  double sum = -1;
  for (const auto& s : parsed.samples) {
    if (s.name == name) sum = (sum < 0 ? 0 : sum) + s.value;
  }
  return sum;
}

// A broker event counter from the gateway's /services JSON: the broker-wide count, or the sum over
// services when the broker counts it per service; -1 when neither reports it.
inline double broker_counter(const nlohmann::json& services, std::string_view name) {
  const std::string key(name);
  double broker_wide = -1;
  if (services.contains("broker") && services["broker"].contains("counters") &&
      services["broker"]["counters"].is_object() && services["broker"]["counters"].contains(key)) {
    broker_wide = services["broker"]["counters"][key].get<double>();
  }
  double per_service = -1;
  if (services.contains("services") && services["services"].is_object()) {
    for (const auto& [svc, entry] : services["services"].items()) {
      if (!entry.is_object() || !entry.contains("counters")) continue;
      const auto& c = entry["counters"];
      if (c.is_object() && c.contains(key)) {
        per_service = (per_service < 0 ? 0 : per_service) + c[key].get<double>();
      }
    }
  }
  return std::max(broker_wide, per_service);
}

// The last field of /proc/sys/net/ipv4/tcp_rmem or tcp_wmem: how far the kernel may grow one
// socket's buffer by itself.
inline std::uint64_t tcp_buffer_max(const char* which) {
  std::ifstream in(std::string("/proc/sys/net/ipv4/") + which);
  std::uint64_t low = 0, initial = 0, high = 0;
  in >> low >> initial >> high;
  return high > 0 ? high : 6u << 20;
}

}  // namespace courier::testing
