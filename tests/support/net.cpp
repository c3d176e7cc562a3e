#include "tests/support/net.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "common/asio.hpp"

namespace courier::testing {
namespace {

using Clock = std::chrono::steady_clock;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

class ClientErrorCategory : public std::error_category {
 public:
  const char* name() const noexcept override { return "courier.test_client"; }
  std::string message(int value) const override {
    switch (static_cast<ClientError>(value)) {
      case ClientError::kTimeout:
        return "deadline passed";
      case ClientError::kClosed:
        return "peer closed the connection before a complete response";
      case ClientError::kConnectFailed:
        return "connect failed";
      case ClientError::kProtocol:
        return "invalid HTTP response";
      case ClientError::kNotConnected:
        return "not connected";
    }
    return "unknown test client error";
  }
};

bool is_http_error(const beast::error_code& ec) {
  return &ec.category() == &http::make_error_code(http::error::bad_version).category();
}

// Folds transport details into the few outcomes tests assert on; anything else passes through.
std::error_code to_client_error(const beast::error_code& ec) {
  if (!ec) return {};
  if (ec == beast::error::timeout) return ClientError::kTimeout;
  if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
      ec == asio::error::eof || ec == asio::error::connection_reset ||
      ec == asio::error::broken_pipe || ec == asio::error::connection_aborted) {
    return ClientError::kClosed;
  }
  if (is_http_error(ec)) return ClientError::kProtocol;
  return std::error_code(ec.value(), std::system_category());
}

std::chrono::milliseconds remaining(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return std::max(left, std::chrono::milliseconds{1});
}

}  // namespace

const std::error_category& client_error_category() {
  static const ClientErrorCategory category;
  return category;
}

std::error_code make_error_code(ClientError e) {
  return {static_cast<int>(e), client_error_category()};
}

std::optional<std::string> find_header(const HeaderList& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return value;
  }
  return std::nullopt;
}

std::uint16_t free_tcp_port() {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

ReservedPort::ReservedPort(bool for_server) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
  const int one = 1;
  if (for_server && ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    const int error = errno;
    ::close(fd_);
    throw std::system_error(error, std::generic_category(), "setsockopt");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int error = errno;
    ::close(fd_);
    throw std::system_error(error, std::generic_category(), "bind");
  }
  port_ = ntohs(addr.sin_port);
}

ReservedPort::~ReservedPort() { ::close(fd_); }

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds poll_interval) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    const auto now = Clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(poll_interval, deadline - now));
  }
}

struct TestHttpConnection::Impl {
  asio::io_context io;
  beast::tcp_stream stream{io};
  beast::flat_buffer buffer;
  std::uint16_t port = 0;
  bool open = false;
  std::deque<bool> pending_head;  // one entry per request sent: does its response carry no body?

  // Starts one async operation and runs the private loop until it completes. The stream's
  // expiry guarantees completion: on timeout Beast closes the socket and reports error::timeout.
  template <class Start>
  beast::error_code run(std::chrono::milliseconds timeout, Start&& start) {
    beast::error_code result = asio::error::would_block;
    stream.expires_after(timeout);
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    io.restart();
    io.run();
    stream.expires_never();
    return result;
  }

  void mark_closed_on(const beast::error_code& ec) {
    if (ec) {
      beast::error_code ignored;
      stream.socket().close(ignored);
      open = false;
    }
  }
};

TestHttpConnection::TestHttpConnection() : impl_(std::make_unique<Impl>()) {}
TestHttpConnection::~TestHttpConnection() = default;

std::error_code TestHttpConnection::connect(std::uint16_t port, std::chrono::milliseconds timeout) {
  close();
  impl_->port = port;
  const tcp::endpoint endpoint(asio::ip::make_address_v4("127.0.0.1"), port);
  auto ec =
      impl_->run(timeout, [&](auto handler) { impl_->stream.async_connect(endpoint, handler); });
  if (ec) {
    impl_->mark_closed_on(ec);
    return ec == beast::error::timeout ? make_error_code(ClientError::kTimeout)
                                       : make_error_code(ClientError::kConnectFailed);
  }
  impl_->stream.socket().set_option(tcp::no_delay(true));
  impl_->open = true;
  return {};
}

std::error_code TestHttpConnection::connect_from(std::string_view source, std::uint16_t port,
                                                 std::chrono::milliseconds timeout) {
  close();
  impl_->port = port;
  beast::error_code ec;
  const auto from = asio::ip::make_address_v4(std::string(source), ec);
  auto& socket = impl_->stream.socket();
  if (!ec) socket.open(tcp::v4(), ec);
  if (!ec) socket.bind(tcp::endpoint(from, 0), ec);
  if (ec) {
    impl_->mark_closed_on(ec);
    return make_error_code(ClientError::kConnectFailed);
  }
  // async_connect keeps a socket that is already open, and so the address bound above.
  const tcp::endpoint endpoint(asio::ip::make_address_v4("127.0.0.1"), port);
  ec = impl_->run(timeout, [&](auto handler) { impl_->stream.async_connect(endpoint, handler); });
  if (ec) {
    impl_->mark_closed_on(ec);
    return ec == beast::error::timeout ? make_error_code(ClientError::kTimeout)
                                       : make_error_code(ClientError::kConnectFailed);
  }
  socket.set_option(tcp::no_delay(true));
  impl_->open = true;
  return {};
}

std::error_code TestHttpConnection::send(std::string_view method, std::string_view target,
                                         const HeaderList& headers, std::string_view body,
                                         std::chrono::milliseconds timeout) {
  if (!impl_->open) return ClientError::kNotConnected;
  http::request<http::string_body> request;
  request.method_string(method);
  request.target(target);
  request.version(11);
  bool has_host = false;
  bool has_framing = false;
  for (const auto& [name, value] : headers) {
    request.insert(name, value);
    has_host = has_host || iequals(name, "host");
    has_framing =
        has_framing || iequals(name, "content-length") || iequals(name, "transfer-encoding");
  }
  if (!has_host) request.set(http::field::host, "127.0.0.1:" + std::to_string(impl_->port));
  request.body() = std::string(body);
  if (!has_framing && !body.empty()) request.content_length(body.size());

  auto ec = impl_->run(timeout,
                       [&](auto handler) { http::async_write(impl_->stream, request, handler); });
  impl_->mark_closed_on(ec);
  if (!ec) impl_->pending_head.push_back(method == "HEAD");
  return to_client_error(ec);
}

std::error_code TestHttpConnection::send_raw(std::string_view bytes,
                                             std::chrono::milliseconds timeout) {
  if (!impl_->open) return ClientError::kNotConnected;
  auto ec = impl_->run(timeout, [&](auto handler) {
    asio::async_write(impl_->stream, asio::buffer(bytes.data(), bytes.size()), handler);
  });
  impl_->mark_closed_on(ec);
  return to_client_error(ec);
}

HttpResult TestHttpConnection::receive(std::chrono::milliseconds timeout) {
  HttpResult result;
  if (!impl_->open && impl_->buffer.size() == 0) {
    result.error = ClientError::kNotConnected;
    return result;
  }
  http::response_parser<http::string_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  const bool head = !impl_->pending_head.empty() && impl_->pending_head.front();
  if (!impl_->pending_head.empty()) impl_->pending_head.pop_front();
  parser.skip(head);

  auto ec = impl_->run(timeout, [&](auto handler) {
    http::async_read(impl_->stream, impl_->buffer, parser, handler);
  });
  // A server may legitimately close right after a complete response ("Connection: close").
  if (ec && !(parser.is_done() && ec == http::error::end_of_stream)) {
    impl_->mark_closed_on(ec);
    result.error = to_client_error(ec);
    return result;
  }
  const auto& response = parser.get();
  result.status = response.result_int();
  for (const auto& field : response) {
    result.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  result.body = response.body();
  result.keep_alive = response.keep_alive();
  result.chunked = response.chunked();
  return result;
}

HttpResult TestHttpConnection::request(std::string_view method, std::string_view target,
                                       const HeaderList& headers, std::string_view body,
                                       std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  if (auto ec = send(method, target, headers, body, timeout)) {
    HttpResult result;
    result.error = ec;
    return result;
  }
  return receive(remaining(deadline));
}

RawResult TestHttpConnection::read_until_close(std::chrono::milliseconds timeout) {
  RawResult result;
  // Bytes already buffered by receive() were sent by the peer too.
  result.data = beast::buffers_to_string(impl_->buffer.data());
  impl_->buffer.consume(impl_->buffer.size());
  if (!impl_->open) {
    result.peer_closed = true;
    return result;
  }
  const auto deadline = Clock::now() + timeout;
  char chunk[16 * 1024];
  for (;;) {
    std::size_t got = 0;
    auto ec = impl_->run(remaining(deadline), [&](auto handler) {
      impl_->stream.async_read_some(asio::buffer(chunk), [&got, handler](auto e, std::size_t n) {
        got = n;
        handler(e);
      });
    });
    result.data.append(chunk, got);
    if (!ec) continue;
    impl_->mark_closed_on(ec);
    if (ec == beast::error::timeout) {
      result.error = ClientError::kTimeout;
    } else if (ec == asio::error::eof || ec == asio::error::connection_reset) {
      result.peer_closed = true;
    } else {
      result.error = to_client_error(ec);
    }
    return result;
  }
}

bool TestHttpConnection::is_open() const { return impl_->open; }

void TestHttpConnection::close() {
  beast::error_code ignored;
  impl_->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  impl_->stream.socket().close(ignored);
  impl_->open = false;
  impl_->buffer.consume(impl_->buffer.size());
  impl_->pending_head.clear();
}

std::string StreamResponse::body() const {
  std::string out;
  for (const auto& piece : pieces) out += piece.bytes;
  return out;
}

std::uint64_t StreamResponse::body_size() const {
  std::uint64_t size = 0;
  for (const auto& piece : pieces) size += piece.bytes.size();
  return size;
}

std::optional<SteadyClock::time_point> StreamResponse::first_byte_at() const {
  for (const auto& piece : pieces) {
    if (!piece.bytes.empty()) return piece.at;
  }
  return std::nullopt;
}

std::vector<SseBlock> StreamResponse::sse_blocks() const {
  std::vector<SseBlock> out;
  std::string pending;
  for (const auto& piece : pieces) {
    pending += piece.bytes;
    for (;;) {
      const auto lf = pending.find("\n\n");
      const auto crlf = pending.find("\r\n\r\n");
      if (lf == std::string::npos && crlf == std::string::npos) break;
      const bool use_crlf = crlf != std::string::npos && (lf == std::string::npos || crlf < lf);
      const auto at = use_crlf ? crlf : lf;
      out.push_back(SseBlock{piece.at, pending.substr(0, at)});
      pending.erase(0, at + (use_crlf ? 4 : 2));
    }
  }
  return out;
}

struct StreamingClient::Impl {
  explicit Impl(int receive_buffer) : receive_buffer(receive_buffer) {}

  int receive_buffer;
  asio::io_context io;
  beast::tcp_stream stream{io};
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  std::uint16_t port = 0;
  bool head_only = false;
  StreamResponse response;

  template <class Start>
  beast::error_code run(std::chrono::milliseconds timeout, Start&& start) {
    beast::error_code result = asio::error::would_block;
    stream.expires_after(timeout);
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    io.restart();
    io.run();
    stream.expires_never();
    return result;
  }

  bool timed_out = false;  // Beast closed the socket at the deadline: nothing more can be read

  bool finished() const { return response.complete || response.peer_closed || timed_out; }

  std::error_code time_out() {
    timed_out = true;
    response.error = ClientError::kTimeout;
    return response.error;
  }

  void note_closed() {
    if (response.peer_closed) return;
    response.peer_closed = true;
    response.closed_at = Clock::now();
    beast::error_code ignored;
    stream.socket().close(ignored);
  }
};

StreamingClient::StreamingClient(int receive_buffer)
    : impl_(std::make_unique<Impl>(receive_buffer)) {
  impl_->parser.body_limit(std::numeric_limits<std::uint64_t>::max());
}
StreamingClient::~StreamingClient() = default;

std::error_code StreamingClient::connect(std::uint16_t port, std::chrono::milliseconds timeout) {
  impl_->port = port;
  auto& socket = impl_->stream.socket();
  beast::error_code ec;
  socket.open(tcp::v4(), ec);
  if (!ec && impl_->receive_buffer > 0) {
    socket.set_option(asio::socket_base::receive_buffer_size(impl_->receive_buffer), ec);
  }
  if (ec) return ClientError::kConnectFailed;
  const tcp::endpoint endpoint(asio::ip::make_address_v4("127.0.0.1"), port);
  ec = impl_->run(timeout, [&](auto handler) { impl_->stream.async_connect(endpoint, handler); });
  if (ec) {
    return ec == beast::error::timeout ? make_error_code(ClientError::kTimeout)
                                       : make_error_code(ClientError::kConnectFailed);
  }
  socket.set_option(tcp::no_delay(true), ec);
  return {};
}

std::error_code StreamingClient::send(std::string_view method, std::string_view target,
                                      const HeaderList& headers, std::string_view body,
                                      std::chrono::milliseconds timeout) {
  if (!impl_->stream.socket().is_open()) return ClientError::kNotConnected;
  http::request<http::string_body> request;
  request.method_string(method);
  request.target(target);
  request.version(11);
  bool has_host = false;
  for (const auto& [name, value] : headers) {
    request.insert(name, value);
    has_host = has_host || iequals(name, "host");
  }
  if (!has_host) request.set(http::field::host, "127.0.0.1:" + std::to_string(impl_->port));
  request.body() = std::string(body);
  if (!body.empty()) request.content_length(body.size());
  impl_->head_only = method == "HEAD";
  impl_->parser.skip(impl_->head_only);
  auto ec = impl_->run(timeout,
                       [&](auto handler) { http::async_write(impl_->stream, request, handler); });
  return to_client_error(ec);
}

std::error_code StreamingClient::read_head(std::chrono::milliseconds timeout) {
  auto& r = impl_->response;
  if (r.head_at) return {};
  if (!impl_->stream.socket().is_open()) return ClientError::kNotConnected;
  auto ec = impl_->run(timeout, [&](auto handler) {
    http::async_read_header(impl_->stream, impl_->buffer, impl_->parser, handler);
  });
  if (ec == beast::error::timeout) return impl_->time_out();
  if (ec) {
    impl_->note_closed();
    r.error = to_client_error(ec);
    return r.error;
  }
  r.head_at = Clock::now();
  const auto& head = impl_->parser.get();
  r.status = head.result_int();
  for (const auto& field : head) {
    r.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  r.chunked = impl_->parser.chunked();
  if (impl_->parser.is_done()) r.complete = true;  // no body (HEAD, 204, Content-Length: 0)
  return {};
}

std::error_code StreamingClient::read_body(std::chrono::milliseconds timeout,
                                           std::uint64_t max_bytes) {
  auto& r = impl_->response;
  if (!r.head_at) {
    if (auto ec = read_head(timeout)) return ec;
  }
  const auto deadline = Clock::now() + timeout;
  char chunk[16 * 1024];
  std::uint64_t read = 0;
  while (!impl_->finished() && read < max_bytes) {
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(sizeof chunk, max_bytes - read));
    auto& body = impl_->parser.get().body();
    body.data = chunk;
    body.size = want;
    body.more = true;
    auto ec = impl_->run(remaining(deadline), [&](auto handler) {
      http::async_read_some(impl_->stream, impl_->buffer, impl_->parser, handler);
    });
    const std::size_t got = want - impl_->parser.get().body().size;
    if (got > 0) {
      r.pieces.push_back(TimedBytes{Clock::now(), std::string(chunk, got)});
      read += got;
    }
    if (ec == http::error::need_buffer) ec = {};
    if (!ec && impl_->parser.is_done()) {
      r.complete = true;
      break;
    }
    if (ec) {
      if (ec == beast::error::timeout) return impl_->time_out();
      r.error = to_client_error(ec);
      impl_->note_closed();
      return r.error;
    }
  }
  return {};
}

std::error_code StreamingClient::read_all(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  if (auto ec = read_head(timeout)) return ec;
  return read_body(remaining(deadline));
}

const StreamResponse& StreamingClient::response() const { return impl_->response; }

bool StreamingClient::finished() const { return impl_->finished(); }

void StreamingClient::close() {
  beast::error_code ignored;
  impl_->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  impl_->stream.socket().close(ignored);
}

HttpResult http_request(std::uint16_t port, std::string_view method, std::string_view target,
                        const HeaderList& headers, std::string_view body,
                        std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  TestHttpConnection connection;
  if (auto ec = connection.connect(port, timeout)) {
    HttpResult result;
    result.error = ec;
    return result;
  }
  return connection.request(method, target, headers, body, remaining(deadline));
}

RawResult raw_exchange(std::uint16_t port, std::string_view bytes,
                       std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  TestHttpConnection connection;
  RawResult result;
  if (auto ec = connection.connect(port, timeout)) {
    result.error = ec;
    return result;
  }
  if (auto ec = connection.send_raw(bytes, remaining(deadline))) {
    // The peer may reject early and close while we still write; what it said still matters.
    result = connection.read_until_close(remaining(deadline));
    if (!result.peer_closed && !result.error) result.error = ec;
    return result;
  }
  return connection.read_until_close(remaining(deadline));
}

}  // namespace courier::testing
