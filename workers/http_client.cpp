#include "workers/http_client.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <string>

#include "common/envelope.hpp"
#include "common/http_headers.hpp"
#include "common/stamps.hpp"

namespace courier::workers {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

struct ConnectionPool::Connection {
  Connection(const asio::any_io_executor& executor, std::shared_ptr<std::size_t> open)
      : stream(executor), open_count(std::move(open)) {
    ++*open_count;
  }
  ~Connection() { --*open_count; }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  beast::tcp_stream stream;
  // The pool's count of connections that exist, idle or in use; shared, as a connection in use
  // belongs to its request's coroutine, which the pool need not outlive.
  std::shared_ptr<std::size_t> open_count;
  beast::flat_buffer buffer;  // may hold bytes read past one response; belongs to the connection
};

namespace {

// A body the reply envelope could not carry is a bad response, not an allocation to attempt.
constexpr std::uint64_t kBodyLimit = kMaxEnvelopeBody;
// The buffer for reading a body: 16 reads for a 64 KiB body instead of 128 with Beast's 512-byte
// default. It is taken only once a head announces a body still to come, and given back after the
// exchange, so the thousands of requests waiting on a slow upstream hold 512 bytes each, not 4 KiB.
constexpr std::size_t kBodyReadBufferSize = 4 * 1024;
constexpr std::uint32_t kHeaderLimit = 64u << 10;
// A streamed body is read at most this much at a time (and never more than the credit), and each
// read goes out as one DATA part.
constexpr std::size_t kStreamReadSize = 64 * 1024;
// The connection's read buffer while it streams: Beast reads at most its spare capacity at once.
constexpr std::size_t kStreamBufferSize = 16 * 1024;
// What a stream waiting for its next bytes holds: an LLM stream sends a token or a character every
// few tens of ms and waits seconds in between, so the large buffers above are taken only while
// bytes are waiting to be read (measured: 82 KiB per open stream in the worker with them always
// held, 200 streams open).
constexpr std::size_t kIdleReadSize = 1024;

struct Exchange {
  FetchResult result;
  bool reusable = false;          // the connection may carry another request
  bool nothing_received = false;  // it failed before any response byte, and not by timeout
};

Exchange failed(FetchOutcome outcome, const beast::error_code& ec, bool sent = true) {
  Exchange exchange;
  exchange.result.outcome = outcome;
  exchange.result.ec = ec;
  exchange.result.request_sent = sent;
  return exchange;
}

// RFC 9110 5.6.2 token, and a field value without CR, LF, NUL or other controls but HTAB. The
// reply goes to a client through the gateway: a value the parser let through must not split it.
bool is_token(std::string_view s) {
  static constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x80 && std::isalnum(u)) || kSymbols.find(c) != kSymbols.npos;
  });
}

bool is_field_value(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && u != '\t') || u == 0x7f;
  });
}

bool valid_fields(const UpstreamResponse& response) {
  return std::all_of(response.begin(), response.end(), [](const auto& field) {
    return is_token(field.name_string()) && is_field_value(field.value());
  });
}

// The same rule as courier::is_retry_safe, read from the request as it goes out.
bool request_is_retry_safe(const UpstreamRequest& request) {
  return is_idempotent_method(request.method_string()) ||
         request.find("Idempotency-Key") != request.end();
}

// True if the upstream closed an idle connection (FIN or RST waiting), or sent bytes nobody asked
// for: either way it cannot carry a request. A non-blocking peek, so the race with the
// upstream's idle timeout narrows to the time between this check and the write.
bool idle_connection_unusable(tcp::socket& socket) {
  char byte = 0;
  const auto n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
  return true;  // 0: end of stream; > 0: unsolicited bytes
}

bool is_event_stream(std::string_view content_type) {
  auto type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  return beast::iequals(type, "text/event-stream");
}

bool is_cancelled(const Cancellation* cancel) { return cancel && cancel->cancelled(); }

// Whatever the cause, the upstream must see its connection closed now, not when the pool would
// have dropped it.
void close_now(beast::tcp_stream& stream) {
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream.close();
}

// The body of a response should_stream() picked, after its head: each read goes out at once as
// DATA, at most one read's worth (kStreamReadSize, and never more than the credit) at a time, so
// a slow client stops the reads instead of filling a buffer. Never retried: the head went out.
asio::awaitable<void> stream_response(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                      http::response_parser<http::string_body>& head_parser,
                                      const StreamOptions& options, Cancellation* cancel,
                                      Exchange& exchange) {
  using StreamEnd = FetchResult::StreamEnd;
  http::response_parser<http::buffer_body> parser(std::move(head_parser));
  parser.body_limit(boost::none);  // a stream's body is never held whole, so any length will do
  exchange = Exchange{};
  exchange.result.request_sent = true;
  exchange.result.streamed = true;
  options.on_head(parser.get());

  ReplyStream& out = *options.sink;
  Cancellation::Scope scope(cancel, [&] {
    close_now(stream);
    out.wake();
  });
  const auto until = Clock::now() + options.max_duration;
  std::unique_ptr<char[]> chunk;
  std::size_t chunk_size = 0;
  beast::error_code failure;
  auto end = StreamEnd::kComplete;
  for (;;) {
    // Checked first: a sink that broke cancels the request too, and this is why it ended.
    if (out.broken()) {
      end = StreamEnd::kSendFailed;
      break;
    }
    if (is_cancelled(cancel)) {
      end = StreamEnd::kCancelled;
      break;
    }
    if (out.credit() == 0) {
      co_await out.wait_for_credit(std::min(Clock::now() + options.idle_timeout, until));
      if (is_cancelled(cancel)) {
        end = StreamEnd::kCancelled;
        break;
      }
      if (out.credit() == 0) {
        end = Clock::now() >= until ? StreamEnd::kDurationCap : StreamEnd::kClientNotReading;
        break;
      }
    }
    // Bytes already here (read past the last part, or in the socket) are read in large pieces;
    // a stream that waits holds small buffers while it does.
    beast::error_code unknown;
    const bool waiting = buffer.size() > 0 || stream.socket().available(unknown) > 0;
    const std::size_t want = waiting ? kStreamReadSize : kIdleReadSize;
    if (chunk_size != want) {
      chunk = std::make_unique_for_overwrite<char[]>(want);
      chunk_size = want;
    }
    if (waiting && buffer.capacity() < kStreamBufferSize) buffer.reserve(kStreamBufferSize);
    if (!waiting && buffer.size() == 0) buffer.shrink_to_fit();  // Beast takes 512 bytes to read
    const auto room = static_cast<std::size_t>(std::min<std::uint64_t>(want, out.credit()));
    auto& body = parser.get().body();
    body.data = chunk.get();
    body.size = room;
    body.more = true;
    stream.expires_at(std::min(Clock::now() + options.idle_timeout, until));
    beast::error_code ec;
    co_await http::async_read_some(stream, buffer, parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    const std::string_view bytes(chunk.get(), room - parser.get().body().size);
    exchange.result.streamed_bytes += bytes.size();
    if (!ec && parser.is_done()) {
      out.end(bytes);
      exchange.reusable = parser.keep_alive() && parser.get().version() == 11 && buffer.size() == 0;
      break;
    }
    if (!bytes.empty()) out.data(bytes);
    if (!ec) continue;
    if (out.broken()) {
      end = StreamEnd::kSendFailed;
    } else if (is_cancelled(cancel)) {
      end = StreamEnd::kCancelled;
    } else if (ec == beast::error::timeout) {
      end = Clock::now() >= until ? StreamEnd::kDurationCap : StreamEnd::kIdleTimeout;
    } else {
      end = StreamEnd::kUpstreamFailed;
      failure = ec;
    }
    break;
  }
  if (end == StreamEnd::kComplete && out.broken()) {  // the END itself could not be sent
    end = StreamEnd::kSendFailed;
    exchange.reusable = false;
  }
  if (end != StreamEnd::kComplete) {
    close_now(stream);
    if (end == StreamEnd::kSendFailed) {
      // The stream already sent its one ABORT.
    } else if (end == StreamEnd::kUpstreamFailed) {
      out.abort("upstream failed mid-body: " + failure.message());
      exchange.result.ec = failure;
    } else {
      out.abort(to_string(end));
    }
  }
  exchange.result.stream_end = end;
  if (buffer.size() == 0) buffer.shrink_to_fit();
  exchange.result.response = UpstreamResponse(std::move(static_cast<UpstreamHead&>(parser.get())));
}

// Writes what happened into `out` (the caller's, so that it takes no room in this frame).
asio::awaitable<void> exchange(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                               const UpstreamRequest& request, TimePoint deadline,
                               const FetchOptions& options, Exchange& out) {
  beast::error_code ec;
  stream.expires_at(deadline);  // covers the write and every read below
  // Beast counts the bytes of every write that succeeded, also when a later one fails: any of
  // them may have reached the upstream, so the request counts as sent from the first byte.
  const std::size_t written =
      co_await http::async_write(stream, request, asio::redirect_error(asio::use_awaitable, ec));
  const bool sent = written > 0 || !ec;
  const std::uint64_t sent_us = ec ? 0 : protocol::unix_us_now();
  if (ec && is_cancelled(options.cancel)) {
    out = failed(FetchOutcome::kCancelled, ec, sent);
    co_return;
  }
  if (ec == beast::error::timeout) {
    out = failed(FetchOutcome::kTimeout, ec, sent);
    co_return;
  }
  if (ec) {
    out = failed(FetchOutcome::kResetBeforeResponse, ec, sent);
    out.nothing_received = true;
    co_return;
  }

  // A failed read: how far the exchange got decides what the caller may do about it.
  const auto read_failed = [&](bool got_bytes) {
    if (is_cancelled(options.cancel)) return failed(FetchOutcome::kCancelled, ec);
    if (ec == beast::error::timeout) return failed(FetchOutcome::kTimeout, ec);
    if (!got_bytes) {
      auto exchange = failed(FetchOutcome::kResetBeforeResponse, ec);
      exchange.nothing_received = true;
      return exchange;
    }
    return failed(FetchOutcome::kBadResponse, ec);
  };

  bool got_bytes = false;
  for (;;) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    parser.header_limit(kHeaderLimit);
    // A response to HEAD describes a body it does not carry; without this the parser waits for it.
    parser.skip(request.method() == http::verb::head);
    co_await http::async_read_header(stream, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
    got_bytes = got_bytes || parser.got_some();
    if (ec) {
      out = read_failed(got_bytes);
      co_return;
    }
    const std::uint64_t head_us = protocol::unix_us_now();

    const unsigned status = parser.get().result_int();
    if (status < 100 || status > 599) {
      out = failed(FetchOutcome::kBadResponse, http::error::bad_status);
      co_return;
    }
    if (status == 101) {
      // We never ask to switch protocols, so the upstream is not speaking HTTP to us any more.
      out = failed(FetchOutcome::kBadResponse, http::error::bad_status);
      co_return;
    }
    if (status / 100 == 1) continue;  // 100 Continue, 103 Early Hints: the real answer follows
    const unsigned version = parser.get().version();
    if (version != 10 && version != 11) {
      out = failed(FetchOutcome::kBadResponse, http::error::bad_version);
      co_return;
    }
    if (!valid_fields(parser.get())) {
      out = failed(FetchOutcome::kBadResponse, http::error::bad_value);
      co_return;
    }

    const auto length = parser.content_length();
    if (options.stream && !parser.is_done() &&
        !(options.stream->read_whole && options.stream->read_whole(status)) &&
        should_stream(request.method() == http::verb::head, status, parser.chunked(),
                      length ? std::optional<std::uint64_t>(*length) : std::nullopt,
                      parser.get()[http::field::content_type], options.stream->threshold)) {
      co_await stream_response(stream, buffer, parser, *options.stream, options.cancel, out);
      co_return;
    }

    if (!parser.is_done()) {
      // The wait for the head (up to the whole upstream latency) reads into Beast's default
      // small buffer. Beast sizes each read by the buffer's spare capacity and the parser drains
      // the buffer as it goes, so a body still to come gets room up front.
      if (buffer.capacity() < kBodyReadBufferSize) buffer.reserve(kBodyReadBufferSize);
      co_await http::async_read(stream, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        out = read_failed(true);
        co_return;
      }
    }

    out = Exchange{};
    out.result.request_sent = true;
    out.result.sent_us = sent_us;
    out.result.head_us = head_us;
    // HTTP/1.0 keep-alive is rare and fragile; bytes beyond the response mean the framing is off.
    out.reusable = parser.keep_alive() && parser.get().version() == 11 && buffer.size() == 0;
    if (buffer.size() == 0) buffer.shrink_to_fit();  // an idle or waiting connection holds none
    out.result.response = parser.release();
    co_return;
  }
}

}  // namespace

bool should_stream(bool head_request, unsigned status, bool chunked,
                   std::optional<std::uint64_t> content_length, std::string_view content_type,
                   std::uint64_t threshold) {
  if (head_request || status / 100 == 1 || status == 204 || status == 304) return false;
  if (chunked) return true;
  if (!content_length) return true;  // delimited by the upstream closing the connection
  if (*content_length == 0) return false;
  return *content_length > threshold || is_event_stream(content_type);
}

const char* to_string(FetchResult::StreamEnd end) {
  switch (end) {
    case FetchResult::StreamEnd::kComplete:
      return "complete";
    case FetchResult::StreamEnd::kUpstreamFailed:
      return "upstream failed";
    case FetchResult::StreamEnd::kIdleTimeout:
      return "idle timeout";
    case FetchResult::StreamEnd::kDurationCap:
      return "stream duration cap";
    case FetchResult::StreamEnd::kClientNotReading:
      return "client not reading";
    case FetchResult::StreamEnd::kCancelled:
      return "cancelled";
    case FetchResult::StreamEnd::kSendFailed:
      return "worker could not send part of the stream";
  }
  return "unknown";
}

const char* to_string(FetchOutcome outcome) {
  switch (outcome) {
    case FetchOutcome::kOk:
      return "ok";
    case FetchOutcome::kConnectFailed:
      return "connect failed";
    case FetchOutcome::kResetBeforeResponse:
      return "reset before response";
    case FetchOutcome::kTimeout:
      return "timeout";
    case FetchOutcome::kBadResponse:
      return "bad response";
    case FetchOutcome::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

ConnectionPool::ConnectionPool(asio::any_io_executor executor, UpstreamUrl upstream,
                               std::size_t max_idle)
    : executor_(std::move(executor)), upstream_(std::move(upstream)), max_idle_(max_idle) {}

ConnectionPool::~ConnectionPool() = default;

void ConnectionPool::close_idle() { idle_.clear(); }

asio::awaitable<FetchResult> ConnectionPool::fetch(const UpstreamRequest& request,
                                                   TimePoint deadline, FetchOptions options) {
  auto finish = [this, &options](std::unique_ptr<Connection> connection, Exchange exchange) {
    // A cancelled exchange's connection was closed under it: never pooled.
    if (exchange.reusable && !is_cancelled(options.cancel) && idle_.size() < max_idle_) {
      connection->stream.expires_never();
      idle_.push_back(std::move(connection));
    }
    return std::move(exchange.result);
  };
  const auto cancelled = [] { return FetchResult{FetchOutcome::kCancelled, {}, false, {}}; };
  if (is_cancelled(options.cancel)) co_return cancelled();

  // Filled by exchange() (in the caller's frame, once for both calls below).
  Exchange result;
  while (!idle_.empty()) {
    auto connection = std::move(idle_.back());
    idle_.pop_back();
    if (idle_connection_unusable(connection->stream.socket())) {
      ++stats_.idle_found_closed;
      continue;
    }
    ++stats_.connections_reused;
    {
      Cancellation::Scope scope(options.cancel, [&] { close_now(connection->stream); });
      co_await exchange(connection->stream, connection->buffer, request, deadline, options, result);
    }
    if (!result.nothing_received || is_cancelled(options.cancel)) {
      co_return finish(std::move(connection), std::move(result));
    }
    // The upstream closed this connection while it sat idle and we raced its FIN or RST: it
    // answered nothing. Sending the request again on a fresh connection, as clients commonly do,
    // is harmless only if none of it went out or a second copy cannot do harm: the upstream may
    // have read all of it and acted on it before closing.
    if (result.result.request_sent && !request_is_retry_safe(request)) {
      ++stats_.replays_refused;
      co_return std::move(result.result);
    }
    ++stats_.stale_replays;
    break;
  }

  auto connection = std::make_unique<Connection>(executor_, open_);
  Cancellation::Scope scope(options.cancel, [&] { close_now(connection->stream); });
  if (auto ec = co_await connect(*connection, deadline, options.cancel)) {
    if (is_cancelled(options.cancel)) co_return cancelled();
    co_return FetchResult{FetchOutcome::kConnectFailed, ec, false, {}};
  }
  if (is_cancelled(options.cancel)) co_return cancelled();
  co_await exchange(connection->stream, connection->buffer, request, deadline, options, result);
  co_return finish(std::move(connection), std::move(result));
}

asio::awaitable<std::error_code> ConnectionPool::connect(Connection& connection, TimePoint deadline,
                                                         Cancellation* cancel) {
  if (!endpoints_) {
    if (auto ec = co_await resolve(deadline, cancel)) co_return ec;
  }
  const auto endpoints = *endpoints_;  // a concurrent failure may reset endpoints_
  beast::error_code ec;
  connection.stream.expires_at(deadline);
  co_await connection.stream.async_connect(endpoints,
                                           asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    // A restarted upstream container may come back at a new address. A connect the client
    // cancelled says nothing about the address, and resolving again would cost every request.
    if (!is_cancelled(cancel)) endpoints_.reset();
    co_return ec;
  }
  connection.stream.socket().set_option(tcp::no_delay(true), ec);  // best effort
  ++stats_.connections_opened;
  co_return std::error_code{};
}

asio::awaitable<std::error_code> ConnectionPool::resolve(TimePoint deadline, Cancellation* cancel) {
  // The resolver has no timeout of its own, so a timer cancels it. The timer's handler may run
  // after this coroutine is gone, hence the weak reference.
  auto resolver = std::make_shared<tcp::resolver>(executor_);
  asio::steady_timer timer(executor_, deadline);
  timer.async_wait([weak = std::weak_ptr(resolver)](const beast::error_code& ec) {
    if (auto resolver = weak.lock(); resolver && !ec) resolver->cancel();
  });
  Cancellation::Scope scope(cancel, [&] { resolver->cancel(); });
  beast::error_code ec;
  auto results = co_await resolver->async_resolve(upstream_.host, std::to_string(upstream_.port),
                                                  asio::redirect_error(asio::use_awaitable, ec));
  timer.cancel();
  if (ec == asio::error::operation_aborted && Clock::now() >= deadline) {
    co_return beast::error_code(beast::error::timeout);
  }
  if (ec) co_return ec;
  endpoints_ = std::move(results);
  ++stats_.resolves;
  co_return std::error_code{};
}

}  // namespace courier::workers
