#include "workers/http_client.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <string>

#include "common/envelope.hpp"
#include "common/http_headers.hpp"

namespace courier::workers {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

struct ConnectionPool::Connection {
  explicit Connection(const asio::any_io_executor& executor) : stream(executor) {}
  beast::tcp_stream stream;
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

asio::awaitable<Exchange> exchange(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                   const UpstreamRequest& request, TimePoint deadline) {
  beast::error_code ec;
  stream.expires_at(deadline);  // covers the write and every read below
  // Beast counts the bytes of every write that succeeded, also when a later one fails: any of
  // them may have reached the upstream, so the request counts as sent from the first byte.
  const std::size_t written =
      co_await http::async_write(stream, request, asio::redirect_error(asio::use_awaitable, ec));
  const bool sent = written > 0 || !ec;
  if (ec == beast::error::timeout) co_return failed(FetchOutcome::kTimeout, ec, sent);
  if (ec) {
    auto exchange = failed(FetchOutcome::kResetBeforeResponse, ec, sent);
    exchange.nothing_received = true;
    co_return exchange;
  }

  bool got_bytes = false;
  for (;;) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    parser.header_limit(kHeaderLimit);
    // A response to HEAD describes a body it does not carry; without this the parser waits for it.
    parser.skip(request.method() == http::verb::head);
    // The wait for the head (up to the whole upstream latency) reads into Beast's default small
    // buffer. Beast sizes each read by the buffer's spare capacity and the parser drains the
    // buffer as it goes, so a body still to come gets room up front.
    co_await http::async_read_header(stream, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && !parser.is_done()) {
      if (buffer.capacity() < kBodyReadBufferSize) buffer.reserve(kBodyReadBufferSize);
      co_await http::async_read(stream, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
    }
    got_bytes = got_bytes || parser.got_some();
    if (ec == beast::error::timeout) co_return failed(FetchOutcome::kTimeout, ec);
    if (ec && !got_bytes) {
      auto exchange = failed(FetchOutcome::kResetBeforeResponse, ec);
      exchange.nothing_received = true;
      co_return exchange;
    }
    if (ec) co_return failed(FetchOutcome::kBadResponse, ec);

    const unsigned status = parser.get().result_int();
    if (status < 100 || status > 599) {
      co_return failed(FetchOutcome::kBadResponse, http::error::bad_status);
    }
    if (status == 101) {
      // We never ask to switch protocols, so the upstream is not speaking HTTP to us any more.
      co_return failed(FetchOutcome::kBadResponse, http::error::bad_status);
    }
    if (status / 100 == 1) continue;  // 100 Continue, 103 Early Hints: the real answer follows
    const unsigned version = parser.get().version();
    if (version != 10 && version != 11) {
      co_return failed(FetchOutcome::kBadResponse, http::error::bad_version);
    }
    if (!valid_fields(parser.get())) {
      co_return failed(FetchOutcome::kBadResponse, http::error::bad_value);
    }

    Exchange exchange;
    exchange.result.request_sent = true;
    // HTTP/1.0 keep-alive is rare and fragile; bytes beyond the response mean the framing is off.
    exchange.reusable = parser.keep_alive() && parser.get().version() == 11 && buffer.size() == 0;
    if (buffer.size() == 0) buffer.shrink_to_fit();  // an idle or waiting connection holds none
    exchange.result.response = parser.release();
    co_return exchange;
  }
}

}  // namespace

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
  }
  return "unknown";
}

ConnectionPool::ConnectionPool(asio::any_io_executor executor, UpstreamUrl upstream,
                               std::size_t max_idle)
    : executor_(std::move(executor)), upstream_(std::move(upstream)), max_idle_(max_idle) {}

ConnectionPool::~ConnectionPool() = default;

void ConnectionPool::close_idle() { idle_.clear(); }

asio::awaitable<FetchResult> ConnectionPool::fetch(const UpstreamRequest& request,
                                                   TimePoint deadline) {
  auto finish = [this](std::unique_ptr<Connection> connection, Exchange exchange) {
    if (exchange.reusable && idle_.size() < max_idle_) {
      connection->stream.expires_never();
      idle_.push_back(std::move(connection));
    }
    return std::move(exchange.result);
  };

  while (!idle_.empty()) {
    auto connection = std::move(idle_.back());
    idle_.pop_back();
    if (idle_connection_unusable(connection->stream.socket())) {
      ++stats_.idle_found_closed;
      continue;
    }
    ++stats_.connections_reused;
    auto result = co_await exchange(connection->stream, connection->buffer, request, deadline);
    if (!result.nothing_received) co_return finish(std::move(connection), std::move(result));
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

  auto connection = std::make_unique<Connection>(executor_);
  if (auto ec = co_await connect(*connection, deadline)) {
    co_return FetchResult{FetchOutcome::kConnectFailed, ec, false, {}};
  }
  auto result = co_await exchange(connection->stream, connection->buffer, request, deadline);
  co_return finish(std::move(connection), std::move(result));
}

asio::awaitable<std::error_code> ConnectionPool::connect(Connection& connection,
                                                         TimePoint deadline) {
  if (!endpoints_) {
    if (auto ec = co_await resolve(deadline)) co_return ec;
  }
  const auto endpoints = *endpoints_;  // a concurrent failure may reset endpoints_
  beast::error_code ec;
  connection.stream.expires_at(deadline);
  co_await connection.stream.async_connect(endpoints,
                                           asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    // A restarted upstream container may come back at a new address.
    endpoints_.reset();
    co_return ec;
  }
  connection.stream.socket().set_option(tcp::no_delay(true), ec);  // best effort
  ++stats_.connections_opened;
  co_return std::error_code{};
}

asio::awaitable<std::error_code> ConnectionPool::resolve(TimePoint deadline) {
  // The resolver has no timeout of its own, so a timer cancels it. The timer's handler may run
  // after this coroutine is gone, hence the weak reference.
  auto resolver = std::make_shared<tcp::resolver>(executor_);
  asio::steady_timer timer(executor_, deadline);
  timer.async_wait([weak = std::weak_ptr(resolver)](const beast::error_code& ec) {
    if (auto resolver = weak.lock(); resolver && !ec) resolver->cancel();
  });
  beast::error_code ec;
  auto results = co_await resolver->async_resolve(upstream_.host, std::to_string(upstream_.port),
                                                  asio::redirect_error(asio::use_awaitable, ec));
  timer.cancel();
  if (ec == asio::error::operation_aborted && Clock::now() >= deadline) {
    co_return beast::error_code(beast::error::timeout);
  }
  if (ec) co_return ec;
  endpoints_ = std::move(results);
  co_return std::error_code{};
}

}  // namespace courier::workers
