// Courier wire protocol constants: the frame layout shared by gateway, broker and worker.
// docs/protocol.md is the specification; this header is its single source in code.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace courier::protocol {

// Frame 0 of every message. The trailing digit is the protocol version.
inline constexpr std::string_view kTag = "COURIER/1";

enum class Command : std::uint8_t {
  kRequest = 0x01,     // gateway -> broker -> worker
  kReply = 0x02,       // worker -> broker -> gateway
  kReady = 0x03,       // worker -> broker: register (service, capacity, worker id)
  kHeartbeat = 0x04,   // any direction
  kDrain = 0x05,       // worker -> broker: no new work please
  kDisconnect = 0x06,  // worker -> broker: leaving; broker -> worker: unknown, register again
  kStats = 0x07,       // gateway -> broker: request; broker -> gateway: JSON snapshot
};

inline constexpr std::size_t kCorrelationIdSize = 16;
using CorrelationId = std::array<std::uint8_t, kCorrelationIdSize>;

// Bits of the REQUEST flags frame. Retry-safe: idempotent method or Idempotency-Key present. Set
// by the gateway, acted on by the broker, checked by the worker (common/frames.hpp says who
// decides what).
inline constexpr std::uint8_t kFlagRetrySafe = 0x01;

inline constexpr std::size_t kMaxServiceNameSize = 64;
inline constexpr std::size_t kMaxWorkerIdSize = 128;
inline constexpr std::size_t kMaxBrokerIdSize = 128;

// Envelope format version, element 0 of every msgpack envelope.
inline constexpr std::uint8_t kEnvelopeVersion = 1;

// Now as Unix epoch milliseconds: the clock request deadlines are written in, since they travel
// between processes.
inline std::uint64_t unix_ms_now() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace courier::protocol
