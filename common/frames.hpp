// Building and validating the ZeroMQ frames of the Courier protocol (docs/protocol.md).
// Parsing never decodes the msgpack envelope: the broker forwards that frame untouched.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/envelope.hpp"
#include "common/protocol.hpp"
#include "common/stamps.hpp"

namespace courier::protocol {

using Frames = std::vector<zmq::message_t>;

enum class FrameError {
  kTooFewFrames = 1,
  kTooManyFrames,
  kBadTag,
  kUnknownCommand,
  kBadField,
};
const std::error_category& frame_category();
std::error_code make_error_code(FrameError e);

// Fields of a REQUEST before its envelope frame. `service` views its source (a frame, a config,
// an envelope), which must outlive the header.
struct RequestHeader {
  std::string_view service;
  CorrelationId id{};
  std::uint64_t deadline_ms = 0;  // Unix epoch milliseconds
  std::uint8_t flags = 0;
  // The optional STAMPS frame after the envelope (docs/protocol.md, "Stamps"): present or not,
  // it is carried on as it came, with the stamps of whoever passes it on.
  std::optional<Stamps> stamps;
};

struct ReadyHeader {
  std::string_view service;
  std::uint32_t capacity = 0;
  std::string_view worker_id;
};

// The fields of a STREAM message before its payload. `until_ms` is the latest the stream may
// still run (Unix epoch ms, the worker's overall cap): the broker holds the request that long.
struct StreamHeader {
  CorrelationId id{};
  StreamPart part = StreamPart::kData;
  std::uint64_t until_ms = 0;
};

// Frame counts after the tag and command frames.
inline constexpr std::size_t kRequestFrames = 7;  // tag cmd service id deadline flags envelope
inline constexpr std::size_t kReplyFrames = 4;    // tag cmd id envelope
inline constexpr std::size_t kEnvelopeIndex = 6;  // within a REQUEST, relative to the tag
// REQUEST and REPLY may end with one more frame, STAMPS (kStampsFrameSize bytes).
inline constexpr std::size_t kRequestStampsIndex = 7;
inline constexpr std::size_t kReplyStampsIndex = 4;
inline constexpr std::size_t kStreamFrames = 6;  // tag cmd id part until payload
inline constexpr std::size_t kStreamPayloadIndex = 5;
inline constexpr std::size_t kCreditFrames = 4;  // tag cmd id bytes
inline constexpr std::size_t kCancelFrames = 3;  // tag cmd id

// Reads the tag and command at frames[offset], offset+1. offset skips ROUTER identity frames.
std::error_code parse_command(const Frames& frames, std::size_t offset, Command& out);
std::error_code parse_request(const Frames& frames, std::size_t offset, RequestHeader& out);
// A REPLY's STAMPS frame, when it has one, is frames[offset + kReplyStampsIndex]
// (reply_has_stamps).
std::error_code parse_reply(const Frames& frames, std::size_t offset, CorrelationId& out);
inline bool reply_has_stamps(const Frames& frames, std::size_t offset) {
  return frames.size() == offset + kReplyFrames + 1;
}
std::error_code parse_ready(const Frames& frames, std::size_t offset, ReadyHeader& out);
// STATS from a gateway carries an id; from the broker, an id and a JSON body.
std::error_code parse_stats(const Frames& frames, std::size_t offset, CorrelationId& out);
// STREAM: the part must be known, an ABORT's reason at most kMaxAbortReason bytes. The payload
// is not looked at (the broker forwards it untouched).
std::error_code parse_stream(const Frames& frames, std::size_t offset, StreamHeader& out);
// CREDIT: `bytes` is 1..kMaxCredit.
std::error_code parse_credit(const Frames& frames, std::size_t offset, CorrelationId& id,
                             std::uint32_t& bytes);
std::error_code parse_cancel(const Frames& frames, std::size_t offset, CorrelationId& id);

// Retry safety, one decision with one owner per use (docs/protocol.md, "flags"):
// - is_retry_safe() (common/http_headers) is the decision: a function of the request's method and
//   headers alone, so whoever holds the request reaches the same answer.
// - The gateway owns the flag: request_header() sets it, once, from the envelope it built.
// - The broker never decodes the envelope and acts on the flag alone (requeue after a worker loss).
// - The worker executes the envelope, so it does not take the flag's word for it: it refuses a
//   request whose flag claims more than the envelope warrants (request_mismatch()), and decides
//   upstream retries from the envelope through is_retry_safe() (workers/forwarder.cpp).
std::uint8_t request_flags(const RequestEnvelope& request);

// The header of the REQUEST that carries `request`: the one place its fields are derived from a
// request (service, id and deadline copied, flags from request_flags). `service` views
// request.service.
RequestHeader request_header(const RequestEnvelope& request);

// Why a REQUEST's frames and the envelope it carries disagree, or "" when they agree: a
// different id, or a retry-safe flag the request does not warrant (the broker may have given
// such a request to another worker already, so running it could send it upstream twice). A
// missing flag on a retry-safe request is no danger (the broker only requeued less) and passes.
std::string_view request_mismatch(const RequestHeader& header, const RequestEnvelope& request);

// Builders append to `out`, so a ROUTER caller can push the identity first.
void add_header(Frames& out, Command command);
// The one builder of REQUEST frames. Its callers pass a header they hold, never one assembled
// again from guesses: the gateway the one request_header() gave it (and the same fields when it
// fails over to another broker), the broker the fields it parsed, flags untouched.
// With header.stamps, a STAMPS frame follows the envelope.
void add_request(Frames& out, const RequestHeader& header, zmq::message_t envelope);
// With stamps, a STAMPS frame follows the envelope.
void add_reply(Frames& out, const CorrelationId& id, zmq::message_t envelope,
               const Stamps* stamps = nullptr);
void add_ready(Frames& out, std::string_view service, std::uint32_t capacity,
               std::string_view worker_id);
void add_stream(Frames& out, const StreamHeader& header, zmq::message_t payload);
void add_credit(Frames& out, const CorrelationId& id, std::uint32_t bytes);
void add_cancel(Frames& out, const CorrelationId& id);

std::uint64_t read_u64(const zmq::message_t& frame);
std::uint32_t read_u32(const zmq::message_t& frame);
zmq::message_t u64_frame(std::uint64_t value);
zmq::message_t u32_frame(std::uint32_t value);
CorrelationId read_id(const zmq::message_t& frame);
zmq::message_t id_frame(const CorrelationId& id);

inline std::string_view view(const zmq::message_t& m) {
  return {static_cast<const char*>(m.data()), m.size()};
}

// Service names: 1-64 chars of [a-z0-9-], starting with a letter. Checked on every path in.
bool valid_service_name(std::string_view name);

}  // namespace courier::protocol

template <>
struct std::is_error_code_enum<courier::protocol::FrameError> : std::true_type {};
