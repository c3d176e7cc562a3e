// Pure pieces of relaying a streamed reply to an HTTP client: checking the stream's head and
// choosing its framing, chunk framing, flow-control accounting, SSE keep-alive decisions, and
// the abort reason made safe for the access log.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/envelope.hpp"
#include "gateway/request_mapper.hpp"

namespace courier::gateway {

enum class StreamFraming {
  kChunked,  // HTTP/1.1 client, no Content-Length from the upstream
  kLength,   // the upstream's Content-Length, kept; raw body bytes
  kClose,    // HTTP/1.0 client without a length: the body ends when the connection closes
};

struct StreamHead {
  // The head to write (no body), or when `problem` is set, the 502 <SVC>_BAD_RESPONSE to answer.
  HttpResponse response;
  std::string problem;  // why the head was refused, for the log; "" when it goes out
  StreamFraming framing = StreamFraming::kChunked;
  std::uint64_t length = 0;   // kLength: the body's announced size
  bool event_stream = false;  // text/event-stream
  std::uint32_t attempts = 0;
  std::string worker;             // for the access log: who streams it,
  std::uint64_t upstream_us = 0;  // and its time on the upstream up to the head
};

// A stream's HEAD envelope checked like a reply (reply_problem: status, names, values, counts)
// and turned into the client's response head: framing as above, X-Request-ID ours,
// `X-Accel-Buffering: no` for text/event-stream. Refused besides: a stream for a HEAD request or
// a status without a body (204, 304), a Content-Length that is not one decimal number.
StreamHead stream_head(ReplyEnvelope&& head, const HttpRequest& request, std::string_view service,
                       std::string_view request_id);

// "1a2b\r\n": the line before a chunk of `size` bytes (size > 0).
std::string chunk_header(std::size_t size);
inline constexpr std::string_view kChunkEnd = "\r\n";
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";
inline constexpr std::string_view kKeepAliveComment = ": keep-alive\n\n";

// Whether the body written so far ends where an SSE event does ("\n\n", "\r\n\r\n", or nothing
// written yet), so that a comment there cannot split an event.
class EventBoundary {
 public:
  void wrote(std::string_view bytes);
  bool at_boundary() const;

 private:
  char tail_[4] = {};
  std::size_t size_ = 0;  // bytes of tail_ in use (the last ones written), at most 4
};

// A keep-alive comment is due: an SSE stream not framed by length (a comment would change the
// body's size), keep-alive on, `idle` since the last write at least `interval`, at a boundary.
bool keepalive_due(const StreamHead& head, std::chrono::milliseconds interval,
                   std::chrono::steady_clock::duration idle, bool at_boundary);

// Flow control from the gateway's side: body bytes received must stay within what was granted
// (the initial window plus every CREDIT sent).
class StreamWindow {
 public:
  explicit StreamWindow(std::uint64_t initial) : granted_(initial) {}
  // False when `bytes` more exceed the grant: a protocol error.
  bool receive(std::size_t bytes);
  void grant(std::uint64_t bytes) { granted_ += bytes; }
  std::uint64_t received() const { return received_; }
  std::uint64_t granted() const { return granted_; }

 private:
  std::uint64_t granted_;
  std::uint64_t received_ = 0;
};

// The bytes to credit now, or 0 to wait: at least `batch` written and not yet credited, or any
// when nothing else is queued (so that a worker never waits on a small remainder).
std::uint32_t credit_due(std::uint64_t uncredited, std::size_t batch, bool nothing_queued);
inline constexpr std::size_t kCreditBatch = 16 * 1024;

// An ABORT's reason for the access log: printable ASCII only (others become '?'), '"' and '\\'
// escaped, at most 256 bytes of the input.
std::string sanitize_reason(std::string_view reason);

}  // namespace courier::gateway
