// Loopback networking helpers for tests: free ports, bounded polling, and a synchronous HTTP/1.1
// client (one-shot, keep-alive and raw-bytes forms) whose every operation ends by a deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace courier::testing {

using namespace std::chrono_literals;

// Ordered, duplicates allowed: tests check what was actually on the wire.
using HeaderList = std::vector<std::pair<std::string, std::string>>;

inline constexpr std::chrono::milliseconds kDefaultClientTimeout{5'000};

// Case-insensitive lookup of the first header named `name`.
std::optional<std::string> find_header(const HeaderList& headers, std::string_view name);

// Why a test client call produced no (complete) response.
enum class ClientError {
  kTimeout = 1,    // the deadline passed first
  kClosed,         // the peer closed (or reset) before a complete response
  kConnectFailed,  // nothing accepted the connection
  kProtocol,       // the bytes received are not a valid HTTP/1.1 response
  kNotConnected,   // send/receive on a connection that is closed
};
const std::error_category& client_error_category();
std::error_code make_error_code(ClientError e);

// Binds 127.0.0.1:0, reads the port and closes. Another process may take it before you bind it;
// prefer servers that bind port 0 themselves (TestUpstream does) when the binary allows it.
std::uint16_t free_tcp_port();

// A loopback port held bound but never listening, for as long as the object lives: connections
// to it are refused, and no other process picks it for itself meanwhile (unlike free_tcp_port()).
// `for_server`: bound with SO_REUSEADDR, so that the server a test starts later (which sets it too,
// as libzmq and the gateway do) can bind and listen on it, even again after a restart, while no
// other test's ephemeral bind takes it in between.
class ReservedPort {
 public:
  explicit ReservedPort(bool for_server = false);
  ~ReservedPort();
  ReservedPort(const ReservedPort&) = delete;
  ReservedPort& operator=(const ReservedPort&) = delete;
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// Calls `condition` every `poll_interval` until it returns true (-> true) or `timeout` passes
// (-> false; the condition is checked one last time at the deadline).
bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds poll_interval = 10ms);

struct HttpResult {
  std::error_code error;  // empty when a complete response was read
  unsigned status = 0;
  HeaderList headers;
  std::string body;
  bool keep_alive = false;  // the response allows reusing the connection
  bool chunked = false;     // the response used Transfer-Encoding: chunked

  bool ok() const { return !error; }
  std::optional<std::string> header(std::string_view name) const {
    return find_header(headers, name);
  }
};

struct RawResult {
  std::string data;          // every byte received (including any left over from receive())
  bool peer_closed = false;  // the peer closed or reset the connection
  std::error_code error;     // ClientError::kTimeout when the deadline ended the read
};

// One HTTP/1.1 connection to 127.0.0.1:port driven synchronously from the test thread. It owns a
// private io_context, so it needs no thread and never blocks past the timeout of each call. After
// a timeout the socket is closed (Beast closes timed-out streams): reconnect to continue.
class TestHttpConnection {
 public:
  TestHttpConnection();
  ~TestHttpConnection();
  TestHttpConnection(const TestHttpConnection&) = delete;
  TestHttpConnection& operator=(const TestHttpConnection&) = delete;

  std::error_code connect(std::uint16_t port,
                          std::chrono::milliseconds timeout = kDefaultClientTimeout);
  // Like connect(), from `source` (an IPv4 address such as "127.0.0.2": on Linux all of
  // 127.0.0.0/8 is loopback), so a test can play several clients with different addresses.
  std::error_code connect_from(std::string_view source, std::uint16_t port,
                               std::chrono::milliseconds timeout = kDefaultClientTimeout);

  // Adds Host (unless given) and Content-Length for a non-empty body (unless Content-Length or
  // Transfer-Encoding is given, so tests can send deliberately odd framing).
  std::error_code send(std::string_view method, std::string_view target,
                       const HeaderList& headers = {}, std::string_view body = {},
                       std::chrono::milliseconds timeout = kDefaultClientTimeout);
  std::error_code send_raw(std::string_view bytes,
                           std::chrono::milliseconds timeout = kDefaultClientTimeout);

  // Reads the next response; knows from send() which responses answer HEAD (no body).
  HttpResult receive(std::chrono::milliseconds timeout = kDefaultClientTimeout);

  HttpResult request(std::string_view method, std::string_view target,
                     const HeaderList& headers = {}, std::string_view body = {},
                     std::chrono::milliseconds timeout = kDefaultClientTimeout);

  // Reads until the peer closes or the timeout passes.
  RawResult read_until_close(std::chrono::milliseconds timeout = kDefaultClientTimeout);

  bool is_open() const;
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

using SteadyClock = std::chrono::steady_clock;

// Body bytes as one read returned them, with the time the read completed.
struct TimedBytes {
  SteadyClock::time_point at;
  std::string bytes;
};

// One server-sent event (or comment) block: its text without the blank line that ends it, and
// when the read that completed it returned.
struct SseBlock {
  SteadyClock::time_point at;
  std::string text;
  bool is_comment() const { return !text.empty() && text.front() == ':'; }
};

struct StreamResponse {
  std::error_code error;  // why the last read ended early (timeout, closed, protocol); else empty
  unsigned status = 0;
  HeaderList headers;
  bool chunked = false;
  std::optional<SteadyClock::time_point> head_at;
  std::vector<TimedBytes> pieces;  // the decoded body, read by read, in arrival order
  // The body ended as its framing says: the terminating chunk arrived, the Content-Length was
  // reached, or (no length, not chunked) the server closed. A truncated stream is not complete.
  bool complete = false;
  bool peer_closed = false;  // the server closed or reset the connection
  std::optional<SteadyClock::time_point> closed_at;

  std::optional<std::string> header(std::string_view name) const {
    return find_header(headers, name);
  }
  std::string body() const;
  std::uint64_t body_size() const;
  std::optional<SteadyClock::time_point> first_byte_at() const;
  // The body split at blank lines ("\n\n" or "\r\n\r\n"); a trailing unterminated block is left
  // out.
  std::vector<SseBlock> sse_blocks() const;
};

// A raw HTTP/1.1 client that reads a response incrementally, timing each read, for streaming
// tests. Synchronous and deadline-bound like TestHttpConnection; one request per connection.
class StreamingClient {
 public:
  // `receive_buffer` > 0: SO_RCVBUF, set before connecting, so that a client that reads slowly
  // (or not at all) holds little in its kernel buffer.
  explicit StreamingClient(int receive_buffer = 0);
  ~StreamingClient();
  StreamingClient(const StreamingClient&) = delete;
  StreamingClient& operator=(const StreamingClient&) = delete;

  std::error_code connect(std::uint16_t port,
                          std::chrono::milliseconds timeout = kDefaultClientTimeout);
  std::error_code send(std::string_view method, std::string_view target,
                       const HeaderList& headers = {}, std::string_view body = {},
                       std::chrono::milliseconds timeout = kDefaultClientTimeout);
  // Reads the response head (and nothing more of the body than came with it).
  std::error_code read_head(std::chrono::milliseconds timeout = kDefaultClientTimeout);
  // Reads body bytes until the body is complete, the server closes, `timeout` passes or (when
  // given) `max_bytes` more were read. Returns the error that ended it early, if any: kTimeout
  // when the deadline passed. Reading stops for good once complete or closed.
  std::error_code read_body(std::chrono::milliseconds timeout,
                            std::uint64_t max_bytes = UINT64_MAX);
  // read_head then read_body until the end, within `timeout` in all.
  std::error_code read_all(std::chrono::milliseconds timeout = kDefaultClientTimeout);

  const StreamResponse& response() const;
  bool finished() const;  // complete or closed: nothing more will come
  void close();           // hangs up (FIN), as a client that gives up does

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One request on a fresh connection; `timeout` bounds the whole exchange.
HttpResult http_request(std::uint16_t port, std::string_view method, std::string_view target,
                        const HeaderList& headers = {}, std::string_view body = {},
                        std::chrono::milliseconds timeout = kDefaultClientTimeout);

// Connects, writes `bytes` verbatim and reads until the peer closes or `timeout` passes: for
// malformed requests, where only the raw answer (or the lack of one) matters.
RawResult raw_exchange(std::uint16_t port, std::string_view bytes,
                       std::chrono::milliseconds timeout = kDefaultClientTimeout);

}  // namespace courier::testing

template <>
struct std::is_error_code_enum<courier::testing::ClientError> : std::true_type {};
