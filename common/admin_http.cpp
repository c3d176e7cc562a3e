#include "common/admin_http.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <nlohmann/json.hpp>

#include "common/config.hpp"

namespace courier {

namespace {

// Counts a connection for as long as it lives, so that the limit holds whatever way it ends.
class ConnectionSlot {
 public:
  explicit ConnectionSlot(std::atomic<std::size_t>& count) : count_(count) { ++count_; }
  ~ConnectionSlot() { --count_; }
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;

 private:
  std::atomic<std::size_t>& count_;
};

}  // namespace

tcp::endpoint parse_admin_listen(std::string_view setting, std::string_view listen) {
  const auto fail = [&](const std::string& why) -> ConfigError {
    return ConfigError(std::string(setting) + ": " + why + " (expected HOST:PORT, got '" +
                       std::string(listen) + "')");
  };
  const auto colon = listen.rfind(':');
  if (colon == std::string_view::npos || colon == 0) throw fail("no host or port");
  std::string host(listen.substr(0, colon));
  const auto port_text = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535) {
    throw fail("invalid port");
  }
  boost::system::error_code error;
  const auto address = asio::ip::make_address(host, error);
  if (!error) return {address, static_cast<std::uint16_t>(port)};
  asio::io_context io;
  tcp::resolver resolver(io);
  const auto results = resolver.resolve(host, std::string(port_text), error);
  if (error || results.empty()) throw fail("cannot resolve host: " + error.message());
  return results.begin()->endpoint();
}

AdminResponse json_status(unsigned status, std::string_view state, std::string_view reason) {
  nlohmann::json body = {{"status", std::string(state)}};
  if (!reason.empty()) body["reason"] = std::string(reason);
  return {status, "application/json",
          body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

AdminHttpServer::AdminHttpServer(std::string_view setting, std::string_view listen,
                                 std::map<std::string, AdminHandler, std::less<>> routes,
                                 AdminLimits limits)
    : routes_(std::move(routes)), limits_(limits), acceptor_(io_) {
  const auto endpoint = parse_admin_listen(setting, listen);
  boost::system::error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw ConfigError(std::string(setting) + ": cannot listen on " + std::string(listen) + ": " +
                      ec.message());
  }
  endpoint_ = acceptor_.local_endpoint();
}

AdminHttpServer::~AdminHttpServer() { stop(); }

void AdminHttpServer::start() {
  asio::co_spawn(io_, accept_loop(), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("admin listener: unexpected exception: {}", ex.what());
    }
  });
  thread_ = std::thread([this] { io_.run(); });
}

void AdminHttpServer::stop() {
  if (stopped_.exchange(true)) return;
  io_.stop();
  if (thread_.joinable()) thread_.join();
  boost::system::error_code ec;
  acceptor_.close(ec);
}

AdminResponse AdminHttpServer::answer(
    const std::map<std::string, AdminHandler, std::less<>>& routes, http::verb method,
    std::string_view target) {
  const auto path = target.substr(0, target.find('?'));
  const auto route = routes.find(path);
  if (route == routes.end()) return json_status(404, "error", "no such admin endpoint");
  if (method != http::verb::get && method != http::verb::head) {
    return json_status(405, "error", "only GET and HEAD");
  }
  try {
    return route->second();
  } catch (const std::exception& e) {
    spdlog::error("admin endpoint {}: {}", std::string(path), e.what());
    return json_status(500, "error", "internal error");
  }
}

asio::awaitable<void> AdminHttpServer::accept_loop() {
  for (;;) {
    boost::system::error_code ec;
    auto socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) continue;  // a connection reset while queued, out of descriptors: keep serving
    if (connections_.load() >= limits_.max_connections) {
      socket.close(ec);  // at the limit: refused at once, nothing held for it
      continue;
    }
    asio::co_spawn(io_, serve(std::move(socket)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::warn("admin connection: unexpected exception: {}", ex.what());
      }
    });
  }
}

asio::awaitable<void> AdminHttpServer::serve(tcp::socket socket) {
  ConnectionSlot slot(connections_);
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer(limits_.max_head);
  http::request_parser<http::empty_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(limits_.max_head));
  parser.body_limit(0);
  boost::system::error_code ec;
  stream.expires_after(limits_.header_timeout);
  co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  AdminResponse reply;
  const bool refused = static_cast<bool>(ec);  // the head was not read whole
  unsigned version = 11;
  bool head = false;
  if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
    reply = json_status(431, "error", "request head too large");
  } else if (ec == http::error::body_limit || ec == http::error::unexpected_body) {
    reply = json_status(413, "error", "admin requests have no body");
  } else if (ec) {
    // Closed, timed out or not HTTP: nothing worth answering unless it was a parse error.
    if (ec == beast::error::timeout || ec == http::error::end_of_stream ||
        ec.category() != http::make_error_code(http::error::bad_target).category()) {
      co_return;
    }
    reply = json_status(400, "error", "bad request");
  } else {
    const auto& request = parser.get();
    version = request.version();
    head = request.method() == http::verb::head;
    reply = answer(routes_, request.method(), request.target());
  }
  http::response<http::string_body> res{static_cast<http::status>(reply.status), version};
  res.set(http::field::content_type, reply.content_type);
  res.set(http::field::cache_control, "no-cache");
  if (reply.status == 405) res.set(http::field::allow, "GET, HEAD");
  res.keep_alive(false);
  res.body() = std::move(reply.body);
  res.prepare_payload();
  if (head) res.body().clear();  // Content-Length stays the GET's
  stream.expires_after(limits_.write_timeout);
  if (head) {
    http::response_serializer<http::string_body> serializer(res);
    co_await http::async_write_header(stream, serializer,
                                      asio::redirect_error(asio::use_awaitable, ec));
  } else {
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (!refused) co_return;
  // Lingering close: the rest of a refused head may still be arriving; closing with it unread
  // would reset the connection and the client could lose the answer. Bounded in time and bytes.
  stream.expires_after(std::chrono::seconds(1));
  std::array<char, 4096> sink;
  std::size_t drained = 0;
  while (!ec && drained < (64u << 10)) {
    drained += co_await stream.async_read_some(asio::buffer(sink),
                                               asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace courier
