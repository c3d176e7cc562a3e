// A small HTTP server for a process's admin endpoints (/metrics, /healthz, /readyz): GET and HEAD
// of fixed paths, on its own thread and io_context, safe to expose to anyone who can reach it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "common/asio.hpp"

namespace courier {

struct AdminResponse {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// Called on the admin thread, once per request: it must be safe to call from there.
using AdminHandler = std::function<AdminResponse()>;

// Limits on what a client can make the server hold: a request is a head (no body), read within
// the timeout; one response per connection (Connection: close).
struct AdminLimits {
  std::size_t max_head = 8192;
  std::chrono::milliseconds header_timeout{5000};
  std::chrono::milliseconds write_timeout{10000};
  std::size_t max_connections = 64;
};

// "HOST:PORT" ("[::1]:9902" for IPv6) to an endpoint; throws ConfigError naming `setting` when
// it is not one (a host name is resolved).
tcp::endpoint parse_admin_listen(std::string_view setting, std::string_view listen);

class AdminHttpServer {
 public:
  // Binds and listens now, so that a busy or invalid address stops start-up: throws ConfigError
  // naming `setting`. Serves nothing until start().
  AdminHttpServer(std::string_view setting, std::string_view listen,
                  std::map<std::string, AdminHandler, std::less<>> routes, AdminLimits limits = {});
  ~AdminHttpServer();  // stop()
  AdminHttpServer(const AdminHttpServer&) = delete;
  AdminHttpServer& operator=(const AdminHttpServer&) = delete;

  void start();
  // Closes the listener and every connection and joins the thread. Idempotent.
  void stop();
  // The bound endpoint (port 0 resolved).
  tcp::endpoint endpoint() const { return endpoint_; }

  // The response to one request head: GET/HEAD of a route, 404 for another path (the query is
  // ignored), 405 for another method. Pure, for tests.
  static AdminResponse answer(const std::map<std::string, AdminHandler, std::less<>>& routes,
                              http::verb method, std::string_view target);

 private:
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(tcp::socket socket);

  std::map<std::string, AdminHandler, std::less<>> routes_;
  AdminLimits limits_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  tcp::endpoint endpoint_;
  std::thread thread_;
  std::atomic<std::size_t> connections_{0};
  std::atomic<bool> stopped_{false};
};

// {"status": ...} replies for /healthz and /readyz.
AdminResponse json_status(unsigned status, std::string_view state, std::string_view reason = {});

}  // namespace courier
