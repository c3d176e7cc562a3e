// The per-hop latency breakdown of a request whose reply came back with STAMPS
// (common/stamps.hpp): each hop is the time between two consecutive instants of the path, plus
// the whole round trip. Instants written by different processes compare only as well as their
// clocks agree: exact on one host (one CLOCK_REALTIME), as good as NTP across hosts.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "common/stamps.hpp"

namespace courier::gateway {

struct Hop {
  std::string_view name;  // the `hop` label of courier_gateway_hop_seconds
  protocol::Stamp from;
  protocol::Stamp to;
};

using protocol::Stamp;
inline constexpr std::array<Hop, 12> kHops = {{
    {"gateway", Stamp::kGatewayIn, Stamp::kGatewaySent},
    {"gateway_to_broker", Stamp::kGatewaySent, Stamp::kBrokerIn},
    {"broker", Stamp::kBrokerIn, Stamp::kBrokerOut},
    {"broker_to_worker", Stamp::kBrokerOut, Stamp::kWorkerIn},
    {"worker_before_upstream", Stamp::kWorkerIn, Stamp::kUpstreamSent},
    {"upstream", Stamp::kUpstreamSent, Stamp::kUpstreamFirstByte},
    {"worker_after_upstream", Stamp::kUpstreamFirstByte, Stamp::kWorkerOut},
    {"worker_to_broker", Stamp::kWorkerOut, Stamp::kBrokerReplyIn},
    {"broker_reply", Stamp::kBrokerReplyIn, Stamp::kBrokerReplyOut},
    {"broker_to_gateway", Stamp::kBrokerReplyOut, Stamp::kGatewayReplyIn},
    {"gateway_reply", Stamp::kGatewayReplyIn, Stamp::kGatewayOut},
    {"total", Stamp::kGatewayIn, Stamp::kGatewayOut},
}};

// A longer hop is not believed (a peer's clock, or a forged frame): an hour.
inline constexpr std::uint64_t kMaxHopUs = 3'600'000'000ull;

// The hop's duration in µs, or nullopt when either instant is missing (0), the two are out of
// order, or the gap is over kMaxHopUs. The slots come from other processes: never trusted
// further than that.
std::optional<std::uint64_t> hop_us(const protocol::Stamps& stamps, const Hop& hop);

// Every hop's duration, as hop_us gives it, in kHops order.
std::array<std::optional<std::uint64_t>, kHops.size()> breakdown(const protocol::Stamps& stamps);

}  // namespace courier::gateway
