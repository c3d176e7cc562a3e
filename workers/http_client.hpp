// HTTP/1.1 client for one upstream: a pool of keep-alive connections and a coroutine that sends
// one request and reads its response, classifying every failure by how far the exchange got.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <system_error>
#include <vector>

#include "common/asio.hpp"
#include "common/config.hpp"

namespace courier::workers {

using UpstreamRequest = http::request<http::string_body>;
using UpstreamResponse = http::response<http::string_body>;

enum class FetchOutcome {
  kOk,                   // `response` holds a complete response (any status)
  kConnectFailed,        // resolve or connect failed: nothing was sent
  kResetBeforeResponse,  // the connection closed before any response byte (see request_sent)
  kTimeout,              // the deadline passed after the request went out
  kBadResponse,          // unparseable, over the size limits, or truncated
};
const char* to_string(FetchOutcome outcome);

struct FetchResult {
  FetchOutcome outcome = FetchOutcome::kOk;
  std::error_code ec;  // the underlying cause when outcome != kOk
  // Some byte of the request may have reached the upstream (a write that failed counts if it
  // wrote anything). A request that is not retry-safe is never sent again once this is true.
  bool request_sent = false;
  UpstreamResponse response;
};

struct PoolStats {
  std::uint64_t connections_opened = 0;
  std::uint64_t connections_reused = 0;
  std::uint64_t stale_replays = 0;  // reused connections found closed, request sent again
  // Idle connections found closed (or carrying unsolicited bytes) before reuse, and dropped.
  std::uint64_t idle_found_closed = 0;
  // Reused connections lost after the request went out, not replayed: not retry-safe.
  std::uint64_t replays_refused = 0;
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
  asio::awaitable<FetchResult> fetch(const UpstreamRequest& request,
                                     std::chrono::steady_clock::time_point deadline);

  const UpstreamUrl& upstream() const { return upstream_; }
  std::size_t idle_connections() const { return idle_.size(); }
  // Closes the idle connections (at shutdown: they must go before their io_context).
  void close_idle();
  const PoolStats& stats() const { return stats_; }

 private:
  struct Connection;

  asio::awaitable<std::error_code> connect(Connection& connection,
                                           std::chrono::steady_clock::time_point deadline);
  asio::awaitable<std::error_code> resolve(std::chrono::steady_clock::time_point deadline);

  asio::any_io_executor executor_;
  UpstreamUrl upstream_;
  std::size_t max_idle_;
  // Most recently used last: reusing the warmest connection lets the others age out upstream.
  std::vector<std::unique_ptr<Connection>> idle_;
  std::optional<tcp::resolver::results_type> endpoints_;
  PoolStats stats_;
};

}  // namespace courier::workers
