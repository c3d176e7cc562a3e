#include "workers/http_client.hpp"

#include <string>

namespace courier::workers {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

struct ConnectionPool::Connection {
  explicit Connection(const asio::any_io_executor& executor) : stream(executor) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;  // may hold bytes read past one response; belongs to the connection
};

namespace {

constexpr std::uint64_t kBodyLimit = std::uint64_t{256} << 20;
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

Exchange failed(FetchOutcome outcome, const beast::error_code& ec) {
  Exchange exchange;
  exchange.result.outcome = outcome;
  exchange.result.ec = ec;
  return exchange;
}

asio::awaitable<Exchange> exchange(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                   const UpstreamRequest& request, TimePoint deadline) {
  beast::error_code ec;
  stream.expires_at(deadline);  // covers the write and every read below
  co_await http::async_write(stream, request, asio::redirect_error(asio::use_awaitable, ec));
  if (ec == beast::error::timeout) co_return failed(FetchOutcome::kTimeout, ec);
  if (ec) {
    auto exchange = failed(FetchOutcome::kResetBeforeResponse, ec);
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
    if (status == 101) {
      // We never ask to switch protocols, so the upstream is not speaking HTTP to us any more.
      co_return failed(FetchOutcome::kBadResponse, http::error::bad_status);
    }
    if (status / 100 == 1) continue;  // 100 Continue, 103 Early Hints: the real answer follows

    Exchange exchange;
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

  if (!idle_.empty()) {
    auto connection = std::move(idle_.back());
    idle_.pop_back();
    ++stats_.connections_reused;
    auto result = co_await exchange(connection->stream, connection->buffer, request, deadline);
    if (!result.nothing_received) co_return finish(std::move(connection), std::move(result));
    // The upstream closed this connection while it sat idle and we raced its FIN or RST: it
    // answered nothing, so the request goes again on a fresh connection, as clients commonly do.
    ++stats_.stale_replays;
  }

  auto connection = std::make_unique<Connection>(executor_);
  if (auto ec = co_await connect(*connection, deadline)) {
    co_return FetchResult{FetchOutcome::kConnectFailed, ec, {}};
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
