// Per-hop timestamps: the optional STAMPS frame that ends a REQUEST and a REPLY
// (docs/protocol.md, "Stamps"). Each process on the path writes the instants it owns into its
// slots, as Unix epoch microseconds, and the gateway turns the whole set into one duration per
// hop (gateway/hops.hpp). The broker stamps without decoding any envelope: the frame has a fixed
// size and fixed slots.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <zmq.hpp>

namespace courier::protocol {

// The instants of one request's round trip, in path order. A slot left 0 was not stamped (no
// upstream attempt was made, or the instant is still ahead: the gateway writes its last two
// slots when the reply is back).
enum class Stamp : std::uint8_t {
  kGatewayIn,          // the request was read whole from the client
  kGatewaySent,        // its envelope was handed to the broker link
  kBrokerIn,           // the broker took the REQUEST
  kBrokerOut,          // ... and dispatched it to a worker (after any wait in its queue)
  kWorkerIn,           // the worker took it
  kUpstreamSent,       // the request (the last attempt's) was written to the upstream
  kUpstreamFirstByte,  // that attempt's response head was read
  kWorkerOut,          // the worker handed the REPLY to its broker link
  kBrokerReplyIn,      // the broker took the REPLY
  kBrokerReplyOut,     // ... and forwarded it to the gateway
  kGatewayReplyIn,     // the gateway's broker link took it
  kGatewayOut,         // the response was written to the client
};
inline constexpr std::size_t kStampCount = 12;
// The frame: kStampCount big-endian u64 slots.
inline constexpr std::size_t kStampsFrameSize = kStampCount * 8;

struct Stamps {
  std::array<std::uint64_t, kStampCount> us{};

  std::uint64_t& operator[](Stamp s) { return us[static_cast<std::size_t>(s)]; }
  std::uint64_t operator[](Stamp s) const { return us[static_cast<std::size_t>(s)]; }
  friend bool operator==(const Stamps&, const Stamps&) = default;
};

// Now as Unix epoch microseconds (CLOCK_REALTIME: one clock for every process of a host).
inline std::uint64_t unix_us_now() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

zmq::message_t stamps_frame(const Stamps& stamps);
// `frame` must be kStampsFrameSize bytes (parse_request and parse_reply check it).
Stamps read_stamps(const zmq::message_t& frame);
// Writes one slot of a STAMPS frame in place (the broker's way: the frame it received is its own).
// A frame of another size is left alone.
void write_stamp(zmq::message_t& frame, Stamp slot, std::uint64_t us);

}  // namespace courier::protocol
