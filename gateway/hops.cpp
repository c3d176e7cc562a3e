#include "gateway/hops.hpp"

namespace courier::gateway {

std::optional<std::uint64_t> hop_us(const protocol::Stamps& stamps, const Hop& hop) {
  const auto from = stamps[hop.from];
  const auto to = stamps[hop.to];
  if (from == 0 || to == 0 || to < from || to - from > kMaxHopUs) return std::nullopt;
  return to - from;
}

std::array<std::optional<std::uint64_t>, kHops.size()> breakdown(const protocol::Stamps& stamps) {
  std::array<std::optional<std::uint64_t>, kHops.size()> out;
  for (std::size_t i = 0; i < kHops.size(); ++i) out[i] = hop_us(stamps, kHops[i]);
  return out;
}

}  // namespace courier::gateway
