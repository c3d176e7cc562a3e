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
  kStream = 0x08,      // worker -> broker -> gateway: one part of a streamed reply
  kCredit = 0x09,      // gateway -> broker -> worker: bytes of a stream the gateway has written
  kCancel = 0x0A,      // gateway -> broker (-> worker): the client is gone, abandon the request
};

// The part a STREAM message carries. A streamed reply is HEAD, any number of DATA, then exactly
// one END (complete) or ABORT (truncated: the client's response must not look complete).
enum class StreamPart : std::uint8_t {
  kHead = 1,   // payload: a reply envelope with an empty body (status, headers, attempts...)
  kData = 2,   // payload: body bytes, as read from the upstream
  kEnd = 3,    // payload: the last body bytes (may be empty); the body is complete
  kAbort = 4,  // payload: why, as text (at most kMaxAbortReason bytes); the body is truncated
};

// Flow control of a streamed body (docs/protocol.md, "Streams"): a worker may have at most this
// many body bytes (DATA and END payloads) sent and not yet credited by the gateway. The gateway
// grants more with CREDIT as it writes bytes to its client, and may raise the window by
// crediting bytes it has not received yet (at the HEAD).
inline constexpr std::uint32_t kInitialStreamWindow = 64 * 1024;
// One CREDIT grants at most this much; a peer's credit in all is bounded by the same figure.
inline constexpr std::uint32_t kMaxCredit = 1u << 30;
inline constexpr std::size_t kMaxAbortReason = 256;

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
