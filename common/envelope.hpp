// The msgpack envelopes carried in the last frame of REQUEST and REPLY messages.
// Decoding validates every field and returns an error value on any malformed input; it never
// throws. A request whose method, target or headers could not be sent as HTTP/1.1 as they are
// (CR, LF or NUL in a line, a method that is not a token) is kBadValue.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>
#include <zmq.hpp>

#include "common/protocol.hpp"

namespace courier {

struct Header {
  std::string name;
  std::string value;
  friend bool operator==(const Header&, const Header&) = default;
};
using Headers = std::vector<Header>;

struct RequestEnvelope {
  protocol::CorrelationId id{};
  std::string service;
  std::string method;
  std::string target;  // path and query exactly as received, without the /{service} prefix
  Headers headers;     // end-to-end headers in arrival order; repeated names kept
  std::string body;    // binary
  std::uint64_t deadline_ms = 0;  // Unix epoch milliseconds
  // Reserved, element 8 of the version-1 format: sent as 0 and read by nobody. Dispatches are
  // counted by the broker (Request::dispatches), which never decodes envelopes; the field stays
  // so that envelopes keep their shape.
  std::uint32_t attempt = 0;
  std::string request_id;
  friend bool operator==(const RequestEnvelope&, const RequestEnvelope&) = default;
};

struct ErrorInfo {
  std::string code;
  std::string message;
  std::string detail;
  friend bool operator==(const ErrorInfo&, const ErrorInfo&) = default;
};

struct ReplyEnvelope {
  protocol::CorrelationId id{};
  std::uint16_t status = 0;
  Headers headers;
  std::string body;
  std::optional<ErrorInfo> error;  // set when Courier (not the upstream) produced the reply
  std::uint32_t attempts = 0;      // upstream attempts made by the worker
  std::string worker_id;
  std::uint64_t upstream_us = 0;  // time spent waiting on the upstream, all attempts
  friend bool operator==(const ReplyEnvelope&, const ReplyEnvelope&) = default;
};

enum class EnvelopeError {
  kMalformed = 1,  // not valid msgpack, truncated, or trailing bytes
  kTooLarge,       // a field or the whole envelope is over its limit
  kWrongType,      // valid msgpack of the wrong shape
  kBadVersion,
  kBadValue,  // right type, invalid value (e.g. status 42)
};
const std::error_category& envelope_category();
std::error_code make_error_code(EnvelopeError e);

inline constexpr std::size_t kMaxEnvelopeBody = 256u << 20;
inline constexpr std::size_t kMaxEnvelopeHeaders = 1024;

zmq::message_t encode(const RequestEnvelope& request);
zmq::message_t encode(const ReplyEnvelope& reply);
std::error_code decode(std::string_view data, RequestEnvelope& out);
std::error_code decode(std::string_view data, ReplyEnvelope& out);

}  // namespace courier

template <>
struct std::is_error_code_enum<courier::EnvelopeError> : std::true_type {};
