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

#include "common/protocol.hpp"

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

// Fields of a REQUEST before its envelope frame.
struct RequestHeader {
  std::string_view service;
  CorrelationId id{};
  std::uint64_t deadline_ms = 0;  // Unix epoch milliseconds
  std::uint8_t flags = 0;
};

struct ReadyHeader {
  std::string_view service;
  std::uint32_t capacity = 0;
  std::string_view worker_id;
};

// Frame counts after the tag and command frames.
inline constexpr std::size_t kRequestFrames = 7;  // tag cmd service id deadline flags envelope
inline constexpr std::size_t kReplyFrames = 4;    // tag cmd id envelope
inline constexpr std::size_t kEnvelopeIndex = 6;  // within a REQUEST, relative to the tag

// Reads the tag and command at frames[offset], offset+1. offset skips ROUTER identity frames.
std::error_code parse_command(const Frames& frames, std::size_t offset, Command& out);
std::error_code parse_request(const Frames& frames, std::size_t offset, RequestHeader& out);
std::error_code parse_reply(const Frames& frames, std::size_t offset, CorrelationId& out);
std::error_code parse_ready(const Frames& frames, std::size_t offset, ReadyHeader& out);
// STATS from a gateway carries an id; from the broker, an id and a JSON body.
std::error_code parse_stats(const Frames& frames, std::size_t offset, CorrelationId& out);

// Builders append to `out`, so a ROUTER caller can push the identity first.
void add_header(Frames& out, Command command);
void add_request(Frames& out, const RequestHeader& header, zmq::message_t envelope);
void add_reply(Frames& out, const CorrelationId& id, zmq::message_t envelope);
void add_ready(Frames& out, std::string_view service, std::uint32_t capacity,
               std::string_view worker_id);

std::uint64_t read_u64(const zmq::message_t& frame);
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
