// A scripted HTTP upstream on 127.0.0.1:0 for client and forwarder tests, plus a helper that runs
// one coroutine to completion under a time limit so that a broken build fails instead of hanging.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "common/asio.hpp"
#include "common/config.hpp"

namespace courier::workers::testing {

// The n-th request read, on whatever connection, gets the n-th step. An empty `raw` sends
// nothing, so the client sees silence (or a close, with `close_after`).
struct Step {
  std::string raw;
  bool close_after = false;
};

inline std::string ok_response(std::string_view body = "ok") {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
         std::string(body);
}

inline std::string status_response(int status) {
  return "HTTP/1.1 " + std::to_string(status) + " Scripted\r\nContent-Length: 0\r\n\r\n";
}

class ScriptedUpstream {
 public:
  ScriptedUpstream(asio::io_context& ioc, std::vector<Step> script)
      : acceptor_(ioc, {asio::ip::make_address("127.0.0.1"), 0}), script_(std::move(script)) {
    asio::co_spawn(ioc, accept_loop(), asio::detached);
  }

  UpstreamUrl url() const {
    const auto port = acceptor_.local_endpoint().port();
    return {"127.0.0.1", port, "", "http://127.0.0.1:" + std::to_string(port)};
  }
  const std::vector<http::request<http::string_body>>& requests() const { return requests_; }
  int connections() const { return connections_; }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      beast::error_code ec;
      auto socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      ++connections_;
      asio::co_spawn(acceptor_.get_executor(), serve(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> serve(tcp::socket socket) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> request;
      beast::error_code ec;
      co_await http::async_read(socket, buffer, request,
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec || requests_.size() >= script_.size()) co_return;
      const Step& step = script_[requests_.size()];
      requests_.push_back(std::move(request));
      if (!step.raw.empty()) {
        co_await asio::async_write(socket, asio::buffer(step.raw),
                                   asio::redirect_error(asio::use_awaitable, ec));
      }
      if (ec || step.close_after) co_return;
    }
  }

  tcp::acceptor acceptor_;
  std::vector<Step> script_;
  std::vector<http::request<http::string_body>> requests_;
  int connections_ = 0;
};

// A port nothing listens on: bound, read back, released.
inline std::uint16_t closed_port(asio::io_context& ioc) {
  tcp::acceptor acceptor(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

// Runs `task` on `ioc` until it completes or `limit` passes; nullopt means it did not complete.
template <class T>
std::optional<T> run_for(asio::io_context& ioc, asio::awaitable<T> task,
                         std::chrono::seconds limit = std::chrono::seconds{10}) {
  std::optional<T> result;
  asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr error, T value) {
    ioc.stop();
    if (error) std::rethrow_exception(error);
    result = std::move(value);
  });
  ioc.restart();
  ioc.run_for(limit);
  return result;
}

}  // namespace courier::workers::testing
