// HTTP/1.1 client for one upstream: a pool of keep-alive connections and a coroutine that sends
// one request and reads its response, classifying every failure by how far the exchange got.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "common/asio.hpp"
#include "common/config.hpp"
#include "workers/cancellation.hpp"
#include "workers/reply_stream.hpp"

namespace courier::workers {

using UpstreamRequest = http::request<http::string_body>;
using UpstreamResponse = http::response<http::string_body>;
using UpstreamHead = http::response_header<>;

enum class FetchOutcome {
  kOk,                   // `response` holds a complete response (any status)
  kConnectFailed,        // resolve or connect failed: nothing was sent
  kResetBeforeResponse,  // the connection closed before any response byte (see request_sent)
  kTimeout,              // the deadline passed after the request went out
  kBadResponse,          // unparseable, over the size limits, or truncated
  kCancelled,            // the request was cancelled before a response head went out
};
const char* to_string(FetchOutcome outcome);

struct FetchResult {
  FetchOutcome outcome = FetchOutcome::kOk;
  std::error_code ec;  // the underlying cause when outcome != kOk
  // Some byte of the request may have reached the upstream (a write that failed counts if it
  // wrote anything). A request that is not retry-safe is never sent again once this is true.
  bool request_sent = false;
  UpstreamResponse response;  // for a streamed response, its head only
  // The response was streamed (see should_stream): its HEAD went to the ReplyStream, followed
  // by END, or by ABORT when `stream_end` is not kComplete. It is never sent again.
  bool streamed = false;
  enum class StreamEnd {
    kComplete,
    kUpstreamFailed,    // reset, closed early or malformed framing mid-body
    kIdleTimeout,       // stream_idle_timeout between two body reads
    kDurationCap,       // stream_max_duration for the whole body
    kClientNotReading,  // no credit for stream_idle_timeout
    kCancelled,
    kSendFailed,  // the sink could not send a part (its ABORT is kSendFailedReason)
  } stream_end = StreamEnd::kComplete;
  std::uint64_t streamed_bytes = 0;
  // Unix epoch µs when the request was written whole and when the response head was read (0:
  // never got there). For the per-hop stamps.
  std::uint64_t sent_us = 0;
  std::uint64_t head_us = 0;
};
// The ABORT reason for `end` (and what logs call it).
const char* to_string(FetchResult::StreamEnd end);

// Whether a response goes out as a stream rather than as one complete reply: it has a body and
// is chunked, close-delimited (no Content-Length), text/event-stream (any parameters, any case),
// or longer than `threshold`; never the answer to HEAD, nor 1xx, 204 or 304, which have no body.
bool should_stream(bool head_request, unsigned status, bool chunked,
                   std::optional<std::uint64_t> content_length, std::string_view content_type,
                   std::uint64_t threshold);

// How a fetch streams a response that should_stream() picks. The HEAD goes out through
// `on_head` (the caller stamps and sends it), the body through `sink`.
struct StreamOptions {
  ReplyStream* sink = nullptr;
  std::function<void(const UpstreamHead&)> on_head;
  std::uint64_t threshold = 1 << 20;
  // Statuses read whole even when they would stream: those the caller may still retry (a
  // streamed response never is).
  bool (*read_whole)(unsigned status) = nullptr;
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds max_duration{600'000};
};

struct FetchOptions {
  const StreamOptions* stream = nullptr;  // null: every response is read whole
  Cancellation* cancel = nullptr;         // cancel() closes the connection at once
};

struct PoolStats {
  std::uint64_t connections_opened = 0;
  std::uint64_t connections_reused = 0;
  std::uint64_t stale_replays = 0;  // reused connections found closed, request sent again
  // Idle connections found closed (or carrying unsolicited bytes) before reuse, and dropped.
  std::uint64_t idle_found_closed = 0;
  // Reused connections lost after the request went out, not replayed: not retry-safe.
  std::uint64_t replays_refused = 0;
  std::uint64_t resolves = 0;  // name resolutions that succeeded (the endpoints are then cached)
};

// Keep-alive connections to one upstream. Not thread-safe: every call must come from the
// executor given to the constructor (one thread or strand).
class ConnectionPool {
 public:
  ConnectionPool(asio::any_io_executor executor, UpstreamUrl upstream, std::size_t max_idle);
  ~ConnectionPool();
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // Sends `request` as is (the caller sets Host and the body headers) and reads the response,
  // skipping 1xx interim responses. Nothing outlives `deadline`. An idle connection is checked
  // before reuse and dropped if the upstream closed it. A reused connection lost before any
  // response byte is replaced transparently, once, only if nothing of the request was written or
  // the request is retry-safe (is_retry_safe): a POST is never sent to the upstream twice.
  //
  // With `options.stream`, a response that should_stream() picks is streamed: `deadline` bounds
  // the head, the stream's own timeouts the body. With `options.cancel`, cancel() closes the
  // connection in use (never pooled again) and the result is kCancelled, or a stream that ends
  // kCancelled.
  asio::awaitable<FetchResult> fetch(const UpstreamRequest& request,
                                     std::chrono::steady_clock::time_point deadline,
                                     FetchOptions options = {});

  const UpstreamUrl& upstream() const { return upstream_; }
  std::size_t idle_connections() const { return idle_.size(); }
  // Connections that exist, idle or in use (one being connected included).
  std::size_t open_connections() const { return *open_; }
  // Closes the idle connections (at shutdown: they must go before their io_context).
  void close_idle();
  const PoolStats& stats() const { return stats_; }

 private:
  struct Connection;

  asio::awaitable<std::error_code> connect(Connection& connection,
                                           std::chrono::steady_clock::time_point deadline,
                                           Cancellation* cancel);
  asio::awaitable<std::error_code> resolve(std::chrono::steady_clock::time_point deadline,
                                           Cancellation* cancel);

  asio::any_io_executor executor_;
  UpstreamUrl upstream_;
  std::size_t max_idle_;
  // Most recently used last: reusing the warmest connection lets the others age out upstream.
  std::vector<std::unique_ptr<Connection>> idle_;
  std::optional<tcp::resolver::results_type> endpoints_;
  PoolStats stats_;
  std::shared_ptr<std::size_t> open_ = std::make_shared<std::size_t>(0);
};

}  // namespace courier::workers
