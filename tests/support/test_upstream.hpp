// A scriptable HTTP/1.1 upstream for integration tests: a real Beast server on 127.0.0.1:0 with its
// own io_context thread. It echoes by default, replays per-path scripts and records every request.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/net.hpp"

namespace courier::testing {

enum class StepAction {
  kRespond,  // status, headers, body; keep-alive as the client asked
  kEcho,     // the echo JSON (see TestUpstream) with this step's status and extra headers
  kChunked,  // like kRespond, but Transfer-Encoding: chunked with the body in up to 3 chunks
  kRespondAndClose,  // respond with "Connection: close", then close
  kClose,            // read the request, then close without a byte of response
  kStall,            // read the request and never answer; the connection is held until stop()
  kStream,           // a head, then `parts` each written at its time (or a flood); see Step::stream
};

// How a streamed body is delimited on the wire.
enum class StreamFraming {
  kChunked,        // Transfer-Encoding: chunked, one chunk per part
  kContentLength,  // Content-Length: the sum of the parts (or the flood size), plus one byte
                   // when the step ends with a reset or close, so that the body falls short
  kClose,          // no length, "Connection: close": the body ends when the connection does
};

// How a streamed response ends.
enum class StreamEnd {
  kClean,  // the terminating chunk (chunked); then keep-alive as the client asked
  kReset,  // right after the last part, a TCP reset (SO_LINGER 0) instead of the end
  kClose,  // right after the last part, a plain close (FIN) instead of the end
};

// One piece of a streamed body: wait `delay` (after the previous part, or the head), then write
// `bytes` at once.
struct StreamPart {
  std::chrono::milliseconds delay{0};
  std::string bytes;
};

// What the upstream does with one request. `delay` is a timer wait before the action (any action).
struct Step {
  unsigned status = 200;
  std::string body;
  HeaderList headers;
  std::chrono::milliseconds delay{0};
  StepAction action = StepAction::kRespond;
  // kStream only.
  std::vector<StreamPart> parts;
  StreamFraming framing = StreamFraming::kChunked;
  StreamEnd end = StreamEnd::kClean;
  std::uint64_t flood_bytes = 0;  // > 0: instead of `parts`, this many bytes as fast as possible
  int send_buffer = 0;            // > 0: SO_SNDBUF for the response, to bound what the kernel holds

  static Step respond(unsigned status, std::string body = {}, HeaderList headers = {});
  static Step echo(unsigned status = 200);
  static Step chunked(unsigned status, std::string body, HeaderList headers = {});
  static Step respond_and_close(unsigned status, std::string body = {});
  static Step close();
  static Step stall();
  // The head at once (after `delay`), then each part at its time; every write is flushed, and
  // recorded with its time in streams().
  static Step stream(unsigned status, HeaderList headers, std::vector<StreamPart> parts,
                     StreamFraming framing = StreamFraming::kChunked,
                     StreamEnd end = StreamEnd::kClean);
  // `bytes` of flood_pattern() in 16 KiB chunked writes, each as soon as the socket takes it.
  static Step flood(unsigned status, std::uint64_t bytes, HeaderList headers = {});

  Step after(std::chrono::milliseconds wait) const {
    Step copy = *this;
    copy.delay = wait;
    return copy;
  }
};

struct RecordedRequest {
  std::string method;
  std::string target;                     // as received, query included
  HeaderList headers;                     // in wire order
  std::string body;                       // exact bytes (chunked bodies are decoded)
  std::uint64_t connection_index = 0;     // 0-based, in accept order
  std::uint64_t index_on_connection = 0;  // 0 for the first request on its connection

  std::optional<std::string> header(std::string_view name) const {
    return find_header(headers, name);
  }
};

// Byte `offset` of a flood body: a pattern that does not repeat within 251 bytes, so that a lost,
// doubled or reordered chunk shows.
char flood_pattern(std::uint64_t offset);

using SteadyTime = std::chrono::steady_clock::time_point;

// What happened to one kStream response, as the upstream saw it. The clock is the test process's
// steady clock, so times compare with those a test client records.
struct StreamRecord {
  std::string target;
  std::uint64_t connection_index = 0;
  SteadyTime request_at{};               // the request was read
  std::optional<SteadyTime> head_at;     // the head's write began
  std::vector<SteadyTime> parts_at;      // each part's write began, in order
  std::uint64_t body_bytes_written = 0;  // body bytes the socket accepted (not chunk framing)
  bool finished = false;                 // every part written and the scripted end done
  bool over = false;                     // the response is over, whichever way
  // The first sign that the peer closed: end of file or reset on the connection while the step
  // ran (the head's delay included), or a failed write.
  std::optional<SteadyTime> client_closed_at;
};

struct UpstreamOptions {
  // 0: a port of the system's choice. Otherwise this one, e.g. a ReservedPort(true) that refused
  // connections until now (an upstream coming back).
  std::uint16_t port = 0;
  std::size_t body_limit = 64 * 1024 * 1024;  // larger request bodies get 413 and a close
  // 0: idle keep-alive connections stay open. Otherwise they are closed silently after this long,
  // the way real servers expire them (provokes the stale-pooled-connection race in clients).
  std::chrono::milliseconds idle_close{0};
  // Close right after every response without announcing it (no "Connection: close").
  bool close_after_response = false;
};

// Default behaviour (no script for the path, no default step): echo. The reply is 200 with
// Content-Type application/json and the body
//   {"method": "...", "target": "...", "headers": [[name, value], ...], "body": "...",
//    "body_size": n, "connection_index": n, "index_on_connection": n}
// where "body" is the request body as a string (bytes that are not UTF-8 become U+FFFD; use
// requests() for exact bytes), plus headers X-Echo-Method, X-Echo-Target, X-Echo-Connection
// and X-Echo-Body-Size. HEAD gets the same headers and no body.
//
// Scripts are keyed by path (the target up to '?'). script(path, steps) answers the next request
// to `path` with steps[0], the next with steps[1], ...; once used up, the LAST step repeats (append
// Step::echo() to return to echoing). All methods are thread-safe.
class TestUpstream {
 public:
  explicit TestUpstream(UpstreamOptions options = {});  // binds and starts; throws on failure
  ~TestUpstream();                                      // stop()
  TestUpstream(const TestUpstream&) = delete;
  TestUpstream& operator=(const TestUpstream&) = delete;

  std::uint16_t port() const;
  std::string host_port() const;  // "127.0.0.1:PORT"
  std::string url() const;        // "http://127.0.0.1:PORT"

  void script(std::string path, std::vector<Step> steps);
  void set_default(std::optional<Step> step);  // for unscripted paths; nullopt = echo
  void clear_scripts();                        // also clears the default step

  // The next `times` requests to `path` that announce a body: read the head and at least
  // `body_bytes` of the body (or all of it if shorter), record the request with the body read so
  // far, and close without a byte of response (the client sees a reset). Scripts are not
  // consulted for them.
  void close_during_body(std::string path, std::size_t body_bytes, std::size_t times = 1);

  void set_idle_close(std::chrono::milliseconds idle);  // applies from the next read
  void set_close_after_response(bool close);

  std::size_t hits(std::string_view path) const;  // requests received for the path, any method
  std::size_t request_count() const;
  std::vector<RecordedRequest> requests() const;
  std::optional<RecordedRequest> last_request() const;
  // kStream responses to `path` (the target up to '?'), in the order their requests arrived.
  std::vector<StreamRecord> streams(std::string_view path) const;
  std::size_t connections_accepted() const;
  std::size_t open_connections() const;

  // Block until the counts reach `count`; false when `timeout` passes first.
  bool wait_for_requests(std::size_t count, std::chrono::milliseconds timeout) const;
  bool wait_for_hits(std::string_view path, std::size_t count,
                     std::chrono::milliseconds timeout) const;

  // Closes the listener and every connection (stalled and delayed ones included) and joins the
  // server thread. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace courier::testing
